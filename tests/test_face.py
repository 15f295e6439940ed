"""Portrait analysis: one face, a 512x512 crop, normalized landmarks, specific errors."""

import numpy as np
import pytest

from spacelive.face.analysis import (
    MAX_PORTRAIT_BYTES,
    PortraitError,
    decode_portrait,
    normalize_landmarks,
    pixels_to_crop,
    pose_landmarks,
)
from spacelive.face.head_model import angles_from_rotation, rotation_from_angles
from spacelive.face.landmarks import LEFT_EAR, MESH_TO_SPARSE, RIGHT_EAR
from tests.conftest import png_bytes, portrait_bytes


@pytest.mark.parametrize("name", ["astronaut", "grace_hopper"])
def test_portraits_become_avatars(analyzer, name):
    avatar = analyzer.analyze(portrait_bytes(name))
    assert avatar.image.shape == (512, 512, 3) and avatar.image.dtype == np.uint8
    assert avatar.mesh_px.shape == (478, 3)
    width = np.ptp(avatar.mesh_px[:, 0])
    assert 0.3 * 512 < width < 0.6 * 512  # the crop policy frames the face
    ears = avatar.landmarks0[LEFT_EAR, :2] - avatar.landmarks0[RIGHT_EAR, :2]
    assert np.linalg.norm(ears) == pytest.approx(2.0, abs=1e-4)
    yaw, pitch, roll = avatar.pose.angles_deg()
    assert abs(yaw) < 15 and abs(roll) < 15


def test_a_turned_head_is_measured_as_turned(analyzer):
    """Ada Lovelace looks about 25-30 degrees to the side; frontalization still puts her ears
    2 apart."""
    avatar = analyzer.analyze(portrait_bytes("ada_lovelace"))
    yaw, _, roll = avatar.pose.angles_deg()
    assert 18 < abs(yaw) < 35 and abs(roll) < 15
    ears = avatar.landmarks0[LEFT_EAR, :2] - avatar.landmarks0[RIGHT_EAR, :2]
    assert np.linalg.norm(ears) == pytest.approx(2.0, abs=1e-4)


def test_a_speaking_portrait_is_measured_open_mouthed_and_turned(analyzer):
    """Barack Obama mid-word: the mouth open with teeth showing, the head turned ~18 deg."""
    from spacelive.face.rig import inner_lip_gap, mouth_width
    from spacelive.render.renderer import WarpRenderer

    avatar = analyzer.analyze(portrait_bytes("barack_obama"))
    yaw, _, roll = avatar.pose.angles_deg()
    assert 10 < abs(yaw) < 30 and abs(roll) < 15
    assert inner_lip_gap(avatar.mesh_px) > 0.3 * mouth_width(avatar.mesh_px)
    assert WarpRenderer.prepare(avatar.image, avatar.mesh_px).shows_teeth


def test_normalization_round_trips(avatar):
    sparse = pixels_to_crop(avatar.mesh_px)[MESH_TO_SPARSE]
    normalized = normalize_landmarks(sparse, avatar.pose)
    pose = avatar.pose
    back = pose_landmarks(
        normalized[None], pose.rotation[None], pose.translation[None], np.array([[[pose.scale]]])
    )[0]
    np.testing.assert_allclose(back, sparse, atol=1e-5)


def test_angles_round_trip():
    angles = np.array([0.3, -0.2, 0.1])
    rotation = rotation_from_angles(*angles)
    np.testing.assert_allclose(rotation @ rotation.T, np.eye(3), atol=1e-12)
    np.testing.assert_allclose(angles_from_rotation(rotation), angles, atol=1e-12)


def test_the_angles_turn_the_face_the_documented_way():
    """Positive yaw turns the face toward image right, positive pitch nods the chin down (the
    protocol's live poses and the head-motion teacher's nods count on it), positive roll turns
    it clockwise on screen."""
    from spacelive.face.head_model import face_model

    face = face_model()  # frontal: x right, y down, z toward the viewer
    nose, chin, forehead, right_eye, left_eye = 4, 152, 10, 33, 263

    def turned(yaw=0.0, pitch=0.0, roll=0.0):
        return face @ rotation_from_angles(yaw, pitch, roll).T

    nodded = turned(pitch=0.2)
    eyes_y = lambda f: f[[right_eye, left_eye], 1].mean()  # noqa: E731
    assert nodded[nose, 1] - eyes_y(nodded) > face[nose, 1] - eyes_y(face)  # nose tip lower
    assert nodded[chin, 2] < face[chin, 2] and nodded[forehead, 2] > face[forehead, 2]
    assert turned(yaw=0.2)[nose, 0] > face[nose, 0]
    rolled = turned(roll=0.2)
    assert rolled[left_eye, 1] > rolled[right_eye, 1]  # the image-right eye goes down


