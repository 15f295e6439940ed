"""Portrait analysis: decode, find exactly one face, crop to 512x512, mesh, pose, normalize.

Done once per portrait; the result is an ``Avatar``. Coordinates:

* ``mesh_px``: (478, 3) float32 face mesh in crop pixels (x right, y down, z toward the
  viewer in the same pixel scale, MediaPipe's convention with z negated);
* crop coordinates: pixels / 256 - 1, so the crop spans [-1, 1] (what the stages see);
* normalized landmarks: (110, 3), frontalized by the head rotation, centred, ears 2 apart.
"""

import hashlib
import io
import logging
import os
import threading
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from spacelive import FRAME_SIZE
from spacelive.face.head_model import angles_from_rotation, face_model, fit_rotation
from spacelive.face.landmarks import LEFT_EAR, MESH_TO_SPARSE, RIGHT_EAR

log = logging.getLogger(__name__)

MAX_PORTRAIT_BYTES = 20 * 1024 * 1024
MAX_PORTRAIT_PIXELS = 40_000_000
MIN_PORTRAIT_SIDE = 64
FACE_FRACTION = 0.45
"""The face (mesh bounding box, widest side) spans this fraction of the crop."""
OUTSIDE_BLUR = 0.025
"""Blur (Gaussian sigma, in frame widths) of the crop far beyond the photo's edge."""
OUTSIDE_FOCUS_PX = 48
"""Beyond the photo, the mirrored fill goes from slightly to fully out of focus over this many
crop pixels from its edge."""

# Symmetric mesh pairs (subject's right, left) that define the face's x axis.
_SYMMETRIC_PAIRS = np.array([(33, 263), (133, 362), (234, 454), (61, 291), (127, 356), (70, 300)])
_FOREHEAD, _CHIN = 10, 152


class PortraitError(ValueError):
    """A portrait that cannot become an avatar; ``code`` is stable, the message says the fix."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class HeadPose:
    """Similarity transform from normalized landmarks to crop coordinates:
    crop = scale * rotation @ normalized + translation."""

    rotation: np.ndarray  # (3, 3) float32, columns are the face's x, y, z axes
    translation: np.ndarray  # (3,) float32, crop coordinates
    scale: float

    def angles_deg(self) -> tuple[float, float, float]:
        """(yaw, pitch, roll) in degrees."""
        yaw, pitch, roll = np.degrees(angles_from_rotation(self.rotation))
        return float(yaw), float(pitch), float(roll)


@dataclass(frozen=True, slots=True)
class Avatar:
    """A portrait ready to animate."""

    avatar_id: str
    image: np.ndarray  # (512, 512, 3) uint8 RGB crop
    mesh_px: np.ndarray  # (478, 3) float32
    pose: HeadPose
    landmarks0: np.ndarray  # (110, 3) float32, normalized

    @property
    def kp_source(self) -> np.ndarray:
        """(478, 3) float32 mesh in crop coordinates ([-1, 1])."""
        return pixels_to_crop(self.mesh_px)


def pixels_to_crop(points_px: np.ndarray) -> np.ndarray:
    return (points_px / (FRAME_SIZE / 2) - np.array([1.0, 1.0, 0.0])).astype(np.float32)


def crop_to_pixels(points: np.ndarray) -> np.ndarray:
    return ((points + np.array([1.0, 1.0, 0.0])) * (FRAME_SIZE / 2)).astype(np.float32)


def symmetry_pose(mesh: np.ndarray) -> HeadPose:
    """Head pose from the mesh's own symmetry: x from right to left features, y from
    forehead to chin (orthogonalized), z = x cross y. mesh: (478, 3) crop coordinates.
    Quick and model-free, but it trusts the detector's depth; ``fit_head_pose`` does not."""
    mesh = mesh.astype(np.float64)
    x_axis = (mesh[_SYMMETRIC_PAIRS[:, 1]] - mesh[_SYMMETRIC_PAIRS[:, 0]]).sum(axis=0)
    x_axis /= np.linalg.norm(x_axis)
    y_axis = mesh[_CHIN] - mesh[_FOREHEAD]
    y_axis -= x_axis * (y_axis @ x_axis)
    y_axis /= np.linalg.norm(y_axis)
    z_axis = np.cross(x_axis, y_axis)
    return _pose_with_rotation(mesh, np.stack([x_axis, y_axis, z_axis], axis=1))


