"""The recurrent state as a batch type: concatenate, filter and split keep rows apart, and
stepping a batch is stepping each stream alone, bit for bit."""

from dataclasses import fields

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spacelive.checks.bench import speech_like
from spacelive.media.audio import offline_mfcc
from spacelive.motion.controls import EMOTIONS, ControlUpdate
from spacelive.motion.state import RecurrentState

FUNCTION_SCOPED = [HealthCheck.function_scoped_fixture]


def arrays(state: RecurrentState) -> list[np.ndarray]:
    out = []
    for f in fields(state):
        value = getattr(state, f.name)
        out += list(value) if f.name == "caches" else [value]
    return out


def assert_same(a: RecurrentState, b: RecurrentState) -> None:
    for x, y in zip(arrays(a), arrays(b), strict=True):
        assert x.dtype == y.dtype and x.shape == y.shape
        assert np.array_equal(x, y)


def states(engine, avatar, n: int, seed: int) -> list:
    """n fresh streams' states with different seeds and controls."""
    out = []
    for k in range(n):
        emotion = np.zeros(len(EMOTIONS), np.float32)
        emotion[k % len(EMOTIONS)] = 0.5
        update = ControlUpdate(emotion=emotion, blinks_per_minute=40.0)
        out.append(engine.motion.new_state(avatar, update, seed + k))
    return out


@settings(max_examples=10, deadline=None, suppress_health_check=FUNCTION_SCOPED)
@given(n=st.integers(1, 5), keep=st.lists(st.integers(0, 4), max_size=6), seed=st.integers(0, 99))
def test_concatenate_filter_and_split_keep_rows_apart(engine, avatar, n, keep, seed):
    # States some frames in, so that no two rows hold the same values.
    rows = states(engine, avatar, n, seed)
    for k, s in enumerate(rows):
        engine.motion.run(s, offline_mfcc(speech_like(0.2 + 0.1 * k, seed=seed + k)))
    rows = [s.recurrent for s in rows]
    batch = RecurrentState.concatenate(rows)
    assert len(batch) == n
    for got, want in zip(batch.split(), rows, strict=True):
        assert_same(got, want)
    keep = [k for k in keep if k < n]
    if keep:
        assert_same(batch.filter(keep), RecurrentState.concatenate([rows[k] for k in keep]))


@settings(max_examples=6, deadline=None, suppress_health_check=FUNCTION_SCOPED)
@given(
    seconds=st.lists(st.floats(0.1, 0.8), min_size=2, max_size=4),
    start=st.lists(st.integers(0, 12), min_size=4, max_size=4),
    seed=st.integers(0, 99),
)
def test_stepping_a_batch_is_stepping_each_stream_alone(engine, avatar, seconds, start, seed):
    """Streams of different lengths that join the batch at different ticks (so rows are in
    the lookahead, speaking and past their end together): every output and every state array
    equal stepping alone, exactly."""
    motion = engine.motion
    mfccs = [offline_mfcc(speech_like(s, seed=seed + k)) for k, s in enumerate(seconds)]
    pad = np.zeros((motion.lookahead, mfccs[0].shape[1]), np.float32)
    feeds = [np.concatenate([m, pad]) for m in mfccs]

    def run(together: bool):
        live = states(engine, avatar, len(feeds), seed)
        for s, m in zip(live, mfccs, strict=True):
            s.end_at(len(m))
        outputs: list[list] = [[] for _ in feeds]
        ticks = max(start[k] + len(f) for k, f in enumerate(feeds))
        for t in range(ticks):
            rows = [k for k, f in enumerate(feeds) if 0 <= t - start[k] < len(f)]
            if not rows:
                continue
            mfcc = np.stack([feeds[k][t - start[k]] for k in rows])
            if together:
                got = motion.step([live[k] for k in rows], mfcc)
            else:
                got = [motion.step([live[k]], mfcc[j : j + 1])[0] for j, k in enumerate(rows)]
            for k, frame in zip(rows, got, strict=True):
                outputs[k].append(frame)
        return live, outputs

    alone_states, alone = run(together=False)
    batched_states, batched = run(together=True)
    for a, b in zip(alone_states, batched_states, strict=True):
        assert_same(a.recurrent, b.recurrent)
    for a_frames, b_frames in zip(alone, batched, strict=True):
        assert len(a_frames) == len(b_frames)
        for a, b in zip(a_frames, b_frames, strict=True):
            assert (a is None) == (b is None)
            if a is not None:
                assert a.frame_index == b.frame_index
                for name in ("landmarks", "pose", "keypoints", "expression"):
                    assert np.array_equal(getattr(a, name), getattr(b, name)), name