def test_analysis_of_a_turned_portrait_reports_the_turn(analyzer):
    """A horizontally mirrored portrait has the opposite yaw and roll."""
    import io

    from PIL import Image

    image = np.asarray(Image.open(io.BytesIO(portrait_bytes("grace_hopper"))))
    yaw, _, roll = analyzer.analyze(portrait_bytes("grace_hopper")).pose.angles_deg()
    m_yaw, _, m_roll = analyzer.analyze(png_bytes(image[:, ::-1].copy())).pose.angles_deg()
    assert m_yaw == pytest.approx(-yaw, abs=2.0)
    assert m_roll == pytest.approx(-roll, abs=2.0)


def test_not_an_image(analyzer):
    with pytest.raises(PortraitError) as info:
        analyzer.analyze(b"GIF89a this is not really an image")
    assert info.value.code == "portrait_unreadable"
    assert "JPEG" in info.value.message


def test_empty_upload():
    with pytest.raises(PortraitError, match="empty"):
        decode_portrait(b"")


def test_no_face(analyzer):
    gray = np.full((300, 300, 3), 128, np.uint8)
    with pytest.raises(PortraitError) as info:
        analyzer.analyze(png_bytes(gray))
    assert info.value.code == "no_face"


def test_several_faces(analyzer):
    import io

    from PIL import Image

    face = np.asarray(Image.open(io.BytesIO(portrait_bytes("astronaut"))).convert("RGB"))
    pair = np.concatenate([face, face[:, ::-1]], axis=1)
    with pytest.raises(PortraitError) as info:
        analyzer.analyze(png_bytes(pair))
    assert info.value.code == "several_faces"
    assert "exactly one face" in info.value.message


def test_oversized_bytes_are_refused_before_decoding():
    with pytest.raises(PortraitError) as info:
        decode_portrait(b"\xff" * (MAX_PORTRAIT_BYTES + 1))
    assert info.value.code == "portrait_too_large"


def test_too_many_pixels_are_refused():
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("L", (8000, 6000)).save(buffer, "PNG")  # small file, 48 megapixels
    with pytest.raises(PortraitError, match="megapixels"):
        decode_portrait(buffer.getvalue())


def test_tiny_image_is_refused():
    with pytest.raises(PortraitError) as info:
        decode_portrait(png_bytes(np.zeros((20, 20, 3), np.uint8)))
    assert info.value.code == "portrait_too_small"


@pytest.mark.parametrize("face_fraction", [0.15, 0.8])
def test_small_and_large_faces_are_framed_the_same(analyzer, face_fraction):
    """A face spanning 15% or 80% of the photo's width ends up framed like any other."""
    import io

    from PIL import Image

    photo = np.asarray(Image.open(io.BytesIO(portrait_bytes("astronaut"))).convert("RGB"))
    reference = analyzer.analyze(portrait_bytes("astronaut"))
    # The astronaut's face spans about 35% of her photo's 512 px.
    width = np.ptp(analyzer.mesh(photo)[:, 0])
    scale = face_fraction * 512 / width
    resized = np.asarray(Image.fromarray(photo).resize((int(512 * scale),) * 2))
    canvas = np.full((512, 512, 3), 200, np.uint8)
    if resized.shape[0] <= 512:
        offset = (512 - resized.shape[0]) // 2
        canvas[offset : offset + resized.shape[0], offset : offset + resized.shape[1]] = resized
    else:  # crop around the face
        centre = (analyzer.mesh(photo)[:, :2].mean(axis=0) * scale).astype(int)
        x0, y0 = np.clip(centre - 256, 0, resized.shape[0] - 512)
        canvas = resized[y0 : y0 + 512, x0 : x0 + 512]
    avatar = analyzer.analyze(png_bytes(np.ascontiguousarray(canvas)))
    assert np.ptp(avatar.mesh_px[:, 0]) == pytest.approx(np.ptp(reference.mesh_px[:, 0]), rel=0.1)
