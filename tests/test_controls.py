"""Live face controls: blinks (Poisson, seeded, 4 frames), gaze and emotion ramps, and their
effect on the landmarks the renderer is driven by."""

import numpy as np
import pytest

from spacelive.face.eyes import SPARSE_EYES, pose_eyes
from spacelive.face.landmarks import EMOTIONS, MESH_TO_EYES, MESH_TO_IBUG68
from spacelive.motion.controls import (
    BLINK_CLOSURE,
    EMOTION_RAMP_FRAMES,
    FIRST_BLINK_S,
    ControlUpdate,
    FaceControls,
)


def run(controls: FaceControls, frames: int):
    return [controls.advance() for _ in range(frames)]


def blink_starts(closures: list[float]) -> list[int]:
    c = np.array(closures)
    return [int(i) for i in np.flatnonzero((c > 0) & (np.concatenate([[0.0], c[:-1]]) == 0))]


def test_blinks_follow_the_rate_and_each_takes_four_frames():
    counts = []
    for seed in range(20):
        closures = [f.closure for f in run(FaceControls(seed=seed), 1800)]  # one minute
        starts = blink_starts(closures)
        for s in starts[:-1]:
            assert closures[s : s + 4] == list(BLINK_CLOSURE) and closures[s + 4] == 0.0
        counts.append(len(starts))
    assert np.mean(counts) == pytest.approx(15, rel=0.15)  # 15 per minute by default


def test_short_clips_blink_too():
    for seed in range(30):
        closures = [f.closure for f in run(FaceControls(seed=seed), 90)]  # 3 s
        (first, *_) = blink_starts(closures)
        assert FIRST_BLINK_S[0] * 30 - 1 <= first <= FIRST_BLINK_S[1] * 30 + 1


def test_a_seed_gives_the_same_blinks_and_rate_zero_gives_none():
    a = [f.closure for f in run(FaceControls(seed=4), 900)]
    b = [f.closure for f in run(FaceControls(seed=4), 900)]
    c = [f.closure for f in run(FaceControls(seed=5), 900)]
    assert a == b and a != c
    none = FaceControls(ControlUpdate(blinks_per_minute=0), seed=4)
    assert max(f.closure for f in run(none, 900)) == 0.0


def test_a_blink_control_blinks_at_once_even_when_blinks_are_off():
    controls = FaceControls(ControlUpdate(blinks_per_minute=0))
    run(controls, 10)
    controls.apply(ControlUpdate(blink=True))
    assert [f.closure for f in run(controls, 6)] == [*BLINK_CLOSURE, 0.0, 0.0]


def test_emotion_changes_ramp_over_frames_and_start_values_hold_at_once():
    happy = np.eye(len(EMOTIONS), dtype=np.float32)[EMOTIONS.index("happy")]
    start = FaceControls(ControlUpdate(emotion=happy))
    assert start.advance().emotion[EMOTIONS.index("happy")] == 1.0
    controls = FaceControls()
    run(controls, 3)
    controls.apply(ControlUpdate(emotion=happy))
    ramp = [f.emotion[EMOTIONS.index("happy")] for f in run(controls, EMOTION_RAMP_FRAMES + 2)]
    assert all(0 < r < 1 for r in ramp[:4])  # at least 4 frames in between
    assert np.all(np.diff(ramp) >= 0) and ramp[EMOTION_RAMP_FRAMES - 1] == pytest.approx(1.0)


def test_gaze_moves_within_two_frames_and_bad_values_change_nothing():
    controls = FaceControls()
    controls.apply(ControlUpdate(gaze=(0.4, -0.2)))
    gazes = [f.gaze for f in run(controls, 3)]
    assert 0 < gazes[0][0] < 0.4 and np.allclose(gazes[1], [0.4, -0.2])
    for bad in (ControlUpdate(gaze=(1.5, 0)), ControlUpdate(blinks_per_minute=-1)):
        with pytest.raises(ValueError):
            controls.apply(bad)
    assert np.allclose(controls.advance().gaze, [0.4, -0.2])


def test_closed_lids_meet_and_the_iris_looks_where_it_is_told(avatar):
    face = avatar.landmarks0
    closed = pose_eyes(face, 1.0, (0.0, 0.0))
    for _, upper, lower, _ in SPARSE_EYES:
        opening = np.abs(closed[upper[1:-1], 1] - closed[lower[1:-1], 1])
        assert opening.max() < 0.05 * np.abs(face[upper[1:-1], 1] - face[lower[1:-1], 1]).max()
    twin = 68 + list(MESH_TO_EYES).index(MESH_TO_IBUG68[37])  # the same mesh point
    np.testing.assert_allclose(closed[37], closed[twin])  # the iBUG eye point follows
    looking = pose_eyes(face, 0.0, (0.3, 0.0))
    for _, upper, _, iris in SPARSE_EYES:
        half_width = np.linalg.norm(face[upper[-1], :2] - face[upper[0], :2]) / 2
        moved = looking[iris[0], :2] - face[iris[0], :2]
        np.testing.assert_allclose(moved, [0.3 * half_width, 0.0], atol=1e-5)


