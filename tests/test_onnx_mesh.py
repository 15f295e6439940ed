"""The face mesh run as ONNX reproduces MediaPipe's own pipeline on the same models, and gives
MediaPipe's 478-point layout."""

import numpy as np
import pytest

from spacelive.face.analysis import decode_portrait
from spacelive.face.onnx_mesh import OnnxFaceMesh
from tests.conftest import portrait_bytes

PORTRAITS = ("astronaut", "grace_hopper", "barack_obama", "ada_lovelace")


@pytest.fixture(scope="module")
def onnx_mesh() -> OnnxFaceMesh:
    return OnnxFaceMesh()


@pytest.fixture(scope="module")
def mediapipe_plain():
    """MediaPipe's face mesh with the very models converted (no attention refinement)."""
    mp = pytest.importorskip("mediapipe")
    mesh = mp.solutions.face_mesh.FaceMesh(
        static_image_mode=True,
        max_num_faces=1,
        refine_landmarks=False,
        min_detection_confidence=0.3,
    )

    def run(rgb: np.ndarray) -> np.ndarray:
        face = mesh.process(np.ascontiguousarray(rgb)).multi_face_landmarks[0].landmark
        h, w = rgb.shape[:2]
        return np.array([(p.x * w, p.y * h, -p.z * w) for p in face], np.float32)

    return run


@pytest.mark.parametrize("name", PORTRAITS)
def test_the_port_equals_mediapipe_on_the_same_models(onnx_mesh, mediapipe_plain, analyzer, name):
    data = portrait_bytes(name)
    for rgb in (decode_portrait(data), analyzer.analyze(data).image):  # photo, then crop
        ours, theirs = onnx_mesh.mesh(rgb), mediapipe_plain(rgb)
        assert ours is not None and ours.shape == (478, 3) and ours.dtype == np.float32
        eye = np.linalg.norm(theirs[33, :2] - theirs[133, :2])
        error = np.linalg.norm(ours[:468] - theirs, axis=1) / eye  # depth too
        assert error.max() < 0.003, (name, error.max())


def test_the_irises_sit_in_their_eyes_in_mediapipes_order(onnx_mesh, analyzer):
    """468-472 the right eye's (image left) centre and boundary, 473-477 the left's, as in
    MediaPipe's refined mesh, whose irises they match within 0.07 eye widths."""
    avatar = analyzer.analyze(portrait_bytes("astronaut"))
    ours, today = onnx_mesh.mesh(avatar.image), avatar.mesh_px
    eye = np.linalg.norm(today[33, :2] - today[133, :2])
    for iris, corners in ((slice(468, 473), (33, 133)), (slice(473, 478), (362, 263))):
        centre = ours[iris][0, :2]
        left, right = sorted(today[list(corners), 0])
        assert left < centre[0] < right
        error = np.linalg.norm(ours[iris, :2] - today[iris, :2], axis=1) / eye
        assert error.max() < 0.07, error
    assert ours[1, 2] > ours[234, 2]  # z toward the viewer: the nose tip before the cheek


def test_no_face_gives_none(onnx_mesh):
    rng = np.random.default_rng(0)
    assert onnx_mesh.mesh(np.zeros((300, 400, 3), np.uint8)) is None
    assert onnx_mesh.mesh(rng.integers(0, 255, (256, 256, 3), dtype=np.uint8)) is None
