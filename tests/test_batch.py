"""The batched engine: frames byte-identical to stepping alone, slow clients delay only
themselves, a failing session fails alone, controls keep their place in the stream."""

import threading
import time

import numpy as np
import pytest

from spacelive.checks.bench import rss_mb, speech_like
from spacelive.media.audio import pcm_s16le
from spacelive.media.audio_front import AudioFront
from spacelive.media.audio_input import AudioSpec
from spacelive.motion.controls import EMOTIONS, ControlUpdate
from spacelive.stream.batch import BatchEngine
from spacelive.stream.engine import Engine
from tests.conftest import stream_alone


def emotion(name: str, intensity: float) -> np.ndarray:
    vector = np.zeros(len(EMOTIONS), np.float32)
    vector[EMOTIONS.index(name)] = intensity
    return vector


def streams(seconds=(1.2, 0.8, 1.5)):
    """Per session: (seed, controls, PCM chunks of 20 ms)."""
    out = []
    for k, s in enumerate(seconds):
        pcm = pcm_s16le(speech_like(s, seed=20 + k))
        controls = ControlUpdate(emotion=emotion("happy", 0.3 * k), blinks_per_minute=30.0)
        out.append((k, controls, [pcm[i : i + 640] for i in range(0, len(pcm), 640)]))
    return out


def alone(engine, avatar, seed, controls, chunks, control_at=None):
    frames, _ = stream_alone(engine, avatar, chunks, controls, seed, control_at=control_at)
    return [f.data for f in frames]


def front_of(engine, session) -> AudioFront:
    """A session's audio input, as a stream holds it (16 kHz PCM)."""
    return AudioFront(AudioSpec(), engine.motion.lookahead, session.times)


class Collector:
    """A client of one lane: takes its frames as they come (or, stalled, never)."""

    def __init__(self, batch: BatchEngine, engine, session, stalled=False):
        self.changed = threading.Event()
        self.lane = batch.attach(session, self.changed.set)
        self.front = front_of(engine, session)
        self.frames: list[bytes] = []
        self.stalled = stalled

    def pump(self) -> None:
        if not self.stalled:
            frames = self.lane.take_frames()
            self.frames += [f.data for f in frames]
            self.lane.sent(len(frames))


def run_batched(batch, engine, avatar, plan, stalled=(), control_at=None, sabotage=None):
    """Feed every stream chunk by chunk, round robin, through one BatchEngine."""
    clients = []
    for seed, controls, chunks in plan:
        session = engine.open_session(avatar, controls, seed)
        clients.append((Collector(batch, engine, session, seed in stalled), chunks))
    if sabotage is not None:
        state = clients[sabotage][0].lane.session.state
        state.recurrent.s2l_h = np.zeros((2, 1, 3), np.float32)  # a state no stage accepts
    longest = max(len(chunks) for _, chunks in clients)
    for i in range(longest + 1):
        for k, (client, chunks) in enumerate(clients):
            if control_at is not None and k == 0 and i == control_at[0]:
                batch.control(client.lane, control_at[1])
            if i < len(chunks):
                batch.submit(client.lane, client.front.decode(chunks[i]))
            elif i == len(chunks):
                rows, total = client.front.finish()
                batch.submit(client.lane, rows, total)
            client.pump()
    deadline = time.monotonic() + 120
    live = [c for c, _ in clients if not c.stalled]
    while not all(c.lane.idle or c.lane.error for c in live):
        assert time.monotonic() < deadline, "batched streams did not finish"
        for c in live:
            c.changed.wait(0.05)
            c.changed.clear()
            c.pump()
    for c in live:
        c.pump()
    return [c for c, _ in clients]


@pytest.fixture
def batch(engine):
    b = BatchEngine(engine.motion, workers=2, max_unsent=4)
    yield b
    b.close()


