"""The face: portrait analysis, the 478-point mesh and its landmarks, head pose, the rig."""
