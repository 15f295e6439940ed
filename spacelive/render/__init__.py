"""Keypoints to pixels: the warp renderer, its ONNX twin and the mouth interior."""