def test_batched_frames_are_byte_identical_to_stepping_alone(batch, engine, avatar):
    plan = streams()
    change = (20, ControlUpdate(emotion=emotion("surprised", 1.0), blink=True))
    expected = [alone(engine, avatar, *p, control_at=change if p[0] == 0 else None) for p in plan]
    clients = run_batched(batch, engine, avatar, plan, control_at=change)
    for client, frames in zip(clients, expected, strict=True):
        assert client.lane.error is None
        assert client.frames == frames
    assert batch.rows > batch.ticks  # sessions really shared ticks


def test_bundled_int8_models_batch_byte_identically(avatar):
    """The shipped stages are int8; rows must not share a quantization scale."""
    bundled = Engine()
    plan = streams((0.6, 0.9))
    expected = [alone(bundled, avatar, *p) for p in plan]
    b = BatchEngine(bundled.motion, workers=2)
    try:
        clients = run_batched(b, bundled, avatar, plan)
    finally:
        b.close()
    assert [c.frames for c in clients] == expected


def test_a_stalled_client_delays_only_itself(batch, engine, avatar):
    plan = streams((1.0, 1.0, 1.0))
    expected = [alone(engine, avatar, *p) for p in plan]
    clients = run_batched(batch, engine, avatar, plan, stalled={1})
    assert clients[0].frames == expected[0] and clients[2].frames == expected[2]
    stalled = clients[1].lane
    assert stalled.unsent == batch.max_unsent  # stepped up to its limit, then held
    assert stalled.pending_rows > 0  # the rest of its audio waits, nothing dropped
    assert not stalled.has_room or stalled.pending_rows < batch.max_pending
    taken = [f.data for f in stalled.take_frames()]
    assert taken == expected[1][: len(taken)]


def test_a_failing_session_fails_alone(batch, engine, avatar):
    plan = streams((0.8, 0.8, 0.8))
    expected = [alone(engine, avatar, *p) for p in plan]
    clients = run_batched(batch, engine, avatar, plan, sabotage=1)
    assert clients[1].lane.error is not None
    assert clients[0].frames == expected[0] and clients[2].frames == expected[2]


def test_a_control_out_of_range_is_refused_at_once(batch, engine, avatar):
    client = Collector(batch, engine, engine.open_session(avatar))
    for update, message in [
        (ControlUpdate(mouth_scale=5.0), "mouth_scale"),
        (ControlUpdate(pose_mode="reference"), "pose track"),
    ]:
        with pytest.raises(ValueError, match=message):
            batch.control(client.lane, update)
    assert client.lane.error is None and client.lane.idle


def test_detach_releases_the_session(batch, engine, avatar):
    session = engine.open_session(avatar)
    client = Collector(batch, engine, session)
    batch.submit(client.lane, client.front.decode(pcm_s16le(speech_like(0.5, seed=3))))
    batch.detach(client.lane)
    deadline = time.monotonic() + 10
    while not session.closed:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert batch.lanes == 0


def test_sessions_release_their_memory(engine, avatar):
    """200 sequential sessions (open, 6 frames, close) grow the server's processes (engine
    and render workers) by at most 50 MB."""
    import os

    batch = BatchEngine(engine.motion, workers=2)
    pids = [os.getpid(), *(w.process.pid for w in batch._pool._workers)]
    pcm = pcm_s16le(speech_like(0.2, seed=9))

    def one(seed: int) -> None:
        client = Collector(batch, engine, engine.open_session(avatar, seed=seed))
        batch.submit(client.lane, client.front.decode(pcm))
        rows, total = client.front.finish()
        batch.submit(client.lane, rows, total)
        deadline = time.monotonic() + 30
        while len(client.frames) < total:
            assert time.monotonic() < deadline and client.lane.error is None
            client.changed.wait(0.05)
            client.changed.clear()
            client.pump()
        batch.detach(client.lane)

    try:
        for seed in range(20):  # warm-up: caches, allocator pools
            one(seed)
        before = rss_mb(pids)
        for seed in range(200):
            one(seed)
        grown = rss_mb(pids) - before
    finally:
        batch.close()
    assert batch.lanes == 0
    assert grown <= 50, f"RSS grew {grown:.1f} MB over 200 sessions"
