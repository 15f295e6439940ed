"""The generator stage: source photo + source keypoints + driving keypoints -> 512x512 frame.

A keypoint-driven backward warp. The displacement (source - driving) known at each driving
keypoint is spread over a coarse grid by normalized Gaussian kernel regression (as a
normalized convolution: splat, blur, divide), with a
constant background weight that pulls the flow to zero away from the face (hair, neck and
background stay put rather than tear), upsampled to full resolution and applied with one
bilinear remap. Synthesized content (mouth interior, eyelids) is issue #3's renderer.
"""

from dataclasses import dataclass

import cv2
import numpy as np

from spacelive import FRAME_SIZE

GRID = 128
"""Flow is computed on a GRID x GRID lattice (4-pixel cells) and upsampled."""
SIGMA_FACE_FRACTION = 0.08
"""Kernel width as a fraction of the face size."""
BACKGROUND_WEIGHT = 0.15
"""Weight of the zero-flow background term, relative to one keypoint at distance 0."""


@dataclass(frozen=True, slots=True)
class RenderSource:
    """What the renderer precomputes per avatar."""

    image: np.ndarray  # (512, 512, 3) uint8
    kp_source_px: np.ndarray  # (478, 2) float32
    sigma_px: float


class WarpRenderer:
    """Numpy/OpenCV CPU renderer. ``render`` is pure: same inputs, same bytes."""

    def __init__(self) -> None:
        base = np.arange(FRAME_SIZE, dtype=np.float32)
        self._base_x, self._base_y = np.meshgrid(base, base)

    @staticmethod
    def prepare(image: np.ndarray, kp_source_px: np.ndarray) -> RenderSource:
        """image: (512, 512, 3) uint8; kp_source_px: (478, >=2) pixels."""
        kp = np.asarray(kp_source_px, dtype=np.float32)[:, :2]
        face_size = float((kp.max(axis=0) - kp.min(axis=0)).max())
        return RenderSource(np.ascontiguousarray(image), kp, SIGMA_FACE_FRACTION * face_size)

    def flow(self, source: RenderSource, kp_driving_px: np.ndarray) -> np.ndarray:
        """Backward flow (512, 512, 2) float32: output pixel p samples the source at p + flow."""
        driving = np.asarray(kp_driving_px, dtype=np.float32)[:, :2]
        displacement = source.kp_source_px - driving
        if not np.all(np.isfinite(displacement)):
            raise ValueError("driving keypoints contain NaN or infinity")
        # Normalized convolution: splat (weight, weight * displacement) at the driving points
        # onto the coarse grid, blur both with the Gaussian kernel, divide.
        cell = FRAME_SIZE / GRID
        pos = np.clip(driving / cell - 0.5, 0, GRID - 1.001)
        i0 = np.floor(pos).astype(np.int64)
        frac = pos - i0
        splat = np.zeros((GRID, GRID, 3), np.float32)
        values = np.concatenate([np.ones((len(driving), 1), np.float32), displacement], axis=1)
        for dy in (0, 1):
            for dx in (0, 1):
                w = (frac[:, 0] if dx else 1 - frac[:, 0]) * (frac[:, 1] if dy else 1 - frac[:, 1])
                np.add.at(splat, (i0[:, 1] + dy, i0[:, 0] + dx), values * w[:, None])
        sigma = source.sigma_px / cell
        blurred = cv2.GaussianBlur(splat, (0, 0), sigma, borderType=cv2.BORDER_CONSTANT)
        peak = 1.0 / (2 * np.pi * sigma**2)  # a lone point's blurred weight at its centre
        coarse = blurred[..., 1:] / (blurred[..., :1] + BACKGROUND_WEIGHT * peak)
        return cv2.resize(coarse, (FRAME_SIZE, FRAME_SIZE), interpolation=cv2.INTER_LINEAR)

    def render(self, source: RenderSource, kp_driving_px: np.ndarray) -> np.ndarray:
        """kp_driving_px: (478, >=2) pixels -> (512, 512, 3) uint8 frame."""
        driving = np.asarray(kp_driving_px, dtype=np.float32)[:, :2]
        if np.abs(source.kp_source_px - driving).max() < 1e-3:
            return source.image.copy()  # the rest pose: nothing moves, nothing to resample
        flow = self.flow(source, driving)
        return cv2.remap(
            source.image,
            self._base_x + flow[..., 0],
            self._base_y + flow[..., 1],
            interpolation=cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_REPLICATE,
        )
