"""Eye geometry shared by the face rig (mesh keypoints) and the motion loop (S2L landmarks):
lids that close over the eye and irises that look around, in the face's frontal frame.

Both work on points ``f`` (N, 3) (x right, y down, z toward the camera) given one eye's index
lists: the upper and lower lid from corner to corner, and the iris (centre first).
"""

import numpy as np

from spacelive.face.landmarks import EYES, MESH_TO_EYES, MESH_TO_IBUG68

Gaze = tuple[float, float] | np.ndarray
"""Iris offset (x right, y down) in half eye widths: a pair or a (2,) array."""


def close_lids(f: np.ndarray, upper: list[int], lower: list[int], closure: float) -> None:
    """In place: 0 open .. 1 closed. The upper lid travels most of the way to the lower lid,
    which rises a little; they meet in depth too, or a turned or tilted head shows a gap."""
    if closure <= 0:
        return
    closed = min(float(closure), 1.0)
    inner_upper, inner_lower = upper[1:-1], lower[1:-1]
    meet = 0.8 * f[inner_lower, 1:] + 0.2 * f[inner_upper, 1:]
    f[inner_upper, 1:] += closed * (meet - f[inner_upper, 1:])
    f[inner_lower, 1:] += closed * (meet - f[inner_lower, 1:])


def move_iris(
    f: np.ndarray, upper: list[int], lower: list[int], iris: list[int], gaze: Gaze
) -> None:
    """In place: the iris moves by ``gaze`` (x right, y down) in half eye widths, and its centre
    stays inside the opening, a little away from the corners and the lids."""
    gx, gy = gaze
    if not (gx or gy):
        return
    inner_upper, inner_lower = upper[1:-1], lower[1:-1]
    half_width = np.linalg.norm(f[upper[-1], :2] - f[upper[0], :2]) / 2
    centre = f[iris[0]].copy()
    target = centre[:2] + half_width * np.array([gx, gy])
    lo_x, hi_x = f[upper[0], 0], f[upper[-1], 0]
    target[0] = np.clip(target[0], lo_x + 0.35 * half_width, hi_x - 0.35 * half_width)
    top = np.interp(target[0], f[inner_upper, 0], f[inner_upper, 1])
    bottom = np.interp(target[0], f[inner_lower, 0], f[inner_lower, 1])
    target[1] = np.clip(
        target[1],
        min(top + 0.1 * half_width, centre[1]),
        max(bottom - 0.1 * half_width, centre[1]),
    )
    f[iris, :2] += target - centre[:2]


def _eye_block(mesh_indices: list[int]) -> list[int]:
    """Mesh indices -> their positions among the 110 sparse landmarks' eye points."""
    position = {int(m): 68 + k for k, m in enumerate(MESH_TO_EYES)}
    return [position[m] for m in mesh_indices]


def _sparse_eyes():
    return tuple(
        (name, _eye_block(upper), _eye_block(lower), _eye_block(iris))
        for name, upper, lower, iris in EYES
    )


SPARSE_EYES = _sparse_eyes()
"""The rig's eyes in the 110 sparse landmarks: (name, upper lid, lower lid, iris)."""
_IBUG_EYE_TWINS = (np.arange(36, 48), np.array(_eye_block(MESH_TO_IBUG68[36:48].tolist())))


def pose_eyes(landmarks: np.ndarray, closure: float, gaze: Gaze) -> np.ndarray:
    """Normalized landmarks (110, 3) with the lids closed by ``closure`` and the irises moved
    by ``gaze``; the iBUG-68 eye points follow their eye-contour twins. Returns a copy."""
    f = np.array(landmarks, np.float32)
    for _, upper, lower, iris in SPARSE_EYES:
        move_iris(f, upper, lower, iris, gaze)
        close_lids(f, upper, lower, closure)
    ibug, twins = _IBUG_EYE_TWINS
    f[ibug] = f[twins]
    return f
