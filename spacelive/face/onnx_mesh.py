"""MediaPipe's face detector, 468-point face mesh and iris model, run through ONNX Runtime.

MediaPipe's face_mesh graph for still images, written out around three ONNX graphs converted
once from its Apache-2.0 TFLite models (``spacelive/assets/face_mesh/README.md``): BlazeFace
(short range) finds the face; a square around it, 1.5 times its box and turned upright by the
eyes, goes to the 468-point mesh; a square around each eye, 2.3 times its corners' distance,
goes to the iris model (the left eye mirrored, as the model knows right eyes), whose 71
eye-contour points then replace the mesh's lids, halos and brows, as MediaPipe's iris graph
does. The 468 points and the two 5-point irises make the 478 points of MediaPipe's refined
mesh, index for index.

Outside the eyes it reproduces MediaPipe's own pipeline (``FaceMesh(refine_landmarks=False)``)
on the standard portraits to 0.0007 eye widths at most (``benchmarks/face_mesh_onnx.py``). It
does not yet replace ``FaceAnalyzer``'s MediaPipe mesh, the refined (attention) model.
"""

import math
import threading
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort

from spacelive import ASSETS

MODELS = ASSETS / "face_mesh"
DETECTOR_SIZE, MESH_SIZE, IRIS_SIZE = 128, 192, 64
FACE_SCALE, EYE_SCALE = 1.5, 2.3
NMS_IOU = 0.3
EYE_CORNERS = ((33, 133), (362, 263))  # right eye (image left), left eye
_MIRRORED_IRIS = [0, 3, 2, 1, 4]  # a mirrored eye's iris points in the mesh's order
# fmt: off
EYE_CONTOURS = (
    # The mesh points that the iris model's 71 eye-contour points replace, in its order (lid
    # contours, four halos, the brow), for the right eye (image left), then the left: the map
    # of MediaPipe's UpdateFaceLandmarksCalculator (Apache-2.0).
    [33, 7, 163, 144, 145, 153, 154, 155, 133, 246, 161, 160, 159, 158, 157, 173, 130, 25, 110,
     24, 23, 22, 26, 112, 243, 247, 30, 29, 27, 28, 56, 190, 226, 31, 228, 229, 230, 231, 232,
     233, 244, 113, 225, 224, 223, 222, 221, 189, 35, 124, 46, 53, 52, 65, 143, 111, 117, 118,
     119, 120, 121, 128, 245, 156, 70, 63, 105, 66, 107, 55, 193],
    [263, 249, 390, 373, 374, 380, 381, 382, 362, 466, 388, 387, 386, 385, 384, 398, 359, 255,
     339, 254, 253, 252, 256, 341, 463, 467, 260, 259, 257, 258, 286, 414, 446, 261, 448, 449,
     450, 451, 452, 453, 464, 342, 445, 444, 443, 442, 441, 413, 265, 353, 276, 283, 282, 295,
     372, 340, 346, 347, 348, 349, 350, 357, 465, 383, 300, 293, 334, 296, 336, 285, 417],
)
# fmt: on