def fit_head_pose(mesh: np.ndarray) -> HeadPose:
    """Head pose by fitting the generic 3D face model to the mesh's image-plane positions
    (weak perspective, rigid points only). mesh: (478, 3) crop coordinates.

    Translation is the centroid of the sparse landmarks and scale puts the ears 2 apart in
    the frontal frame, so that ``normalize_landmarks`` gives the paper's normalization.
    """
    rotation = fit_rotation(mesh[:, :2], symmetry_pose(mesh).rotation)
    return _pose_with_rotation(mesh.astype(np.float64), rotation)


def with_model_depth(mesh: np.ndarray, pose: HeadPose) -> tuple[np.ndarray, HeadPose]:
    """The mesh with the generic face model's depth in place of the detector's, and its pose.

    Each point keeps its image-plane position (so the portrait is reproduced exactly); its
    frontal-frame depth becomes the model's. The detector guesses depth from one view and on
    turned heads guesses it shallow, so rotating its mesh turned the head too little.
    mesh: (478, 3) crop coordinates.
    """
    rotation = pose.rotation.astype(np.float64)
    depth = face_model()[:, 2]
    image = (mesh[:, :2].astype(np.float64) - pose.translation[:2]) / pose.scale
    frontal_xy = np.linalg.solve(rotation[:2, :2], (image - depth[:, None] * rotation[:2, 2]).T).T
    frontal = np.column_stack([frontal_xy, depth])
    z = pose.scale * frontal @ rotation[2] + pose.translation[2]
    out = np.column_stack([mesh[:, :2], z]).astype(np.float32)
    return out, _pose_with_rotation(out.astype(np.float64), rotation)


def _pose_with_rotation(mesh: np.ndarray, rotation: np.ndarray) -> HeadPose:
    sparse = mesh[MESH_TO_SPARSE]
    translation = sparse.mean(axis=0)
    frontal = (sparse - translation) @ rotation
    ears = frontal[LEFT_EAR, :2] - frontal[RIGHT_EAR, :2]
    scale = float(np.linalg.norm(ears) / 2)
    return HeadPose(rotation.astype(np.float32), translation.astype(np.float32), scale)


def normalize_landmarks(sparse: np.ndarray, pose: HeadPose) -> np.ndarray:
    """(..., 110, 3) crop coordinates -> normalized (frontal, centred, ears 2 apart)."""
    return ((sparse - pose.translation) @ pose.rotation / pose.scale).astype(np.float32)


def pose_landmarks(
    normalized: np.ndarray, rotation: np.ndarray, translation: np.ndarray, scale: np.ndarray
) -> np.ndarray:
    """Normalized (B, 110, 3) -> crop coordinates: crop = scale * R n + t, with rotation
    (B, 3, 3), translation (B, 3) and scale (B, 1, 1)."""
    return (scale * normalized @ np.swapaxes(rotation, -1, -2) + translation[:, None, :]).astype(
        np.float32
    )


def decode_portrait(data: bytes) -> np.ndarray:
    """Image bytes -> (H, W, 3) uint8 RGB, EXIF orientation applied."""
    if len(data) > MAX_PORTRAIT_BYTES:
        raise PortraitError(
            "portrait_too_large",
            f"portrait is {len(data) / 2**20:.1f} MiB; the limit is "
            f"{MAX_PORTRAIT_BYTES // 2**20} MiB. Send a JPEG or PNG of at most "
            f"{MAX_PORTRAIT_BYTES // 2**20} MiB (a 1024x1024 crop around the face is plenty).",
        )
    if not data:
        raise PortraitError("portrait_unreadable", "portrait is empty; send a JPEG or PNG image")
    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.width * image.height > MAX_PORTRAIT_PIXELS:
                raise PortraitError(
                    "portrait_too_large",
                    f"portrait is {image.width}x{image.height} pixels; the limit is "
                    f"{MAX_PORTRAIT_PIXELS // 1_000_000} megapixels. Scale it down first.",
                )
            from PIL import ImageOps

            rgb = np.asarray(ImageOps.exif_transpose(image).convert("RGB"), dtype=np.uint8)
    except PortraitError:
        raise
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise PortraitError(
            "portrait_unreadable",
            f"portrait could not be read as an image ({exc.__class__.__name__}); "
            "send a JPEG, PNG or WebP file",
        ) from None
    if min(rgb.shape[:2]) < MIN_PORTRAIT_SIDE:
        raise PortraitError(
            "portrait_too_small",
            f"portrait is {rgb.shape[1]}x{rgb.shape[0]} pixels; send at least "
            f"{MIN_PORTRAIT_SIDE}x{MIN_PORTRAIT_SIDE}",
        )
    return rgb


