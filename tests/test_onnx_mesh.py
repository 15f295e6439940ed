"""The face mesh run as ONNX: MediaPipe's pipeline on its own models, reproduced, and
MediaPipe's 478-point layout."""

from pathlib import Path

import numpy as np
import pytest

from spacelive.face.analysis import decode_portrait
from spacelive.face.landmarks import LEFT_UPPER_LID, RIGHT_UPPER_LID
from spacelive.face.onnx_mesh import EYE_CONTOURS, OnnxFaceMesh
from tests.conftest import portrait_bytes

PORTRAITS = ("astronaut", "grace_hopper", "barack_obama", "ada_lovelace")
REFERENCE = Path(__file__).parent / "data" / "mediapipe_plain_mesh.npz"
"""MediaPipe 0.10.21's own FaceMesh(static_image_mode=True, refine_landmarks=False) on the
standard portraits' photos, (468, 3) pixels each, written while mediapipe was a dependency."""


@pytest.fixture(scope="module")
def onnx_mesh() -> OnnxFaceMesh:
    return OnnxFaceMesh()


@pytest.mark.parametrize("name", PORTRAITS)
def test_the_port_equals_mediapipe_on_the_same_models(onnx_mesh, name):
    """Exact outside the eyes; the eyes' 142 points then come from the iris model."""
    theirs = np.load(REFERENCE)[name]
    ours = onnx_mesh.mesh(decode_portrait(portrait_bytes(name)))
    assert ours is not None and ours.shape == (478, 3) and ours.dtype == np.float32
    eye = np.linalg.norm(theirs[33, :2] - theirs[133, :2])
    error = np.linalg.norm(ours[:468] - theirs, axis=1) / eye  # depth too
    refined = np.zeros(468, bool)
    refined[EYE_CONTOURS[0] + EYE_CONTOURS[1]] = True  # the iris model's lids and brows
    assert error[~refined].max() < 0.003, (name, error[~refined].max())
    moved = np.linalg.norm(ours[:468, :2] - theirs[:, :2], axis=1)[refined] / eye  # in-plane
    assert 0 < np.median(moved) < 0.2, (name, np.median(moved))


@pytest.mark.parametrize("name", PORTRAITS)
def test_the_irises_sit_in_their_eyes_in_mediapipes_order(onnx_mesh, name):
    """468-472 the right eye's (image left) centre and boundary, 473-477 the left's, as in
    MediaPipe's refined mesh: each centre between its eye's corners and below its upper lid."""
    mesh = onnx_mesh.mesh(decode_portrait(portrait_bytes(name)))
    for first, corners, upper in (
        (468, (33, 133), RIGHT_UPPER_LID),
        (473, (362, 263), LEFT_UPPER_LID),
    ):
        iris = mesh[first : first + 5, :2]
        left, right = sorted(mesh[list(corners), 0])
        assert left < iris[0, 0] < right
        assert iris[0, 1] > mesh[upper, 1].min()
        radius = np.linalg.norm(iris[1:] - iris[0], axis=1)
        assert radius.std() < 0.35 * radius.mean()  # a ring around its centre
    assert mesh[468, 0] < mesh[473, 0]  # the right eye is on the image's left
    assert mesh[1, 2] > mesh[234, 2]  # z toward the viewer: the nose tip before the cheek


def test_no_face_gives_none(onnx_mesh):
    rng = np.random.default_rng(0)
    assert onnx_mesh.mesh(np.zeros((300, 400, 3), np.uint8)) is None
    assert onnx_mesh.mesh(rng.integers(0, 255, (256, 256, 3), dtype=np.uint8)) is None
    assert len(onnx_mesh.faces(np.zeros((300, 400, 3), np.uint8), 0.5)) == 0
