"""Speech to motion: stage runners, the causal loop, face controls, idle, the keypoint code."""