class FaceAnalyzer:
    """MediaPipe face detection (full range, then short range) to find and count faces, and the
    face mesh (478 points with iris) to place them. Thread-safe; one per process."""

    def __init__(self) -> None:
        # MediaPipe's C++ side logs several INFO/WARNING lines per image through glog.
        os.environ.setdefault("GLOG_minloglevel", "2")
        import mediapipe as mp

        self._detectors = [
            mp.solutions.face_detection.FaceDetection(
                model_selection=selection, min_detection_confidence=0.5
            )
            for selection in (1, 0)  # full range (faces far or small) first, then close-ups
        ]
        self._mesh = mp.solutions.face_mesh.FaceMesh(
            static_image_mode=True,
            max_num_faces=1,
            refine_landmarks=True,
            min_detection_confidence=0.3,
        )
        self._lock = threading.Lock()

    def find_faces(self, rgb: np.ndarray) -> list[np.ndarray]:
        """Face boxes (x0, y0, x1, y1) in pixels, best first."""
        height, width = rgb.shape[:2]
        image = np.ascontiguousarray(rgb)
        for detector in self._detectors:
            with self._lock:
                detections = detector.process(image).detections or []
            if detections:
                boxes = []
                for d in sorted(detections, key=lambda d: -d.score[0]):
                    b = d.location_data.relative_bounding_box
                    boxes.append(
                        np.array(
                            [
                                b.xmin * width,
                                b.ymin * height,
                                (b.xmin + b.width) * width,
                                (b.ymin + b.height) * height,
                            ]
                        )
                    )
                return boxes
        return []

    def mesh(self, rgb: np.ndarray) -> np.ndarray | None:
        """The mesh of the most prominent face: (478, 3) float32 in pixels of ``rgb``."""
        height, width = rgb.shape[:2]
        with self._lock:
            result = self._mesh.process(np.ascontiguousarray(rgb))
        if not result.multi_face_landmarks:
            return None
        face = result.multi_face_landmarks[0].landmark
        return np.array([(p.x * width, p.y * height, -p.z * width) for p in face], np.float32)

    def analyze(self, data: bytes) -> Avatar:
        """Portrait bytes -> Avatar, or PortraitError with a specific reason."""
        rgb = decode_portrait(data)
        boxes = self.find_faces(rgb)
        if not boxes:
            raise PortraitError(
                "no_face",
                "no face found in the portrait; send a photo with one clearly visible face, "
                "looking roughly toward the camera",
            )
        if len(boxes) > 1:
            raise PortraitError(
                "several_faces",
                f"found {len(boxes)} faces in the portrait; send a photo with exactly one face "
                "(crop the others out)",
            )
        # Mesh the face in a generous crop around its box, then crop to the final frame by
        # the mesh and mesh again there, at the resolution the renderer works in.
        x0, y0, x1, y1 = boxes[0]
        box_mesh = np.array([[x0, y0, 0], [x1, y1, 0]], np.float32)
        region, to_region = crop_around_face(rgb, box_mesh, face_fraction=0.5)
        mesh_region = self.mesh(region)
        if mesh_region is None:
            raise PortraitError(
                "no_face",
                "a face was detected but its landmarks could not be found; send a sharper, "
                "more frontal photo",
            )
        crop, to_crop = crop_around_face(rgb, _apply_inverse(to_region, mesh_region))
        mesh_px = self.mesh(crop)
        if mesh_px is None:  # keep the region's mesh, moved into the crop
            mesh_px = _apply(to_crop, _apply_inverse(to_region, mesh_region))
        kp = pixels_to_crop(mesh_px)
        kp, pose = with_model_depth(kp, fit_head_pose(kp))
        mesh_px = crop_to_pixels(kp)
        landmarks0 = normalize_landmarks(kp[MESH_TO_SPARSE], pose)
        avatar_id = hashlib.sha256(data).hexdigest()[:24]
        log.info("avatar %s: pose (yaw, pitch, roll) %s", avatar_id, pose.angles_deg())
        return Avatar(avatar_id, crop, mesh_px.astype(np.float32), pose, landmarks0)


