"""The batched engine: one thread steps every live session together; a pool renders.

Each tick gathers every session ("lane") that has audio waiting and room in its outbox, takes
one MFCC row from each, and steps them all with one call per stage (``MotionModel.step``:
state rows concatenated, run, split). Rows never mix, so a session's frames are byte-identical
to stepping it alone. Each frame's keypoints then go to the session's render worker process
(``spacelive.stream.render_pool``: the renderer holds the GIL, so threads would not spread it over
the cores); keypoint streams are coded here. The engine does not wait for renders: it ticks
again as soon as rows are waiting, so under load rows pile up during a tick and the next one
batches them. One row per lane per tick keeps it fair: a client that uploads a minute of
audio at once gets the same share as a microphone.

Flow control, per lane:
- ``max_unsent``: frames stepped but not yet handed to the client (``Lane.sent``). A lane at
  the limit is not stepped until its client catches up, so a slow or stalled client only
  delays itself; its audio waits in ``pending``.
- ``max_pending``: MFCC rows waiting. ``Lane.has_room`` turns false beyond it, and the server
  stops reading that client's socket (TCP backpressure) until it is true again.
Nothing is dropped: every H.264 frame depends on the one before. The server ends a session
whose client stays stalled (``spacelive.server.stream``).

A lane whose step or render fails is failed alone (``Lane.error``); the others go on.
"""

import itertools
import logging
import threading
from collections import deque
from collections.abc import Callable

import numpy as np

from spacelive.face.analysis import crop_to_pixels
from spacelive.media.timing import StageTimes
from spacelive.media.video import EncodedFrame
from spacelive.motion.controls import ControlUpdate
from spacelive.motion.loop import MotionModel
from spacelive.stream.render_pool import RenderedFrame, RendererSpec, RenderPool
from spacelive.stream.session import StreamSession

log = logging.getLogger(__name__)

MAX_UNSENT = 16  # frames (about half a second)
MAX_PENDING = 150  # MFCC rows (5 s of audio)


class ControlError(ValueError):
    """A queued control update that its session refused when it came to apply it."""


class Lane:
    """One session inside the batched engine. ``notify`` is called (from engine threads)
    whenever the lane changes: frames ready, rows consumed, failed."""

    def __init__(
        self,
        engine: "BatchEngine",
        lane_id: int,
        session: StreamSession,
        notify: Callable[[], object],
    ):
        self.id = lane_id
        self.session = session
        self._engine = engine
        self._notify = notify
        # MFCC rows (40,) with the frame count to set first (or None), and control updates,
        # in the order the client sent them.
        self._pending: deque[tuple[np.ndarray, int | None] | ControlUpdate] = deque()
        self.pending_rows = 0
        self.unsent = 0  # stepped, not yet sent: rendering, rendered, or in the outbox
        self._in_tick = False  # a row taken by the tick that is running
        self._outbox: deque[EncodedFrame] = deque()
        self.error: Exception | None = None
        self.closed = False

    @property
    def has_room(self) -> bool:
        """Whether the engine wants more audio for this lane now."""
        return self.pending_rows < self._engine.max_pending

    @property
    def idle(self) -> bool:
        """Everything submitted has been stepped, rendered and taken."""
        with self._engine._lock:
            return not (self._pending or self._in_tick or self.unsent or self._outbox)

    def take_frames(self) -> list[EncodedFrame]:
        """The frames rendered so far, in order (then ``sent`` once they are on their way)."""
        with self._engine._lock:
            frames = list(self._outbox)
            self._outbox.clear()
        return frames

    def sent(self, n: int) -> None:
        """The client has taken ``n`` more frames: room for the engine to step again."""
        with self._engine._lock:
            self.unsent -= n
            self._engine._wake.notify()

    def _changed(self) -> None:
        try:
            self._notify()
        except Exception:  # the listener's loop may be gone
            log.debug("lane notify failed", exc_info=True)


