"""Landmark layouts shared by face analysis, the stages and the renderer.

Sparse control landmarks (what Speech2Landmarks predicts) are 110 points:

* 68 points in the iBUG-68 layout, picked from the 478-point MediaPipe face mesh by
  ``MESH_TO_IBUG68`` (jaw 0-16 from the subject's right ear to the left, brows 17-26,
  nose 27-35, eyes 36-47, outer lips 48-59, inner lips 60-67);
* 42 eye points: for each eye (subject's right, then left) the 16-point eyelid contour
  of the mesh followed by its 5 iris points (centre first).

The paper uses 52 MTCNN eye points; MTCNN is not available here, and the mesh's eyelid
contours with iris centres carry what blinks and gaze need.

Dense generator keypoints are the full 478-point mesh (468 + 10 iris points).
"""

import numpy as np

MESH_POINTS = 478

# fmt: off
MESH_TO_IBUG68 = np.array([
    162, 234, 93, 58, 172, 136, 149, 148, 152, 377, 378, 365, 397, 288, 323, 454, 389,  # jaw
    71, 63, 105, 66, 107,  # right brow
    336, 296, 334, 293, 301,  # left brow
    168, 197, 5, 4,  # nose bridge
    75, 97, 2, 326, 305,  # nostrils
    33, 160, 158, 133, 153, 144,  # right eye
    362, 385, 387, 263, 373, 380,  # left eye
    61, 39, 37, 0, 267, 269, 291, 405, 314, 17, 84, 181,  # outer lips
    78, 82, 13, 312, 308, 317, 14, 87,  # inner lips
], dtype=np.int64)

RIGHT_EYELID = [33, 7, 163, 144, 145, 153, 154, 155, 133, 173, 157, 158, 159, 160, 161, 246]
LEFT_EYELID = [263, 249, 390, 373, 374, 380, 381, 382, 362, 398, 384, 385, 386, 387, 388, 466]
RIGHT_IRIS = [468, 469, 470, 471, 472]
LEFT_IRIS = [473, 474, 475, 476, 477]
# fmt: on

# Mesh contours (478-point mesh indices), for the rig, the renderer and the landmark transfer.
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
# fmt: on
UPPER_LIP_CENTRE, LOWER_LIP_CENTRE = 13, 14
MOUTH_CORNERS = (61, 291)
EYES = (
    ("right", RIGHT_UPPER_LID, RIGHT_LOWER_LID, RIGHT_IRIS),
    ("left", LEFT_UPPER_LID, LEFT_LOWER_LID, LEFT_IRIS),
)

MESH_TO_EYES = np.array(RIGHT_EYELID + RIGHT_IRIS + LEFT_EYELID + LEFT_IRIS, dtype=np.int64)
MESH_TO_SPARSE = np.concatenate([MESH_TO_IBUG68, MESH_TO_EYES])

FACE_POINTS = 68
EYE_POINTS = len(MESH_TO_EYES)  # 42
SPARSE_POINTS = FACE_POINTS + EYE_POINTS  # 110

# iBUG-68 indices used for normalization and metrics.
RIGHT_EAR, LEFT_EAR = 0, 16
MOUTH_RIGHT_CORNER, MOUTH_LEFT_CORNER = 48, 54
MOUTH = slice(48, 68)
JAW = list(range(3, 14))
CHIN_WEIGHTS = np.interp(np.arange(3, 14), [3, 8, 13], [0.25, 1.0, 0.25])
"""How far each JAW point follows the chin."""
# Lip contours in the iBUG-68 layout, left to right (the mesh's are in spacelive.face.rig).
IBUG_INNER_LIP_CENTRES = (62, 66)  # upper, lower
IBUG_UPPER_OUTER_LIP = [49, 50, 51, 52, 53]
IBUG_LOWER_OUTER_LIP = [59, 58, 57, 56, 55]
IBUG_UPPER_INNER_LIP, IBUG_LOWER_INNER_LIP = [61, 62, 63], [67, 66, 65]

POSE_DIMS = 6
"""Head pose per frame: yaw, pitch, roll (radians), then translation x, y, z."""

EMOTIONS = (
    "neutral",
    "happy",
    "sad",
    "surprised",
    "fearful",
    "disgusted",
    "angry",
    "contemptuous",
)
"""The eight MEAD emotions, in the order of the emotion vector (intensities in [0, 1])."""


def inner_lip_gap(landmarks):
    """(..., 110, 3) sparse landmarks (numpy or torch) -> (...) vertical distance between the
    inner-lip centres: lip sync's mouth opening."""
    upper, lower = IBUG_INNER_LIP_CENTRES
    return landmarks[..., lower, 1] - landmarks[..., upper, 1]


def sparse_from_mesh(mesh: np.ndarray) -> np.ndarray:
    """Pick the 110 sparse landmarks from a mesh: (..., 478, D) -> (..., 110, D)."""
    return mesh[..., MESH_TO_SPARSE, :]


def closed_mouth(landmarks: np.ndarray) -> np.ndarray:
    """Normalized landmarks (110, 3) with the lips closed (a portrait may smile with its
    teeth showing): the lower lip and jaw rise until the inner lips meet."""
    rest = np.asarray(landmarks, np.float64).copy()
    gap = float(np.mean(rest[IBUG_LOWER_INNER_LIP, 1] - rest[IBUG_UPPER_INNER_LIP, 1]))
    if gap > 0:
        rest[IBUG_LOWER_INNER_LIP + IBUG_LOWER_OUTER_LIP, 1] -= gap
        rest[JAW, 1] -= gap * CHIN_WEIGHTS
        rest[[60, 64], 1] -= 0.5 * gap
    return rest