def _session(path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def ssd_anchors(size: int, strides: tuple[int, ...]) -> np.ndarray:
    """(N, 2) anchor centres, normalized, of MediaPipe's SsdAnchorsCalculator with a fixed
    anchor size, aspect ratio 1 and the interpolated scale (two anchors per layer and cell;
    layers of one stride share their grid)."""
    anchors: list[tuple[float, float]] = []
    layer = 0
    while layer < len(strides):
        same = layer
        while same < len(strides) and strides[same] == strides[layer]:
            same += 1
        grid = math.ceil(size / strides[layer])
        per_cell = 2 * (same - layer)
        for y in range(grid):
            for x in range(grid):
                anchors += [((x + 0.5) / grid, (y + 0.5) / grid)] * per_cell
        layer = same
    return np.array(anchors, np.float32)


def _warp(rgb: np.ndarray, to_image: np.ndarray, out: int, border=cv2.BORDER_REPLICATE):
    """The out x out picture whose pixel (u, v) is ``rgb`` at ``to_image @ (u, v, 1)``,
    bilinear (MediaPipe's ImageToTensor); outside the image, edges replicated or zero."""
    return cv2.warpAffine(
        rgb,
        to_image,
        (out, out),
        flags=cv2.WARP_INVERSE_MAP | cv2.INTER_LINEAR,
        borderMode=border,
        borderValue=(0, 0, 0),
    )


def _square(center: np.ndarray, size: float, angle: float, out: int, mirror: bool = False):
    """(2, 3) affine from the pixels of an out x out crop to the image: a square ``size``
    pixels wide at ``center``, turned by ``angle`` (radians, image axes), optionally mirrored."""
    c, s = math.cos(angle) * size / out, math.sin(angle) * size / out
    half = out / 2
    to_image = np.array(
        [
            [c, -s, center[0] - c * half + s * half],
            [s, c, center[1] - s * half - c * half],
        ]
    )
    if mirror:
        to_image = to_image @ np.array([[-1.0, 0.0, out], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    return to_image


def _project(points: np.ndarray, to_image: np.ndarray, z_scale: float) -> np.ndarray:
    """Crop-pixel points (n, 3) -> image pixels (n, 3); z in the same pixel scale."""
    xy = points[:, :2] @ to_image[:, :2].T + to_image[:, 2]
    return np.column_stack([xy, points[:, 2] * z_scale])


class FaceDetector:
    """BlazeFace short range on a letterboxed 128 x 128 picture."""

    def __init__(self, path: Path = MODELS / "face_detection_short_range.onnx"):
        self._session = _session(path)
        self._input = self._session.get_inputs()[0].name
        self._anchors = ssd_anchors(DETECTOR_SIZE, (8, 16, 16, 16))  # (896, 2)

    def __call__(self, rgb: np.ndarray, min_score: float) -> tuple[np.ndarray, np.ndarray]:
        """rgb (H, W, 3) uint8 -> faces, best first: boxes (N, 4) x0 y0 x1 y1 and keypoints
        (N, 6, 2) (right eye, left eye, nose tip, mouth, right ear, left ear), in pixels."""
        height, width = rgb.shape[:2]
        side = max(height, width)
        offset = np.array([(side - width) / 2, (side - height) / 2])
        k = side / DETECTOR_SIZE
        to_image = np.array([[k, 0.0, -offset[0]], [0.0, k, -offset[1]]])  # letterboxed
        letterboxed = _warp(rgb, to_image, DETECTOR_SIZE, cv2.BORDER_CONSTANT)  # black bars
        picture = letterboxed.astype(np.float32) / 127.5 - 1.0
        regressors, logits = self._session.run(None, {self._input: picture[None]})
        raw = regressors[0] / DETECTOR_SIZE  # (896, 16): box centre, size, 6 keypoints
        scores = 1.0 / (1.0 + np.exp(-np.clip(logits[0, :, 0], -80.0, 80.0)))
        centre = raw[:, :2] + self._anchors
        boxes = np.concatenate([centre - raw[:, 2:4] / 2, centre + raw[:, 2:4] / 2], axis=1)
        keypoints = raw[:, 4:16].reshape(-1, 6, 2) + self._anchors[:, None, :]
        keep = scores >= min_score
        boxes, keypoints = _weighted_nms(boxes[keep], keypoints[keep], scores[keep])
        boxes = boxes.reshape(-1, 2, 2) * side - offset
        return boxes.reshape(-1, 4), keypoints * side - offset


def _weighted_nms(boxes: np.ndarray, keypoints: np.ndarray, scores: np.ndarray):
    """MediaPipe's weighted non-maximum suppression: each kept face is the score-weighted mean
    of the detections that overlap it by IoU > 0.3."""
    order = np.argsort(-scores)
    boxes, keypoints, scores = boxes[order], keypoints[order], scores[order]
    kept_boxes, kept_points = [], []
    left = np.ones(len(scores), bool)
    for i in range(len(scores)):
        if not left[i]:
            continue
        group = left & (_iou(boxes[i], boxes) > NMS_IOU)
        group[i] = True
        weights = scores[group] / scores[group].sum()
        kept_boxes.append(weights @ boxes[group])
        kept_points.append(np.tensordot(weights, keypoints[group], axes=1))
        left &= ~group
    if not kept_boxes:
        return np.zeros((0, 4)), np.zeros((0, 6, 2))
    return np.array(kept_boxes), np.array(kept_points)


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    lo = np.maximum(box[:2], boxes[:, :2])
    hi = np.minimum(box[2:], boxes[:, 2:])
    inter = np.prod(np.clip(hi - lo, 0, None), axis=1)
    union = np.prod(box[2:] - box[:2]) + np.prod(boxes[:, 2:] - boxes[:, :2], axis=1) - inter
    return inter / np.maximum(union, 1e-12)


class OnnxFaceMesh:
    """Detector, mesh and iris. Thread-safe; one per process."""

    def __init__(self, models: Path = MODELS):
        self.detector = FaceDetector(models / "face_detection_short_range.onnx")
        self._mesh = _session(models / "face_landmark.onnx")
        self._iris = _session(models / "iris_landmark.onnx")
        self._lock = threading.Lock()

    def faces(self, rgb: np.ndarray, min_score: float) -> np.ndarray:
        """Face boxes (N, 4) x0 y0 x1 y1 in pixels, best first."""
        with self._lock:
            return self.detector(rgb, min_score)[0]

    def mesh(self, rgb: np.ndarray, min_score: float = 0.3) -> np.ndarray | None:
        """The mesh of the most prominent face: (478, 3) float32 in pixels of ``rgb`` (z toward
        the viewer, in the same pixel scale), or None where no face is found."""
        with self._lock:
            boxes, keypoints = self.detector(rgb, min_score)
            if not len(boxes):
                return None
            box, (right_eye, left_eye) = boxes[0], keypoints[0][:2]
            angle = math.atan2(left_eye[1] - right_eye[1], left_eye[0] - right_eye[0])
            size = FACE_SCALE * max(box[2] - box[0], box[3] - box[1])
            to_image = _square((box[:2] + box[2:]) / 2, size, angle, MESH_SIZE)
            picture = _warp(rgb, to_image, MESH_SIZE).astype(np.float32) / 255.0
            raw = self._mesh.run(None, {"input_1": picture[None]})[0].reshape(468, 3)
            mesh = _project(raw, to_image, size / MESH_SIZE)
            irises = []
            for k, corners in enumerate(EYE_CORNERS):  # each eye, from the mesh's corners
                contour, iris = self._eye(rgb, mesh, corners, mirror=k == 1)
                irises.append(iris)
                mesh[EYE_CONTOURS[k]] = contour  # the lids, halos and brows, refined
        points = np.vstack([mesh, *irises]).astype(np.float32)
        points[:, 2] *= -1  # the model's z points away from the viewer
        return points

    def _eye(self, rgb, mesh, corners, mirror: bool) -> tuple[np.ndarray, np.ndarray]:
        """The eye between two mesh corners: its contour (71, 3) (``EYE_CONTOURS`` order) and
        its iris (5, 3) (centre, then its boundary)."""
        a, b = mesh[corners[0], :2], mesh[corners[1], :2]
        size = EYE_SCALE * float(np.linalg.norm(b - a))
        angle = math.atan2(b[1] - a[1], b[0] - a[0])
        to_image = _square((a + b) / 2, size, angle, IRIS_SIZE, mirror)
        picture = _warp(rgb, to_image, IRIS_SIZE).astype(np.float32) / 255.0
        contour, iris = self._iris.run(None, {"input_1": picture[None]})
        iris = iris.reshape(5, 3)
        if mirror:
            iris = iris[_MIRRORED_IRIS]
        scale = size / IRIS_SIZE
        return _project(contour.reshape(71, 3), to_image, scale), _project(iris, to_image, scale)