class BatchEngine:
    """Steps every attached session in one batch per tick; renders in ``workers``
    processes."""

    def __init__(
        self,
        motion: MotionModel,
        workers: int = 2,
        max_unsent: int = MAX_UNSENT,
        max_pending: int = MAX_PENDING,
        renderer: RendererSpec | None = None,
    ):
        self.motion = motion
        self.max_unsent = max_unsent
        self.max_pending = max_pending
        self.ticks = 0  # ticks run, and rows stepped in them
        self.rows = 0
        self._lanes: list[Lane] = []
        self._by_id: dict[int, Lane] = {}
        self._ids = itertools.count()
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._stepping = threading.Lock()  # held while states are stepped or controlled
        self._stopping = False
        self._pool = RenderPool(workers, self._on_rendered, renderer or RendererSpec())
        self._thread = threading.Thread(target=self._run, name="spacelive-engine", daemon=True)
        self._thread.start()

    # -- lanes ------------------------------------------------------------------------------

    def attach(self, session: StreamSession, notify: Callable[[], object] = lambda: None) -> Lane:
        lane = Lane(self, next(self._ids), session, notify)
        if session.renders_pixels:
            self._pool.open(lane.id, session.avatar.image, session.avatar.mesh_px, session.output)
        with self._lock:
            self._lanes.append(lane)
            self._by_id[lane.id] = lane
        return lane

    def submit(self, lane: Lane, mfcc: np.ndarray, frame_count: int | None = None) -> None:
        """Queue MFCC rows (n, 40) for ``lane``; ``frame_count``, if given, is set on the
        state before the first of them is stepped (``AudioFront.finish``)."""
        with self._lock:
            if lane.closed or lane.error is not None:
                return
            for k, row in enumerate(mfcc):
                lane._pending.append((row, frame_count if k == 0 else None))
            lane.pending_rows += len(mfcc)
            self._wake.notify()

    def control(self, lane: Lane, update: ControlUpdate) -> None:
        """Apply ``update`` after the rows submitted before it, from the next frame on (as
        ``LocalStream.control`` does). Raises ValueError for values out of range, changing
        nothing."""
        lane.session.state.controls.check(update)
        with self._lock:
            if lane.closed or lane.error is not None:
                return
            lane._pending.append(update)
            self._wake.notify()

    def clear(self, lane: Lane) -> int:
        """Drop ``lane``'s rows not yet stepped (its queued controls stay, in order); returns
        how many were dropped. A row a running tick has taken is stepped all the same."""
        with self._lock:
            kept: deque = deque()
            dropped = 0
            for item in lane._pending:
                if isinstance(item, ControlUpdate):
                    kept.append(item)
                else:
                    dropped += 1
            lane._pending = kept
            lane.pending_rows -= dropped
            self._wake.notify()
        return dropped

    def detach(self, lane: Lane) -> None:
        """Stop stepping ``lane``, release its render worker's share, close its session."""
        with self._lock:
            if lane.closed:
                return
            lane.closed = True
            self._lanes.remove(lane)
            del self._by_id[lane.id]
            lane._pending.clear()
            lane._outbox.clear()
        if lane.session.renders_pixels:
            self._pool.close(lane.id)
        with self._stepping:  # not mid-tick
            lane.session.close()

    def close(self) -> None:
        with self._lock:
            self._stopping = True
            self._wake.notify_all()
        self._thread.join()
        for lane in list(self._lanes):
            self.detach(lane)
        self._pool.shutdown()

    @property
    def lanes(self) -> int:
        with self._lock:
            return len(self._lanes)

    # -- the tick ---------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._stopping and not (batch := self._gather()):
                    self._wake.wait()
                if self._stopping:
                    return
            try:
                self._tick(batch)
            except Exception:  # MotionModel.step isolates sessions; this is a bug here
                log.exception("engine tick failed")
                for turn in batch:
                    self.fail(turn.lane, RuntimeError("the engine failed"))
            finally:
                with self._lock:
                    for turn in batch:
                        turn.lane._in_tick = False
                for turn in batch:
                    turn.lane._changed()

    def _gather(self) -> list["_Turn"]:
        """Under the lock: from every lane with room for a frame, the control updates queued
        before its next row, and that row (if it has one)."""
        batch = []
        for lane in self._lanes:
            if not lane._pending or lane.error is not None or lane.unsent >= self.max_unsent:
                continue
            turn = _Turn(lane)
            while lane._pending and isinstance(lane._pending[0], ControlUpdate):
                turn.controls.append(lane._pending.popleft())  # type: ignore[arg-type]
            if lane._pending:
                turn.row, turn.frame_count = lane._pending.popleft()  # type: ignore[misc]
                lane.pending_rows -= 1
            lane._in_tick = True
            batch.append(turn)
        return batch

    def _tick(self, turns: list["_Turn"]) -> None:
        times = StageTimes()
        errors: dict[int, Exception] = {}
        with self._stepping:
            batch = []
            for turn in turns:
                try:
                    for update in turn.controls:
                        turn.lane.session.state.controls.apply(update)
                except ValueError as exc:
                    self.fail(turn.lane, ControlError(str(exc)))
                    continue
                if turn.row is not None:
                    batch.append(turn)
                    if turn.frame_count is not None:
                        turn.lane.session.state.end_at(turn.frame_count)
            if not batch:
                return
            states = [turn.lane.session.state for turn in batch]
            mfcc = np.stack([turn.row for turn in batch if turn.row is not None])
            motions = self.motion.step(states, mfcc, times, errors)
        share = 1.0 / len(batch)
        for stage, seconds in times.seconds.items():
            for turn in batch:
                turn.lane.session.times.add(stage, seconds * share)
        self.ticks += 1
        self.rows += len(batch)
        for k, turn in enumerate(batch):
            lane = turn.lane
            if k in errors:
                log.error("session step failed", exc_info=errors[k])
                self.fail(lane, errors[k])
                continue
            motion = motions[k]
            if motion is None:
                continue
            with self._lock:
                if lane.closed:
                    continue
                lane.unsent += 1
            if lane.session.renders_pixels:
                self._pool.render(lane.id, motion.frame_index, crop_to_pixels(motion.keypoints))
                continue
            try:
                frame = lane.session.render(motion)  # a keypoint frame: cheap, here
            except Exception as exc:
                log.exception("session output failed")
                self.fail(lane, exc)
                continue
            self._deliver(lane, frame)

    def _on_rendered(self, result: RenderedFrame) -> None:
        """A render worker's answer (on its reader thread)."""
        with self._lock:
            lane = self._by_id.get(result.session)
        if lane is None:  # detached meanwhile
            return
        if result.frame is None:
            self.fail(lane, RuntimeError(result.error or "render failed"))
            return
        try:
            frame = lane.session.count_frame(
                result.frame, result.render_seconds, result.encode_seconds
            )
        except RuntimeError as exc:
            self.fail(lane, exc)
            return
        self._deliver(lane, frame)

    def _deliver(self, lane: Lane, frame: EncodedFrame) -> None:
        with self._lock:
            if lane.closed:
                return
            lane._outbox.append(frame)
        lane._changed()

    def fail(self, lane: Lane, exc: Exception) -> None:
        """End ``lane`` with ``exc``: its step, render or owner failed; the others go on."""
        with self._lock:
            if lane.error is None:
                lane.error = exc
            lane._pending.clear()
        lane._changed()


class _Turn:
    """What one tick does for one lane."""

    __slots__ = ("lane", "controls", "row", "frame_count")

    def __init__(self, lane: Lane):
        self.lane = lane
        self.controls: list[ControlUpdate] = []
        self.row: np.ndarray | None = None
        self.frame_count: int | None = None
