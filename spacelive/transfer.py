"""Geometric landmark transfer: posed sparse landmarks -> dense renderer keypoints.

Stands in for Landmarks2Latents while that stage ships untrained: each of the 478 mesh points
follows the displacement of its nearest sparse landmarks (inverse-distance weights), taken
only from its own side of the mouth, so that an opening jaw carries the lower lip and chin
and leaves the upper lip where it is.
"""

import numpy as np

from spacelive.landmarks import MESH_TO_SPARSE

NEIGHBOURS = 4
# Sparse (iBUG-68) points that move with the lower jaw.
_LOWER_SPARSE = set(range(3, 14)) | set(range(55, 60)) | set(range(65, 68))
_CORNERS = {48, 54, 60, 64}


class DenseTransfer:
    """Precomputed for one avatar; ``apply`` is a small batched matmul."""

    def __init__(self, kp_source: np.ndarray, sparse_source: np.ndarray, frontal_y: np.ndarray):
        """kp_source: (478, 3) and sparse_source: (110, 3) crop coordinates; frontal_y: (478,)
        each mesh point's height in the face's frontal frame (y down), to split the mouth."""
        corners_y = frontal_y[MESH_TO_SPARSE[list(_CORNERS)]].mean()
        mesh_lower = frontal_y > corners_y
        sparse_lower = np.array([i in _LOWER_SPARSE for i in range(len(sparse_source))])
        sparse_either = np.array([i in _CORNERS for i in range(len(sparse_source))])
        distance = np.linalg.norm(kp_source[:, None, :2] - sparse_source[None, :, :2], axis=-1)
        same_side = (mesh_lower[:, None] == sparse_lower[None, :]) | sparse_either[None, :]
        distance = np.where(same_side, distance, np.inf)
        self.index = np.argsort(distance, axis=1)[:, :NEIGHBOURS]  # (478, K)
        nearest = np.take_along_axis(distance, self.index, axis=1)
        weights = 1.0 / np.maximum(nearest, 1e-6) ** 2
        self.weights = (weights / weights.sum(axis=1, keepdims=True)).astype(np.float32)
        self.kp_source = kp_source.astype(np.float32)
        self.sparse_source = sparse_source.astype(np.float32)

    def apply(self, sparse: np.ndarray) -> np.ndarray:
        """Posed sparse landmarks (B, 110, 3) -> keypoints (B, 478, 3), crop coordinates."""
        moved = sparse - self.sparse_source[None]
        return self.kp_source[None] + (moved[:, self.index] * self.weights[None, :, :, None]).sum(2)
