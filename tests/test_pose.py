"""Head pose modes (generated, fixed, reference, live), their blending, pose tracks from JSON
and video, and how the motion loop and the wire format carry them."""

import json

import numpy as np
import pytest
from pydantic import ValidationError

from spacelive.face.analysis import fit_head_pose, pixels_to_crop
from spacelive.motion.controls import ControlUpdate, FaceControls
from spacelive.motion.pose import (
    POSE_BLEND_FRAMES,
    POSE_LIMITS_DEG,
    HeadPoseControl,
    PoseTrack,
    PoseTrackError,
    track_from_video,
)
from spacelive.server.protocol import Controls, ProtocolError, parse_client_text

SCALE = 0.4  # a portrait's HeadPose.scale (half the ear distance in crop units)


def generated(k: int) -> np.ndarray:
    """A stand-in for PoseGen's output at frame k: a slow nod and turn."""
    return np.array([0.1 * np.sin(k / 9), 0.05 * np.cos(k / 7), 0.0, 0.01, 0.0, 0.0], np.float32)


def run(control: HeadPoseControl, frames: int, start: int = 0) -> np.ndarray:
    return np.array([control.advance(generated(k)) for k in range(start, start + frames)])


def test_generated_follows_posegen_and_fixed_holds_the_portrait():
    control = HeadPoseControl(SCALE)
    np.testing.assert_array_equal(run(control, 5), [generated(k) for k in range(5)])
    fixed = HeadPoseControl(SCALE)
    fixed.apply("fixed")
    fixed.settle()
    assert np.all(run(fixed, 10) == 0.0)


def test_a_mode_change_blends_over_six_frames_without_a_jump():
    control = HeadPoseControl(SCALE)
    before = run(control, 20)
    control.apply("fixed")
    after = run(control, 10, start=20)
    steps = np.abs(np.diff(np.concatenate([before[-1:], after]), axis=0)).max(axis=1)
    # The blend takes POSE_BLEND_FRAMES frames: each moves about 1/6 of the way, none jumps.
    assert np.all(after[POSE_BLEND_FRAMES - 1 :] == 0.0)
    assert np.all(np.abs(after[: POSE_BLEND_FRAMES - 1]).max(axis=1) > 0)
    assert steps.max() <= np.abs(before[-1]).max() / POSE_BLEND_FRAMES + 0.01
    # Back again mid-blend: it blends from what was shown, not from the portrait.
    control.apply("generated")
    control.apply("fixed")
    mid = run(control, 3, start=30)
    control.apply("generated")
    back = run(control, POSE_BLEND_FRAMES, start=33)
    assert np.abs(back[0] - mid[-1]).max() < np.abs(generated(33)).max() / 2
    np.testing.assert_allclose(back[-1], generated(38), atol=1e-7)


def test_a_reference_track_plays_relative_to_its_first_frame_and_back_and_forth():
    angles = np.array([[10.0, 5.0, 0.0], [12.0, 5.0, -1.0], [14.0, 6.0, -2.0]])
    translation = np.array([[0.0, 0.0, 0.0], [0.1, 0.0, 0.0], [0.2, -0.1, 0.0]])
    track = PoseTrack.from_poses(angles, 30, translation)
    control = HeadPoseControl(SCALE)
    run(control, 7)  # the track starts at the frame the mode is set on
    control.apply("reference", track)
    control.settle()
    out = run(control, 5, start=7)
    np.testing.assert_allclose(np.degrees(out[:, 0]), [0, 2, 4, 2, 0], atol=1e-4)
    np.testing.assert_allclose(out[:, 3], np.array([0, 0.1, 0.2, 0.1, 0]) * SCALE, atol=1e-6)


def test_a_track_at_another_frame_rate_is_resampled_to_30_fps():
    t = np.arange(26) / 25  # one second at 25 fps
    track = PoseTrack.from_poses(np.column_stack([10 * t, 0 * t, 0 * t]), 25)
    assert len(track.offsets) == 31
    np.testing.assert_allclose(np.degrees(track.offsets[:, 0]), 10 * np.arange(31) / 30, atol=1e-4)


def test_live_poses_hold_until_the_next_and_every_pose_stays_in_range():
    control = HeadPoseControl(SCALE)
    control.apply("live", live=np.radians([5.0, -3.0, 1.0, 0, 0, 0]))
    control.settle()
    out = run(control, 3)
    np.testing.assert_allclose(np.degrees(out[:, :3]), [[5, -3, 1]] * 3, atol=1e-4)
    control.apply(live=np.radians([80.0, -80.0, 80.0, 0, 0, 0]))
    (held,) = run(control, 1)
    np.testing.assert_allclose(np.degrees(np.abs(held[:3])), POSE_LIMITS_DEG, atol=1e-3)


def test_refused_changes_change_nothing():
    controls = FaceControls(face_scale=SCALE)
    with pytest.raises(ValueError, match="needs a pose track"):
        controls.apply(ControlUpdate(pose_mode="reference", mouth_scale=1.5))
    with pytest.raises(ValueError, match="unknown pose mode"):
        controls.apply(ControlUpdate(pose_mode="wobble"))
    assert controls.head.mode == "generated" and controls.advance().mouth_scale == 1.0
    for bad in ([], [[np.nan, 0, 0]]):
        with pytest.raises(PoseTrackError):
            PoseTrack.from_poses(np.array(bad, float), 30)