def test_a_blink_reaches_the_posed_face_and_leaves_it_again(engine, avatar):
    from spacelive.media.audio import offline_mfcc

    silence = offline_mfcc(np.zeros(16_000))
    plain = engine.motion.new_state(avatar, ControlUpdate(blinks_per_minute=0))
    blinking = engine.motion.new_state(avatar, ControlUpdate(blinks_per_minute=0, blink=True))
    a, b = engine.motion.run(plain, silence), engine.motion.run(blinking, silence)
    (_, upper, lower, _) = SPARSE_EYES[0]
    gap = lambda m: float(np.mean(m.landmarks[lower[4], 1] - m.landmarks[upper[4], 1]))  # noqa: E731
    assert gap(b[1]) < 0.1 * gap(a[1])  # closed at the blink's second frame
    np.testing.assert_array_equal(a[6].landmarks, b[6].landmarks)  # and open again after


def test_mouth_scale_multiplies_the_mouth_motion_only(engine, avatar):
    from spacelive.checks.bench import speech_like
    from spacelive.media.audio import offline_mfcc
    from spacelive.motion.idle import audio_relaxation
    from spacelive.motion.loop import MOUTH_AND_JAW

    audio = np.concatenate([np.zeros(8_000), speech_like(1.0, seed=6), np.zeros(26_000)])
    mfcc = offline_mfcc(audio.astype(np.float32))
    runs = {}
    for scale in (1.0, 1.5, 2.0):
        state = engine.motion.new_state(
            avatar, ControlUpdate(blinks_per_minute=0, mouth_scale=scale)
        )
        runs[scale] = np.array([m.landmarks for m in engine.motion.run(state, mfcc)])
    # The face is the rest (with the idle share of the portrait's parting) plus scale x speech.
    speech = runs[2.0] - runs[1.0]
    half = runs[1.5] - runs[1.0]
    np.testing.assert_allclose(half[:, MOUTH_AND_JAW], 0.5 * speech[:, MOUTH_AND_JAW], atol=1e-5)
    others = np.setdiff1d(np.arange(110), MOUTH_AND_JAW)
    np.testing.assert_allclose(speech[:, others], 0, atol=1e-6)
    assert np.abs(speech[:, MOUTH_AND_JAW]).max() > 0.01  # the tiny model does move the mouth
    # Scaled around the lips-closed rest plus the idle share of the portrait's own parting.
    idle = audio_relaxation(mfcc[:, 0], engine.motion.lookahead)[:, None, None]
    assert idle.min() == 0 and idle.max() == 1
    rest = state.speech_rest + idle * state.parting
    np.testing.assert_allclose(
        (runs[1.0] - speech)[:, MOUTH_AND_JAW], rest[:, MOUTH_AND_JAW], atol=1e-5
    )
    with pytest.raises(ValueError, match="mouth_scale"):
        FaceControls(ControlUpdate(mouth_scale=2.5))


def test_a_gaze_trajectory_is_followed_from_when_it_is_set_and_holds_its_end():
    from spacelive.motion.gaze import GazeTrajectory

    controls = FaceControls(ControlUpdate(blinks_per_minute=0))
    run(controls, 5)
    path = GazeTrajectory(np.array([0.0, 1.0, 2.0]), np.array([[0, 0], [0.6, 0], [0.6, -0.3]]))
    controls.apply(ControlUpdate(gaze_trajectory=path))
    gazes = np.array([f.gaze for f in run(controls, 80)])
    np.testing.assert_allclose(gazes[15], [0.3, 0.0], atol=1e-6)  # half way to its 1 s point
    np.testing.assert_allclose(gazes[45], [0.6, -0.15], atol=1e-6)
    np.testing.assert_allclose(gazes[70:], [[0.6, -0.3]] * 10, atol=1e-6)  # holds its end
    controls.apply(ControlUpdate(gaze=(0.0, 0.0)))  # a fixed gaze ends it
    assert np.allclose(run(controls, 2)[-1].gaze, 0.0)
    for times, points in (([1.0, 0.5], [[0, 0], [0, 0]]), ([0.0], [[1.5, 0]])):
        with pytest.raises(ValueError, match="gaze trajectory"):
            GazeTrajectory(np.array(times), np.array(points))


def test_natural_gaze_adds_small_seeded_saccades_around_the_asked_gaze():
    from spacelive.motion.gaze import GAZE_RAMP_FRAMES, SACCADE_RADIUS

    def eyes(seed: int, saccades: bool) -> np.ndarray:
        update = ControlUpdate(blinks_per_minute=0, gaze=(0.2, 0.0), saccades=saccades)
        return np.array([f.gaze for f in run(FaceControls(update, seed=seed), 900)])

    a, b, other, still = eyes(1, True), eyes(1, True), eyes(2, True), eyes(1, False)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, other) and np.all(still == still[0])
    offsets = np.linalg.norm(a - [0.2, 0.0], axis=1)
    assert offsets.max() <= SACCADE_RADIUS + 1e-6 and offsets.mean() > 0.03
    jumps = np.flatnonzero(np.linalg.norm(np.diff(a, axis=0), axis=1) > 1e-6)
    starts = jumps[np.concatenate([[True], np.diff(jumps) > GAZE_RAMP_FRAMES])]
    assert 12 <= len(starts) <= 40  # about one a second over 30 s
    # The blinks stay the same with or without saccades: they have their own generator.
    update = ControlUpdate(saccades=True)
    with_saccades = [f.closure for f in run(FaceControls(update, seed=1), 900)]
    assert with_saccades == [f.closure for f in run(FaceControls(seed=1), 900)]
