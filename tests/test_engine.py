"""The session engine: exact frame counts, chunking invariance, isolation between sessions."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spacelive.checks.bench import speech_like
from spacelive.media.audio import frame_count, pcm_s16le
from spacelive.media.audio_input import AudioSpec, InputError
from tests.conftest import frames_of


def run_session(engine, avatar, pcm: bytes, chunk_bytes: list[int], rate=16_000, seed=0):
    """The test harness: push PCM in the given chunking, end, return the frames."""
    stream = engine.open_stream(avatar, AudioSpec(sample_rate=rate), seed=seed)
    frames, i, sizes = [], 0, iter(chunk_bytes)
    while i < len(pcm):
        n = next(sizes, len(pcm))
        stream.push_audio(pcm[i : i + n])
        frames += frames_of(stream)
        i += n
    stream.end()
    frames += frames_of(stream)
    stream.close()
    return frames


def test_ten_seconds_give_300_frames_in_order(engine, avatar):
    pcm = pcm_s16le(speech_like(10.0, seed=1))
    frames = run_session(engine, avatar, pcm, [640] * 300)
    assert [f.frame_index for f in frames] == list(range(300))
    assert frames[0].keyframe


@settings(
    max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(samples=st.integers(0, 40_000), rate=st.sampled_from([16_000, 24_000, 48_000]))
def test_duration_d_gives_ceil_d_times_30_frames(engine, avatar, samples, rate):
    pcm = pcm_s16le(speech_like(samples / rate + 1e-9, rate, seed=samples))[: 2 * samples]
    pcm += b"\x00\x00" * (samples - len(pcm) // 2)
    frames = run_session(engine, avatar, pcm, [4_000], rate)
    assert len(frames) == frame_count(samples, rate) == -(-samples * 30 // rate)


@pytest.mark.parametrize("rate", [16_000, 48_000])
@settings(
    max_examples=5, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(chunk_samples=st.lists(st.integers(1, 40_000), min_size=1, max_size=20))
def test_frames_are_identical_whatever_the_chunking(engine, avatar, rate, chunk_samples):
    pcm = pcm_s16le(speech_like(1.5, rate, seed=rate))
    reference = run_session(engine, avatar, pcm, [len(pcm)], rate)
    frames = run_session(engine, avatar, pcm, [2 * n for n in chunk_samples], rate)
    assert [f.data for f in frames] == [f.data for f in reference]


def test_untrained_weights_still_move_the_face(engine, avatar):
    """Guards the tests above: with the random tiny models the frames really change."""
    pcm = pcm_s16le(speech_like(1.0, seed=2))
    frames = run_session(engine, avatar, pcm, [len(pcm)])
    assert len({f.data for f in frames[1:]}) > 20


def test_sessions_are_isolated(engine, avatar):
    pcm_a = pcm_s16le(speech_like(2.0, seed=10))
    pcm_b = pcm_s16le(speech_like(2.0, seed=20) * 0.5)
    alone_a = run_session(engine, avatar, pcm_a, [1280])
    alone_b = run_session(engine, avatar, pcm_b, [1280])
    assert [f.data for f in alone_a] != [f.data for f in alone_b]

    a, b = engine.open_stream(avatar), engine.open_stream(avatar)
    got_a, got_b = [], []
    chunks_a = [pcm_a[i : i + 1280] for i in range(0, len(pcm_a), 1280)]
    chunks_b = [pcm_b[i : i + 640] for i in range(0, len(pcm_b), 640)]
    for i in range(max(len(chunks_a), len(chunks_b))):  # interleaved, different chunkings
        if i < len(chunks_a):
            a.push_audio(chunks_a[i])
            got_a += frames_of(a)
        if i < len(chunks_b):
            b.push_audio(chunks_b[i])
            got_b += frames_of(b)
    b.end()
    a.end()
    got_a, got_b = got_a + frames_of(a), got_b + frames_of(b)
    assert [f.data for f in got_a] == [f.data for f in alone_a]
    assert [f.data for f in got_b] == [f.data for f in alone_b]


def test_batched_step_equals_stepping_alone(engine, avatar):
    from spacelive.media.audio import offline_mfcc

    motion = engine.motion
    mfcc_a = offline_mfcc(speech_like(0.5, seed=4))
    mfcc_b = offline_mfcc(speech_like(0.5, seed=5))
    alone = []
    for mfcc in (mfcc_a, mfcc_b):
        state = motion.new_state(avatar, seed=1)
        alone.append([motion.step([state], row[None])[0] for row in mfcc])
    states = [motion.new_state(avatar, seed=1), motion.new_state(avatar, seed=1)]
    together = [
        motion.step(states, np.stack([ra, rb])) for ra, rb in zip(mfcc_a, mfcc_b, strict=True)
    ]
    for who in (0, 1):
        for got, want in zip([t[who] for t in together], alone[who], strict=True):
            if want is None:
                assert got is None
            else:
                np.testing.assert_allclose(got.keypoints, want.keypoints, atol=1e-5)


def test_odd_length_pcm_is_refused(engine, avatar):
    stream = engine.open_stream(avatar)
    with pytest.raises(InputError, match="not a whole number of 16-bit samples"):
        stream.push_audio(b"\x00\x01\x02")
    stream.close()
    stream.close()  # idempotent


def test_unsupported_rate_is_refused(engine, avatar):
    with pytest.raises(InputError) as info:
        engine.open_stream(avatar, AudioSpec(sample_rate=8_000))
    assert info.value.code == "unsupported_sample_rate"


def test_the_landmark_transfer_carries_the_lips_to_the_mesh(engine, avatar):
    """S2L's lip motion reaches the renderer's keypoints through the geometric transfer."""
    state = engine.open_session(avatar).state
    # The transfer, in the face's frontal frame, moves sparse points exactly and the rest of
    # the mesh with them.
    from spacelive.face.analysis import normalize_landmarks

    frontal = normalize_landmarks(avatar.kp_source, avatar.pose)
    sparse = avatar.landmarks0[None].copy()
    np.testing.assert_allclose(state.transfer.apply(sparse)[0], frontal, atol=1e-5)
    sparse[0, 57, 1] += 0.1  # lower lip down
    moved = state.transfer.apply(sparse)[0] - frontal
    assert moved[17, 1] > 0.04 and abs(moved[0, 1]) < 1e-6  # lower lip moves, upper lip stays
    # The astronaut smiles broadly: her upper lip's centre (13) sits below her mouth corners,
    # and stays with the upper lip all the same.
    sparse[0, 66, 1] += 0.1  # lower inner lip down
    moved = state.transfer.apply(sparse)[0] - frontal
    assert moved[14, 1] > 0.04 and abs(moved[13, 1]) < 1e-6
    stream = engine.open_stream(avatar)
    stream.push_audio(pcm_s16le(speech_like(1.0, seed=3)))
    stream.end()
    frames = frames_of(stream)
    assert len(frames) == 30 and len({f.data for f in frames[1:]}) > 10


def test_the_onnx_renderer_gives_the_same_stream(tiny_models, engine, avatar):
    """`--renderer onnx` (the GPU hosts' renderer, here on the CPU provider) streams the frames
    of the numpy renderer up to rounding."""
    from spacelive.checks.sheet import decode
    from spacelive.stream.engine import Engine, EngineConfig

    pcm = pcm_s16le(speech_like(1.0, seed=3))
    twin = Engine(EngineConfig(models=tiny_models, renderer="onnx"))
    everything = set(range(30))
    a = decode(run_session(engine, avatar, pcm, [3200] * 10), everything)
    b = decode(run_session(twin, avatar, pcm, [3200] * 10), everything)
    assert sorted(a) == sorted(b) == list(range(30))
    for k in everything:
        mse = np.mean((a[k].astype(float) - b[k].astype(float)) ** 2)
        assert 10 * np.log10(255**2 / max(mse, 1e-9)) >= 38.0, k  # after H.264 on both sides


@pytest.mark.gpu
@pytest.mark.parametrize("backend", ["cuda", "tensorrt"])
def test_gpu_backends_step_like_the_cpu(tiny_models, engine, avatar, backend):
    from spacelive.stream.engine import Engine, EngineConfig

    pcm = pcm_s16le(speech_like(1.0, seed=4))
    gpu = Engine(EngineConfig(models=tiny_models, backend=backend, renderer="onnx"))
    cpu_frames = run_session(engine, avatar, pcm, [3200] * 10)
    gpu_frames = run_session(gpu, avatar, pcm, [3200] * 10)
    assert [f.frame_index for f in gpu_frames] == [f.frame_index for f in cpu_frames]


def test_an_unknown_renderer_is_refused(tiny_models):
    from spacelive.stream.engine import Engine, EngineConfig

    with pytest.raises(ValueError, match="unknown renderer 'gpu'"):
        Engine(EngineConfig(models=tiny_models, renderer="gpu"))


def test_s2l_speaks_around_the_portrait_with_its_lips_closed(engine, avatar):
    """The astronaut smiles with parted lips: S2L hears her face with the lips closed (mouth
    and jaw moved, nothing else), and her own parting is kept aside for when she is idle."""
    from spacelive.face.landmarks import closed_mouth, inner_lip_gap
    from spacelive.motion.loop import MOUTH_AND_JAW

    state = engine.motion.new_state(avatar)
    np.testing.assert_allclose(state.speech_rest[0], closed_mouth(avatar.landmarks0), atol=1e-6)
    assert inner_lip_gap(avatar.landmarks0[None])[0] > 0.1
    assert abs(inner_lip_gap(state.speech_rest)[0]) < 1e-3
    own = state.speech_rest[0] + state.parting[0]
    np.testing.assert_allclose(own, avatar.landmarks0, atol=1e-6)
    moved = np.abs(state.parting[0]).max(axis=1)
    assert moved[np.setdiff1d(np.arange(110), MOUTH_AND_JAW)].max() == 0


def _stepped(motion, state, mfcc, fail_at=None):
    """Step one stream frame by frame (lookahead flushed). Per emitted frame: its index and
    the share of the portrait's parting it shows beyond S2L's speech (mouth scale 1, no eye
    controls). With ``fail_at``, that step's controls fail once (the session is left out)."""
    state.end_at(len(mfcc))
    rows = np.concatenate([mfcc, np.zeros((motion.lookahead, mfcc.shape[1]), np.float32)])
    parting = state.parting[0].ravel()
    shares = []
    for k, row in enumerate(rows):
        if k == fail_at:
            before = (state.idle, state.mfcc_index, state.recurrent)
            advance = state.controls.advance
            state.controls.advance = lambda pose: (_ for _ in ()).throw(RuntimeError("sabotage"))
            errors: dict[int, Exception] = {}
            assert motion.step([state], row[None], errors=errors) == [None] and errors
            state.controls.advance = advance
            assert state.idle is before[0] and state.mfcc_index == before[1]
            assert state.recurrent is before[2]
        (frame,) = motion.step([state], row[None])
        if frame is not None:
            shown = (frame.landmarks - state.recurrent.landmarks[0]).ravel()
            shares.append((frame.frame_index, float(shown @ parting / (parting @ parting))))
    return shares


def test_each_frame_shows_the_idle_share_the_evaluation_gives_it(engine, avatar):
    """The server's idle state is stepped with the encoder's lookahead; frame k's landmarks
    carry exactly the relaxation ``audio_relaxation`` gives frame k (which the lip-sync
    evaluation uses for its targets), not a neighbour's. A step that fails before the controls
    move on (here: in them) writes none of the session's state, and the stream then goes on
    exactly as if it had not failed."""
    from spacelive.media.audio import offline_mfcc
    from spacelive.motion.controls import ControlUpdate
    from spacelive.motion.idle import audio_relaxation

    rate = 16_000
    audio = np.concatenate(
        [np.zeros(rate // 2), speech_like(0.8, seed=7), np.zeros(int(rate * 1.8))]
    ).astype(np.float32)
    mfcc = offline_mfcc(audio)
    quiet = ControlUpdate(blinks_per_minute=0.0, saccades=False)
    motion = engine.motion
    shares = _stepped(motion, motion.new_state(avatar, quiet), mfcc)
    assert [k for k, _ in shares] == list(range(len(mfcc)))
    expected = audio_relaxation(mfcc[:, 0], motion.lookahead)
    assert expected.min() == 0 and expected.max() == 1 and 0 < expected[-1] <= 1
    np.testing.assert_allclose([s for _, s in shares], expected, atol=1e-4)
    retried = _stepped(motion, motion.new_state(avatar, quiet), mfcc, fail_at=20)
    assert retried == shares


def test_a_model_whose_encoder_sees_too_little_ahead_is_refused_at_load(tiny_models, tmp_path):
    """The lips close over the frames before speech, which the encoder must see coming."""
    import json
    import shutil

    from spacelive.motion.idle import WAKE_FRAMES
    from spacelive.motion.loop import MotionModel
    from spacelive.motion.runners import load_stages

    models = tmp_path / "models"
    shutil.copytree(tiny_models, models)
    manifest = json.loads((models / "manifest.json").read_text())
    manifest["stages"]["audio_encoder"]["lookahead"] = WAKE_FRAMES - 1
    (models / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match=f"need {WAKE_FRAMES} frames of lookahead"):
        MotionModel(load_stages(models))
