"""Face rig: commanded motions applied to the 478-point mesh (the renderer's keypoints).

Used to drive the renderer directly (its objective checks, contact sheets) and, later, by the
face-motion teacher. Every operation works in the face's frontal frame (see ``face.HeadPose``)
so that it means the same thing whatever the head pose of the portrait.
"""

from dataclasses import dataclass

import numpy as np

from spacelive.face.analysis import HeadPose, crop_to_pixels, pixels_to_crop
from spacelive.face.eyes import close_lids, move_iris
from spacelive.face.head_model import rotation_from_angles
from spacelive.face.landmarks import (
    EYES,
    LOWER_INNER_LIP,
    LOWER_LIP_CENTRE,
    LOWER_OUTER_LIP,
    MOUTH_CORNERS,
    UPPER_INNER_LIP,
    UPPER_LIP_CENTRE,
    UPPER_OUTER_LIP,
)


@dataclass(frozen=True, slots=True)
class FaceCommand:
    """What to do to the face, relative to the portrait.

    mouth_open: inner-lip gap as a fraction of the mouth width (corner to corner); None keeps
        the portrait's own. 0 closes the lips; 0.5 is a wide-open mouth.
    blink: 0 open .. 1 closed, both eyes.
    gaze: iris offset (x right, y down) in units of half the eye width.
    yaw, pitch, roll: head rotation in radians on top of the portrait's pose.
    """

    mouth_open: float | None = None
    blink: float = 0.0
    gaze: tuple[float, float] = (0.0, 0.0)
    yaw: float = 0.0
    pitch: float = 0.0
    roll: float = 0.0


def _frontal(mesh_px: np.ndarray, pose: HeadPose) -> np.ndarray:
    """Crop pixels -> the face's frontal frame (normalized units, ears 2 apart)."""
    return (pixels_to_crop(mesh_px) - pose.translation) @ pose.rotation / pose.scale


def _posed(frontal: np.ndarray, pose: HeadPose, turn: np.ndarray) -> np.ndarray:
    """Frontal frame -> crop pixels with the head turned by ``turn`` (3, 3) in camera axes,
    on top of the portrait's pose, as the motion stages compose PoseGen's angles."""
    crop = pose.scale * frontal @ (turn @ pose.rotation).T + pose.translation
    return crop_to_pixels(crop)


def inner_lip_gap(mesh: np.ndarray) -> float:
    """Distance between the inner-lip centres (mesh units)."""
    return float(np.linalg.norm(mesh[LOWER_LIP_CENTRE, :2] - mesh[UPPER_LIP_CENTRE, :2]))


def mouth_width(mesh: np.ndarray) -> float:
    return float(np.linalg.norm(mesh[MOUTH_CORNERS[1], :2] - mesh[MOUTH_CORNERS[0], :2]))


CORNER_SHARE = 0.45
"""How far the mouth corners follow the jaw as it opens."""


class FaceRig:
    """Precomputes per-portrait weights; ``apply`` maps a command to driving keypoints."""

    def __init__(self, mesh_px: np.ndarray, pose: HeadPose):
        self.mesh_px = np.asarray(mesh_px, np.float32)
        self.pose = pose
        self.frontal = _frontal(self.mesh_px, pose)
        f = self.frontal
        corners_y = f[list(MOUTH_CORNERS), 1].mean()
        half_mouth = mouth_width(f) / 2
        chin = f[152]
        # Jaw opening: everything below the mouth corners follows the jaw, fading out toward
        # the ears and above the corner line; the upper lip lifts a little.
        below = np.clip((f[:, 1] - corners_y) / (0.25 * half_mouth) + 0.5, 0.0, 1.0)
        lateral = np.clip(1.0 - (np.abs(f[:, 0] - chin[0]) / 0.95) ** 2, 0.0, 1.0)
        jaw = below * lateral
        # The lips part like a lens, widest at the centre and meeting at the corners: each lip
        # point follows the jaw by an elliptic taper from the corners' share to its full share.
        centre_x = f[list(MOUTH_CORNERS), 0].mean()
        # The upper lip lifts a little at its centre only; the lower lip drops with the jaw.
        for contour, share, corner_share in (
            (UPPER_INNER_LIP, -0.12, 0.0),
            (UPPER_OUTER_LIP, -0.08, 0.0),
            (LOWER_INNER_LIP, 1.0, CORNER_SHARE),
            (LOWER_OUTER_LIP, 1.0, CORNER_SHARE),
        ):
            points = contour[1:-1]
            across = np.clip(np.abs(f[points, 0] - centre_x) / half_mouth, 0.0, 1.0)
            taper = np.sqrt(1.0 - across**2)
            jaw[points] = share * taper + corner_share * (1.0 - taper)
        for corner in (61, 291, 78, 308):
            jaw[corner] = CORNER_SHARE
        self._jaw = jaw.astype(np.float32)
        self._gap_per_unit = float(jaw[LOWER_LIP_CENTRE] - jaw[UPPER_LIP_CENTRE])
        self.mouth_width = 2 * half_mouth

    def apply(self, command: FaceCommand) -> np.ndarray:
        """Driving keypoints (478, 3) in crop pixels."""
        f = self.frontal.copy()
        if command.mouth_open is not None:
            gap = inner_lip_gap(f)
            target = max(command.mouth_open, 0.0) * self.mouth_width
            f[:, 1] += self._jaw * (target - gap) / self._gap_per_unit
        for _, upper, lower, iris in EYES:
            move_iris(f, upper, lower, iris, command.gaze)
            close_lids(f, upper, lower, command.blink)
        turn = rotation_from_angles(command.yaw, command.pitch, command.roll)
        return _posed(f, self.pose, turn)
