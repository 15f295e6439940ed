"""Head rotations: yaw, pitch and roll, and their fit against a generic 3D face model.

The 2D landmarks of a face are matched by a rotated, scaled and shifted generic 3D face
(weak perspective): only the image-plane positions are used, never the detector's depth
guesses, so the pose is right also on frames where shading does not agree with geometry.
"""

from functools import lru_cache

import numpy as np
from scipy.optimize import least_squares

from spacelive import ASSETS

MODEL_PATH = ASSETS / "face_model.npy"

# Mesh points that expressions barely move and that lie inside the face: forehead, nose, eye
# corners, cheekbones. Silhouette points are left out: along the face's outline a detector
# cannot see them slide, so they follow its prior rather than the head.
# fmt: off
RIGID_POINTS = np.array([
    151, 9, 8, 108, 337, 69, 299, 104, 333,
    168, 6, 197, 195, 5, 4, 1, 2, 98, 327, 64, 294, 48, 278, 115, 344,
    33, 133, 362, 263, 130, 359, 243, 463,
    116, 345, 123, 352, 50, 280, 36, 266, 101, 330, 117, 346, 118, 347,
])
# fmt: on


@lru_cache(maxsize=1)
def face_model() -> np.ndarray:
    """(478, 3) float64 generic frontal mesh (normalized: ears 2 apart, x right, y down)."""
    return np.load(MODEL_PATH).astype(np.float64)


def mirror_permutation(frontal: np.ndarray) -> np.ndarray:
    """For each point of a frontal, roughly symmetric mesh, the index of its mirror image."""
    mirrored = frontal * np.array([-1.0, 1.0, 1.0])
    d = ((frontal[:, None, :] - mirrored[None, :, :]) ** 2).sum(axis=-1)
    return d.argmin(axis=0)


def rotation_from_angles(
    yaw: np.ndarray | float, pitch: np.ndarray | float, roll: np.ndarray | float
) -> np.ndarray:
    """(...,) radians -> (..., 3, 3). Image axes: x right, y down, z toward the viewer.

    R = Rz(roll) @ Rx(-pitch) @ Ry(yaw); positive yaw turns the face toward image right,
    positive pitch tilts the chin down (the nose tip turns toward the image's bottom, as in a
    nod), positive roll rotates clockwise on screen.
    """
    yaw, pitch, roll = np.asarray(yaw), np.asarray(pitch), np.asarray(roll)
    cy, sy = np.cos(yaw), np.sin(yaw)
    cp, sp = np.cos(pitch), np.sin(pitch)
    cr, sr = np.cos(roll), np.sin(roll)
    one, zero = np.ones_like(cy), np.zeros_like(cy)
    ry = np.stack([cy, zero, sy, zero, one, zero, -sy, zero, cy], -1).reshape(*cy.shape, 3, 3)
    rx = np.stack([one, zero, zero, zero, cp, sp, zero, -sp, cp], -1).reshape(*cy.shape, 3, 3)
    rz = np.stack([cr, -sr, zero, sr, cr, zero, zero, zero, one], -1).reshape(*cy.shape, 3, 3)
    return rz @ rx @ ry


def angles_from_rotation(rotation: np.ndarray) -> np.ndarray:
    """Inverse of ``rotation_from_angles``: (3, 3) -> (yaw, pitch, roll) radians."""
    pitch = np.arcsin(np.clip(-rotation[2, 1], -1.0, 1.0))
    yaw = np.arctan2(-rotation[2, 0], rotation[2, 2])
    roll = np.arctan2(-rotation[0, 1], rotation[1, 1])
    return np.array([yaw, pitch, roll])


def fit_rotation(points_xy: np.ndarray, initial: np.ndarray) -> np.ndarray:
    """Rotation (3, 3) of the face model that best explains 2D landmarks.

    points_xy: (478, 2) image-plane positions (any unit); initial: a starting rotation.
    Columns of the result are the face's x, y, z axes in image coordinates.
    """
    model = face_model()[RIGID_POINTS]
    target = points_xy[RIGID_POINTS].astype(np.float64)
    centred = target - target.mean(axis=0)
    model_centred = model - model.mean(axis=0)

    def residuals(params: np.ndarray) -> np.ndarray:
        rotation = rotation_from_angles(*params[:3])
        projected = params[3] * model_centred @ rotation.T
        return (projected[:, :2] - centred).ravel()

    scale0 = np.sqrt((centred**2).sum() / (model_centred[:, :2] ** 2).sum())
    x0 = np.concatenate([angles_from_rotation(initial), [scale0]])
    fitted = least_squares(residuals, x0, method="lm", x_scale="jac")
    return rotation_from_angles(*fitted.x[:3])