def test_the_wire_format_carries_modes_tracks_and_live_poses():
    track = {"fps": 30, "frames": [{"yaw": 0}, {"yaw": 3, "pitch": -2, "x": 0.05}]}
    start = parse_client_text(
        json.dumps({"type": "start", "controls": {"pose": {"mode": "reference", "track": track}}})
    )
    update = start.controls.update()
    assert update.pose_mode == "reference"
    np.testing.assert_allclose(np.degrees(update.pose_track.offsets[1, :2]), [3, -2], atol=1e-4)
    live = parse_client_text(
        json.dumps({"type": "control", "pose": {"mode": "live", "live": {"yaw": 4, "roll": -1}}})
    )
    np.testing.assert_allclose(np.degrees(live.update().live_pose[:3]), [4, 0, -1], atol=1e-4)
    for bad, needle in (
        ({"pose": {"mode": "fixed", "track": track}}, "goes with mode 'reference'"),
        ({"pose": {"mode": "spin"}}, "pose.mode"),
        ({"pose": {"mode": "live", "live": {"yaw": 400}}}, "less than or equal to 90"),
        ({"pose": {"mode": "reference", "track": {"frames": []}}}, "at least 1"),
    ):
        with pytest.raises(ProtocolError) as error:
            parse_client_text(json.dumps({"type": "control", **bad}))
        assert needle in error.value.message
    with pytest.raises(ValidationError):
        Controls(pose={"mode": "reference", "track": {"fps": 0, "frames": [{}]}})


def test_a_video_gives_the_head_pose_of_every_frame(tmp_path, analyzer, avatar):
    """A clip of the portrait rendered turning its head: the extracted track follows the turn
    as the detector sees it frame by frame (the same fit, frame 0 subtracted)."""
    from spacelive.face.rig import FaceCommand, FaceRig
    from spacelive.media.video import H264Encoder, write_mp4
    from spacelive.render.renderer import WarpRenderer

    rig, renderer = FaceRig(avatar.mesh_px, avatar.pose), WarpRenderer()
    source = renderer.prepare(avatar.image, avatar.mesh_px)
    yaw = np.radians(np.concatenate([np.linspace(0, 12, 10), np.linspace(12, -8, 10)]))
    frames = [renderer.render(source, rig.apply(FaceCommand(yaw=float(y)))) for y in yaw]
    encoder = H264Encoder()
    path = tmp_path / "turn.mp4"
    write_mp4(path, [encoder.encode(f, k) for k, f in enumerate(frames)], None, 16_000)
    encoder.close()
    track = track_from_video(path, analyzer)
    assert len(track.offsets) == len(frames)
    expected = [fit_head_pose(pixels_to_crop(analyzer.mesh(f))).angles_deg()[0] for f in frames]
    found = np.degrees(track.offsets[:, 0])
    # The video is H.264: the detector sees it a little differently from the raw frames.
    np.testing.assert_allclose(found, np.array(expected) - expected[0], atol=1.5)
    assert np.corrcoef(found, np.degrees(yaw))[0, 1] > 0.95
    with pytest.raises(PoseTrackError, match="could not be read"):
        (tmp_path / "not.mp4").write_bytes(b"not a video")
        track_from_video(tmp_path / "not.mp4", analyzer)


def test_a_head_pose_turns_every_keypoint_rigidly(tmp_path, avatar):
    """The same speech with the head held turned and tilted, and with it fixed: frontalized
    with their poses, the two streams' 478 keypoints are the same face (the landmark transfer
    moves the expression, the pose turns the whole mesh)."""
    pytest.importorskip("torch")
    from spacelive.checks.bench import speech_like
    from spacelive.export.stages import build_stages, export_stages, randomize
    from spacelive.face.analysis import normalize_landmarks
    from spacelive.face.head_model import rotation_from_angles
    from spacelive.media.audio import offline_mfcc
    from spacelive.stream.engine import Engine, EngineConfig

    stages = randomize(build_stages("tiny", seed=5), seed=6, head_scale=0.5)
    export_stages(stages, tmp_path)
    engine = Engine(EngineConfig(models=tmp_path))

    mfcc = offline_mfcc(speech_like(1.0, seed=2))
    turn = np.radians([12.0, -6.0, 4.0])
    live = ControlUpdate(
        blinks_per_minute=0, pose_mode="live", live_pose=np.array([*turn, 0, 0, 0])
    )
    fixed = ControlUpdate(blinks_per_minute=0, pose_mode="fixed")
    turned, straight = (
        engine.motion.run(engine.motion.new_state(avatar, update, 3), mfcc)
        for update in (live, fixed)
    )
    pose = avatar.pose
    rotation = rotation_from_angles(*turn) @ pose.rotation
    for a, b in zip(turned, straight, strict=True):
        np.testing.assert_allclose(np.degrees(a.pose[:3]), np.degrees(turn), atol=1e-4)
        frontal_a = (a.keypoints - pose.translation) @ rotation / pose.scale
        np.testing.assert_allclose(frontal_a, normalize_landmarks(b.keypoints, pose), atol=1e-4)
    assert not np.allclose(turned[10].keypoints, straight[10].keypoints, atol=1e-2)