def _apply(affine: np.ndarray, points: np.ndarray) -> np.ndarray:
    """A scale-and-shift affine (2, 3) applied to (N, 3) points; z scales like x."""
    out = points.astype(np.float64).copy()
    out[:, :2] = out[:, :2] @ affine[:, :2].T + affine[:, 2]
    out[:, 2] *= affine[0, 0]
    return out.astype(np.float32)


def _apply_inverse(affine: np.ndarray, points: np.ndarray) -> np.ndarray:
    inverse = cv2.invertAffineTransform(affine)
    return _apply(inverse, points)


def crop_around_face(
    rgb: np.ndarray, mesh: np.ndarray, face_fraction: float = FACE_FRACTION
) -> tuple[np.ndarray, np.ndarray]:
    """The square 512x512 crop centred on the face, the face's widest side face_fraction of it.

    Returns (crop (512, 512, 3) uint8, affine (2, 3) from image to crop pixels). Outside the
    photo, the photo continues as its mirror image at the edge, going out of focus with the
    distance from it: it carries on the background's texture and light, where replicated edge
    pixels drew streaks or smeared bands of whatever touched the edge.
    """
    lo, hi = mesh[:, :2].min(axis=0), mesh[:, :2].max(axis=0)
    centre = (lo + hi) / 2
    side = float((hi - lo).max()) / face_fraction
    centre[1] -= 0.05 * side  # a little more hair than neck
    scale = FRAME_SIZE / side
    affine = np.array(
        [
            [scale, 0, FRAME_SIZE / 2 - scale * centre[0]],
            [0, scale, FRAME_SIZE / 2 - scale * centre[1]],
        ],
        dtype=np.float64,
    )
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
    crop = cv2.warpAffine(
        rgb,
        affine,
        (FRAME_SIZE, FRAME_SIZE),
        flags=interpolation,
        borderMode=cv2.BORDER_REFLECT_101,
    )
    # How much of each crop pixel the photo covers, as bilinear sampling sees it: 1 within,
    # falling to 0 over the source pixel beyond each edge. The affine only scales and shifts,
    # so it is one profile per axis.
    height, width = rgb.shape[:2]
    pixels = np.arange(FRAME_SIZE, dtype=np.float64)
    x, y = (pixels - affine[0, 2]) / scale, (pixels - affine[1, 2]) / scale
    columns = np.clip(np.minimum(x + 1, width - x), 0.0, 1.0)
    rows = np.clip(np.minimum(y + 1, height - y), 0.0, 1.0)
    inside = np.outer(rows, columns).astype(np.float32)
    if inside.min() < 1.0:
        near = cv2.GaussianBlur(crop, (0, 0), 3.0).astype(np.float32)
        far = cv2.GaussianBlur(crop, (0, 0), OUTSIDE_BLUR * FRAME_SIZE).astype(np.float32)
        beyond_x = np.maximum(np.maximum(-x, x - (width - 1)), 0.0) * scale
        beyond_y = np.maximum(np.maximum(-y, y - (height - 1)), 0.0) * scale
        distance = np.hypot(beyond_y[:, None], beyond_x[None, :])
        focus = np.clip(distance / OUTSIDE_FOCUS_PX, 0.0, 1.0).astype(np.float32)[..., None]
        soft = near + focus * (far - near)
        # Fading from sharp 12 px within the photo's edge to the fill 12 px beyond.
        outside = (1.0 - cv2.blur(inside, (25, 25)))[..., None]
        crop = (crop + outside * (soft - crop)).round().astype(np.uint8)
    return crop, affine
