"""Geometric landmark transfer: posed sparse landmarks -> dense renderer keypoints.

This is what turns landmarks into the renderer's keypoints (the paper's Landmarks2Latents
network is not used: no trained one beats this geometry). Each of the 478 mesh points
follows the displacement of its nearest sparse landmarks (inverse-distance weights), taken
only from its own side of the mouth, so that an opening jaw carries the lower lip and chin
and leaves the upper lip where it is. The sides part along the line between the inner lips
(beyond the corners, at the corners' height): in a broad smile the upper lip's centre sits
lower than the corners, and a split at the corners' height dragged it down with the jaw.
"""

import numpy as np

from spacelive.face.landmarks import (
    LOWER_INNER_LIP,
    LOWER_OUTER_LIP,
    UPPER_INNER_LIP,
    UPPER_OUTER_LIP,
)

NEIGHBOURS = 4
# Sparse (iBUG-68) points that move with the lower jaw.
_LOWER_SPARSE = set(range(3, 14)) | set(range(55, 60)) | set(range(65, 68))
_CORNERS = {48, 54, 60, 64}


class DenseTransfer:
    """Precomputed for one avatar; ``apply`` is a small batched matmul."""

    def __init__(self, kp_source: np.ndarray, sparse_source: np.ndarray, frontal: np.ndarray):
        """kp_source: (478, 3) and sparse_source: (110, 3) in one frame (the motion loop uses
        the face's normalized frontal frame); frontal: (478, 2+) each mesh point in the frontal
        frame (x right, y down), to split the mouth."""
        mesh_lower = frontal[:, 1] > _lip_parting(frontal)
        # The lips' own contours are on their side by name: a closed mouth's detected inner
        # lips can cross by a fraction of a pixel, and an upper lip taken for a lower one was
        # dragged down with the jaw into a wedge.
        mesh_lower[UPPER_INNER_LIP[1:-1] + UPPER_OUTER_LIP[1:-1]] = False
        mesh_lower[LOWER_INNER_LIP[1:-1] + LOWER_OUTER_LIP[1:-1]] = True
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
        """Sparse landmarks (B, 110, 3) -> keypoints (B, 478, 3), in the frame of the sources."""
        moved = sparse - self.sparse_source[None]
        return self.kp_source[None] + (moved[:, self.index] * self.weights[None, :, :, None]).sum(2)


def _lip_parting(frontal: np.ndarray) -> np.ndarray:
    """(478,) height of the line between the inner lips at each mesh point's x (frontal frame);
    beyond the mouth corners, the corners' height."""
    x = frontal[UPPER_INNER_LIP, 0]
    middle = (frontal[UPPER_INNER_LIP, 1] + frontal[LOWER_INNER_LIP, 1]) / 2
    order = np.argsort(x)
    return np.interp(frontal[:, 0], x[order], middle[order])
