"""The first renderer: rest is exact, motion moves the right pixels and only those."""

import numpy as np
import pytest

from spacelive.face.landmarks import MESH_TO_IBUG68
from spacelive.render.renderer import WarpRenderer

LOWER_LIP_AND_CHIN = MESH_TO_IBUG68[[5, 6, 7, 8, 9, 10, 11, 55, 56, 57, 58, 59, 64, 65, 66, 67]]


def test_rest_pose_returns_the_source_exactly(avatar):
    renderer = WarpRenderer()
    source = renderer.prepare(avatar.image, avatar.mesh_px)
    assert np.array_equal(renderer.render(source, avatar.mesh_px), avatar.image)


def test_moving_keypoints_moves_those_pixels_and_leaves_the_background(avatar):
    renderer = WarpRenderer()
    source = renderer.prepare(avatar.image, avatar.mesh_px)
    driving = avatar.mesh_px.copy()
    below_nose = avatar.mesh_px[:, 1] > avatar.mesh_px[MESH_TO_IBUG68[33], 1]
    driving[below_nose, 1] += 10  # drop the jaw by 10 px
    frame = renderer.render(source, driving)

    diff = np.abs(frame.astype(int) - avatar.image.astype(int)).sum(axis=2)
    chin = avatar.mesh_px[MESH_TO_IBUG68[8], :2].astype(int)
    around_chin = diff[chin[1] - 20 : chin[1] + 20, chin[0] - 30 : chin[0] + 30]
    assert around_chin.mean() > 10
    assert diff[:40, :40].max() == 0 and diff[:40, -40:].max() == 0  # background corners

    # The chin samples the source about 10 px above (the commanded jaw drop).
    sample = renderer.sample_map(source, driving)
    assert -11 < sample[chin[1], chin[0], 1] - chin[1] < -7
    assert abs(sample[30, 30] - [30, 30]).max() < 0.05


def test_closing_an_open_mouth_stretches_the_neck_instead_of_folding_the_chin(analyzer):
    """The chin rises as the speaking portrait's mouth closes: below it the map must not fold
    back onto the chin (that drew a ghost of it on the neck)."""
    from spacelive.face.rig import FaceCommand, FaceRig
    from tests.conftest import portrait_bytes

    avatar = analyzer.analyze(portrait_bytes("barack_obama"))
    renderer = WarpRenderer()
    source = renderer.prepare(avatar.image, avatar.mesh_px)
    driving = FaceRig(avatar.mesh_px, avatar.pose).apply(FaceCommand(mouth_open=0.0))
    chin = avatar.mesh_px[MESH_TO_IBUG68[8], :2].astype(int)
    assert driving[MESH_TO_IBUG68[8], 1] < chin[1] - 8  # the chin has risen
    sample = renderer.sample_map(source, driving)
    below = sample[chin[1] - 40 : chin[1] + 60, chin[0] - 40 : chin[0] + 40, 1]
    assert np.diff(below, axis=0).min() >= 0.2  # source y advances down every column
    along = sample[chin[1] - 40 : chin[1] + 60, chin[0] - 40 : chin[0] + 40, 0]
    assert np.diff(along, axis=1).min() >= 0.2


def test_render_is_deterministic(avatar):
    renderer = WarpRenderer()
    source = renderer.prepare(avatar.image, avatar.mesh_px)
    driving = avatar.mesh_px + np.array([3.0, -2.0, 0.0], np.float32)
    assert np.array_equal(renderer.render(source, driving), renderer.render(source, driving))


def test_rendering_into_a_reused_frame_gives_the_same_bytes(avatar):
    """Sessions and render workers pass one frame buffer for every frame: what it held
    before (another pose, a rest frame) never shows through, and the flow scratch of one
    frame does not leak into the next."""
    renderer = WarpRenderer()
    source = renderer.prepare(avatar.image, avatar.mesh_px)
    jaw = avatar.mesh_px.copy()
    jaw[avatar.mesh_px[:, 1] > avatar.mesh_px[MESH_TO_IBUG68[33], 1], 1] += 8
    shifted = avatar.mesh_px + np.array([3.0, -2.0, 0.0], np.float32)
    poses = [jaw, shifted, avatar.mesh_px, jaw]
    fresh = [WarpRenderer().render(source, p) for p in poses]
    buffer = np.full_like(avatar.image, 77)
    for pose, expected in zip(poses, fresh, strict=True):
        frame = renderer.render(source, pose, buffer)
        assert frame is buffer
        assert np.array_equal(frame, expected)


def test_a_frame_buffer_of_the_wrong_kind_is_refused(avatar):
    renderer = WarpRenderer()
    source = renderer.prepare(avatar.image, avatar.mesh_px)
    for wrong in (
        np.zeros((256, 256, 3), np.uint8),
        np.zeros(avatar.image.shape, np.float32),
        np.zeros((512, 1024, 3), np.uint8)[:, ::2],  # right shape, not contiguous
    ):
        with pytest.raises(ValueError, match="C-contiguous"):
            renderer.render(source, avatar.mesh_px, wrong)
