"""Face rig: commanded motions applied to the 478-point mesh (the renderer's keypoints).

Used to drive the renderer directly (its objective checks, contact sheets) and, later, by the
face-motion teacher. Every operation works in the face's frontal frame (see ``face.HeadPose``)
so that it means the same thing whatever the head pose of the portrait.
"""

from dataclasses import dataclass

import numpy as np

from spacelive.face import HeadPose, crop_to_pixels, pixels_to_crop, rotation_from_angles

# fmt: off
UPPER_INNER_LIP = [78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308]
LOWER_INNER_LIP = [78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308]
UPPER_OUTER_LIP = [61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291]
LOWER_OUTER_LIP = [61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291]
# Eyelids, from the outer to the inner corner for the subject's right eye (image left) and
# from the inner to the outer corner for the left eye: both run left to right in the image.
RIGHT_UPPER_LID = [33, 246, 161, 160, 159, 158, 157, 173, 133]
RIGHT_LOWER_LID = [33, 7, 163, 144, 145, 153, 154, 155, 133]
LEFT_UPPER_LID = [362, 398, 384, 385, 386, 387, 388, 466, 263]
LEFT_LOWER_LID = [362, 382, 381, 380, 374, 373, 390, 249, 263]
RIGHT_IRIS = [468, 469, 470, 471, 472]
LEFT_IRIS = [473, 474, 475, 476, 477]
# fmt: on
UPPER_LIP_CENTRE, LOWER_LIP_CENTRE = 13, 14
MOUTH_CORNERS = (61, 291)
EYES = (
    ("right", RIGHT_UPPER_LID, RIGHT_LOWER_LID, RIGHT_IRIS),
    ("left", LEFT_UPPER_LID, LEFT_LOWER_LID, LEFT_IRIS),
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
        jaw[UPPER_INNER_LIP[1:-1]] = -0.12
        jaw[UPPER_OUTER_LIP[1:-1]] = -0.08
        jaw[LOWER_INNER_LIP[1:-1]] = 1.0
        jaw[LOWER_OUTER_LIP[1:-1]] = 1.0
        for corner in (61, 291, 78, 308):
            jaw[corner] = 0.45
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
            self._eye(f, upper, lower, iris, command)
        turn = rotation_from_angles(command.yaw, command.pitch, command.roll)
        return _posed(f, self.pose, turn)

    @staticmethod
    def _eye(f: np.ndarray, upper: list[int], lower: list[int], iris: list[int], command) -> None:
        inner_upper, inner_lower = upper[1:-1], lower[1:-1]
        half_width = np.linalg.norm(f[upper[-1], :2] - f[upper[0], :2]) / 2
        gx, gy = command.gaze
        if gx or gy:
            # Keep the iris centre inside the opening, a little away from the lids.
            centre = f[iris[0]].copy()
            target = centre[:2] + half_width * np.array([gx, gy])
            lo_x, hi_x = f[upper[0], 0], f[upper[-1], 0]
            target[0] = np.clip(target[0], lo_x + 0.35 * half_width, hi_x - 0.35 * half_width)
            col = np.interp(target[0], f[inner_upper, 0], f[inner_upper, 1])
            low = np.interp(target[0], f[inner_lower, 0], f[inner_lower, 1])
            target[1] = np.clip(
                target[1],
                min(col + 0.1 * half_width, centre[1]),
                max(low - 0.1 * half_width, centre[1]),
            )
            f[iris, :2] += target - centre[:2]
        if command.blink > 0:
            closed = np.clip(command.blink, 0.0, 1.0)
            # The upper lid travels most of the way to the lower lid, which rises a little;
            # they meet in depth too, or a turned or tilted head shows a gap between them.
            meet = 0.8 * f[inner_lower, 1:] + 0.2 * f[inner_upper, 1:]
            f[inner_upper, 1:] += closed * (meet - f[inner_upper, 1:])
            f[inner_lower, 1:] += closed * (meet - f[inner_lower, 1:])
