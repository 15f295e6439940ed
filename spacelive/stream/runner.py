"""The stream runner: every stream a server runs goes through one ``Stream``.

Its shape follows LiveKit Agents' ``VideoGenerator``::

    runner = StreamRunner(Engine())
    stream = await runner.open_stream(avatar, audio=AudioSpec(sample_rate=24_000))
    await stream.push_audio(pcm)     # any chunking; waits while the engine holds 5 s of it
    stream.control(update)           # from the next frame on
    await stream.end()
    async for item in stream:        # EncodedFrame (index, pts, data, keyframe, kind) ... Done
        ...

The websocket, the benchmarks and later the agent plug-ins and WebRTC all consume this type;
the server only translates its protocol to and from it. Every live stream of the process is
stepped in one batch per tick (``spacelive.stream.batch``) and rendered in worker processes,
and its frames are byte-identical to the synchronous form (``Engine.open_stream``).

Pacing. ``"asap"`` (the default) steps audio as fast as it arrives: frame k shows audio time
k / 30 s of what was pushed. ``"realtime"`` plays the audio out on the stream's 30 fps frame
clock, however fast it arrives (a TTS burst): audio slot k (1/30 s) is fed at the clock's
k-th tick, from the queued audio or, when none is queued, as silence, so that between
utterances the stream shows the idle face at 30 fps; frame k leaves at tick k + lookahead +
``RELEASE_MARGIN_FRAMES``, never earlier. ``clear`` (barge-in) drops the queued audio: frames
from the returned index on show none of it. ``StreamEvent``s say when speech starts and stops
showing.

Flow control: a stream whose consumer has not taken ``max_unsent`` frames is not stepped,
and ``push_audio`` waits while ``max_pending`` rows of its audio wait to be stepped (paced:
while ``MAX_QUEUED_SECONDS`` wait for their slots), so a slow consumer backpressures its
producer and never delays the other streams. Nothing is dropped but what ``clear`` drops.
"""

import asyncio
import os
from collections import deque
from collections.abc import AsyncIterator
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from spacelive import FRAME_RATE
from spacelive.face.analysis import Avatar
from spacelive.media.audio_front import AudioFront
from spacelive.media.audio_input import AudioSpec
from spacelive.media.video import EncodedFrame
from spacelive.motion.controls import ControlUpdate
from spacelive.stream.batch import MAX_PENDING, MAX_UNSENT, BatchEngine, ControlError, Lane
from spacelive.stream.engine import Engine
from spacelive.stream.render_pool import RendererSpec
from spacelive.stream.session import Done, StreamSession

__all__ = [
    "ConsumerTooSlow",
    "ControlError",
    "Done",
    "FrameAudio",
    "Stream",
    "StreamEvent",
    "StreamFailed",
    "StreamRunner",
]

PACINGS = ("asap", "realtime")
RELEASE_MARGIN_FRAMES = 1
"""Paced: frame k leaves this many frame periods after its lookahead's slot was fed."""
MAX_QUEUED_SECONDS = 120.0
"""Paced: ``push_audio`` waits while more audio than this waits for its slots."""


@dataclass(frozen=True, slots=True)
class StreamEvent:
    """A change the consumer may show, in frame order with the frames: ``"speaking"``, speech
    shows from ``frame`` on; ``"idle"``, the queue drained (or was cleared) and ``frame`` is the
    first that shows none of it; ``"cleared"``, the answer to ``clear``: ``frame`` is the first
    frame that shows none of the cleared audio."""

    kind: str
    frame: int


@dataclass(frozen=True, slots=True)
class FrameAudio:
    """The audio that frame ``frame_index`` shows (with ``audio_out``), yielded right after that
    frame: its 1/30 s slot of the stream's audio, as fed to the model (paced: silences too)."""

    frame_index: int
    samples: np.ndarray  # (n,) float32 at ``sample_rate``, n = rate / 30 (the last may be short)
    sample_rate: int  # the stream's input rate (48 kHz for Opus)


class StreamFailed(RuntimeError):
    """The engine failed this stream (its step, render or output); the others go on."""


class ConsumerTooSlow(StreamFailed):
    """A paced stream's frames were not taken while its clock ran on."""


class StreamRunner:
    """One per process: the engine, the batched engine over it, and a thread pool for the
    streams' audio decoding. ``close`` when done."""

    def __init__(
        self,
        engine: Engine,
        workers: int | None = None,
        executor: Executor | None = None,
        max_unsent: int = MAX_UNSENT,
        max_pending: int = MAX_PENDING,
    ):
        """``workers``: render processes (default: one per core); ``executor``: where audio
        is decoded and streams are opened (default: a pool of ``workers`` threads)."""
        workers = workers or os.cpu_count() or 2
        self.engine = engine
        config = engine.config
        self.batch = BatchEngine(
            engine.motion,
            workers=workers,
            max_unsent=max_unsent,
            max_pending=max_pending,
            renderer=RendererSpec(config.renderer, config.backend, config.threads),
        )
        self._own_executor = executor is None
        self.executor = executor or ThreadPoolExecutor(workers, thread_name_prefix="spacelive")

    async def open_stream(
        self,
        avatar: Avatar,
        audio: AudioSpec | None = None,
        controls: ControlUpdate | None = None,
        seed: int = 0,
        output: str = "h264",
        pacing: str = "asap",
        audio_out: bool = False,
    ) -> "Stream":
        """A new stream on ``avatar``; ``audio`` as its messages will be; ``seed`` fixes the
        generated motion; ``output`` one of ``spacelive.stream.sinks.OUTPUTS``; ``pacing``
        "asap" or "realtime" (above); ``audio_out``: yield each frame's ``FrameAudio`` after it.
        Raises InputError (audio format, keypoints unavailable)
        or ValueError (controls, pacing)."""
        if pacing not in PACINGS:
            raise ValueError(f"unknown pacing {pacing!r}; use one of {', '.join(PACINGS)}")
        loop = asyncio.get_running_loop()
        session = await loop.run_in_executor(
            self.executor, self.engine.open_session, avatar, controls, seed, output
        )
        try:
            front = AudioFront(audio or AudioSpec(), self.engine.motion.lookahead, session.times)
        except Exception:
            session.close()
            raise
        try:
            return Stream(self, front, session, loop, pacing == "realtime", audio_out)
        except Exception:
            session.close()
            raise

    def close(self) -> None:
        self.batch.close()
        if self._own_executor:
            self.executor.shutdown(wait=False, cancel_futures=True)


class Stream:
    """One stream: ``push_audio``, ``control``, ``clear``, ``end`` from one task at a time,
    and one consumer iterating its frames (``EncodedFrame``, in order; with their
    ``StreamEvent``s when paced) and then its ``Done``. Iteration raises ``StreamFailed`` if
    the engine failed the stream, ``ControlError`` if a queued control was refused when it
    came to apply. ``close`` releases it at any time."""

    def __init__(
        self,
        runner: StreamRunner,
        front: AudioFront,
        session: StreamSession,
        loop: asyncio.AbstractEventLoop,
        paced: bool = False,
        audio_out: bool = False,
    ):
        self._runner = runner
        self._batch = runner.batch
        self._front = front
        self.session = session
        self._loop = loop
        self._changed = asyncio.Event()
        self.lane: Lane = self._batch.attach(
            session, lambda: loop.call_soon_threadsafe(self._changed.set)
        )
        self._taken: deque[EncodedFrame] = deque()  # from the lane, not yet yielded
        self._events: deque[StreamEvent] = deque()  # not yet yielded, in frame order
        self._answers: deque[StreamEvent] = deque()  # "cleared", yielded at once, in order
        self._working: asyncio.Future | None = None  # decoding on the executor, if any
        self._submitted = 0  # MFCC rows submitted, net of cleared ones
        self._dropped = 0  # MFCC rows cleared (asap)
        self._ended = False  # `end` was called: nothing more may be pushed
        self._ending = False  # paced: the last audio is queued; play it out, then finish
        self._total: int | None = None  # the frame count, once the last rows are queued
        self._done = False
        self._closed = False
        self.paced = paced
        # Paced: the audio waiting for its slots, the slots fed, the frame clock's start.
        self._queue: deque[np.ndarray | ControlUpdate] = deque()  # audio, controls in order
        self._queued = 0  # samples in the queue
        self._slots = 0  # slots fed: the next slot's index
        self._speaking = False
        self._start = loop.time()
        self._pacer = asyncio.ensure_future(self._pace()) if paced else None
        # Audio out: each frame's slot. Paced: the slots as fed; asap: the samples fed, from
        # absolute sample ``_fed_start`` on, and (first frame, slot offset) after each clear.
        self.audio_out = audio_out
        self._audio_next: FrameAudio | None = None
        self._slot_audio: deque[tuple[int, np.ndarray]] = deque()
        self._fed: deque[np.ndarray] = deque()
        self._fed_start = 0
        self._offsets: list[tuple[int, int]] = [(0, 0)]

    @property
    def frames_produced(self) -> int:
        return self.session.frames_produced

    @property
    def audio_seconds(self) -> float:
        return self._front.audio_seconds

    async def push_audio(self, data: bytes) -> None:
        """One audio message, as the stream's AudioSpec says; returns once it is queued,
        waiting first while this stream's queue is full (above). Raises InputError for audio
        it cannot decode."""
        self._check_open()
        while not self._has_room() and self.lane.error is None and not self._closed:
            self._changed.clear()
            await self._changed.wait()
        self._check_open()
        if not self.paced:
            rows, samples = await self._work(self._rows_of, data)
            if self.audio_out:  # kept on the loop's thread, which reads them
                self._fed.append(samples)
            self._submit(rows)
            return
        samples = await self._work(self._front.samples, data)
        self._queue.append(samples)
        self._queued += samples.size

    def control(self, update: ControlUpdate) -> None:
        """Change the face controls after the audio pushed so far, from the next frame on.
        Raises ValueError for values out of range, changing nothing."""
        self._check_open()
        if self.paced:  # after the queued audio, as the client sent it
            self.lane.session.state.controls.check(update)  # refused now, or never
            self._queue.append(update)
            return
        self._batch.control(self.lane, update)

    def clear(self) -> int:
        """Barge-in: drop the audio pushed but not yet stepped. Returns K, the first frame
        that shows none of it (also yielded as a "cleared" event, after an "idle" one if speech
        was showing); audio pushed after it plays normally."""
        self._check_open()
        if self.paced:
            for item in self._queue:  # the audio goes; the controls among it still apply
                if isinstance(item, ControlUpdate):
                    self._batch.control(self.lane, item)
            self._queue.clear()
            self._queued = 0
            first = self._slots
        else:
            dropped = self._batch.clear(self.lane)
            self._dropped += dropped
            self._submitted -= dropped
            first = self._submitted
            if dropped:  # frames from ``first`` on show slots ``dropped`` further on
                self._offsets.append((first, self._offsets[-1][1] + dropped))
        self._answers.append(StreamEvent("cleared", first))  # answered at once
        if self._speaking:
            self._speaking = False
            self._events.append(StreamEvent("idle", first))  # in frame order
        self._changed.set()
        return first

    async def end(self) -> None:
        """End of audio: every remaining frame will come (paced: once the queued audio has
        played out)."""
        self._check_open()
        self._ended = True
        if self.paced:
            held = await self._work(self._front.held)
            self._queue.append(held)
            self._queued += held.size
            self._ending = True  # only now: the pacer finishes the front once it has it all
            return
        rows, total, held = await self._work(self._finish_rows)
        if self.audio_out:
            self._fed.append(held)
        self._total = total - self._dropped  # cleared rows are never stepped
        self._submit(rows, self._total)

    def __aiter__(self) -> AsyncIterator[EncodedFrame | FrameAudio | StreamEvent | Done]:
        return self

    async def __anext__(self) -> EncodedFrame | FrameAudio | StreamEvent | Done:
        if self._audio_next is not None:
            audio, self._audio_next = self._audio_next, None
            return audio
        while True:
            if self._answers:
                return self._answers.popleft()
            if self._events and self._taken and self._events[0].frame <= self._taken[0].frame_index:
                return self._events.popleft()  # just before its frame
            if self._taken:
                frame = self._taken[0]
                if self.paced:  # on the frame clock, never early
                    due = self._tick_time(frame.frame_index + self._release_lag)
                    if (wait := due - self._loop.time()) > 0:
                        await asyncio.sleep(wait)
                        continue  # a clear may have come meanwhile
                self._taken.popleft()
                self.lane.sent(1)
                if self.audio_out:
                    self._audio_next = self._frame_audio(frame.frame_index)
                return frame
            if self.lane.error is not None:
                error = self.lane.error
                if isinstance(error, ControlError | StreamFailed):
                    raise error
                raise StreamFailed(str(error)) from error
            if self._done or self._closed:
                raise StopAsyncIteration
            self._changed.clear()
            self._taken.extend(self.lane.take_frames())
            if self._taken:
                continue
            if self._total is not None and self.lane.idle:
                if self._events:
                    return self._events.popleft()
                if self.session.frames_produced != self._total:
                    raise StreamFailed(
                        f"stream produced {self.session.frames_produced} frames, not {self._total}"
                    )
                self._done = True
                return Done(
                    self._total, self._front.audio_seconds, self.session.times.per_frame_ms()
                )
            await self._changed.wait()

    def close(self) -> None:
        """Stop stepping, release the render worker's share and the output. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._changed.set()
        if self._pacer is not None:
            self._pacer.cancel()
        lane = self.lane
        if self._working is not None and not self._working.done():
            # Cancelled mid-decode: the worker thread still holds the audio front.
            self._working.add_done_callback(lambda _: self._batch.detach(lane))
        else:
            self._batch.detach(lane)

    # -- internals --------------------------------------------------------------------------

    def _submit(self, rows: np.ndarray, total: int | None = None) -> None:
        self._submitted += len(rows)
        self._batch.submit(self.lane, rows, total)

    def _has_room(self) -> bool:
        if self.paced:
            return self._queued < MAX_QUEUED_SECONDS * self._front.sample_rate
        return self.lane.has_room

    @property
    def _release_lag(self) -> int:
        return self._runner.engine.motion.lookahead + RELEASE_MARGIN_FRAMES

    def _tick_time(self, k: int) -> float:
        """The loop time of the frame clock's k-th tick."""
        return self._start + k / FRAME_RATE

    def _take(self, n: int) -> np.ndarray:
        """Up to n queued samples, in order; the controls queued among them are applied as
        they are reached (from this slot's frame on)."""
        parts: list[np.ndarray] = []
        need = n
        while self._queue and (need or isinstance(self._queue[0], ControlUpdate)):
            head = self._queue.popleft()
            if isinstance(head, ControlUpdate):
                try:
                    self._batch.control(self.lane, head)
                except ValueError as exc:  # checked when sent: only a changed state gets here
                    raise ControlError(str(exc)) from None
                continue
            if head.size <= need:
                parts.append(head)
                need -= head.size
            else:
                parts.append(head[:need])
                self._queue.appendleft(head[need:])
                need = 0
        taken = np.concatenate(parts) if parts else np.zeros(0, np.float32)
        self._queued -= taken.size
        return taken

    async def _pace(self) -> None:
        """Paced: feed slot k at the clock's k-th tick, queued audio or silence, until the
        audio has ended and played out; then the end of the stream."""
        rate = self._front.sample_rate
        try:
            while True:
                if (wait := self._tick_time(self._slots) - self._loop.time()) > 0:
                    await asyncio.sleep(wait)
                if self._closed or self.lane.error is not None:
                    return
                if self.lane.pending_rows >= self._batch.max_pending:
                    raise ConsumerTooSlow(
                        f"no frame was taken for {self._batch.max_pending / FRAME_RATE:g} s of "
                        "the frame clock; read frames as they come"
                    )
                if self._ending and not self._queued:
                    self._take(0)  # the controls queued after the last audio
                    break
                k = self._slots
                size = (k + 1) * rate // FRAME_RATE - k * rate // FRAME_RATE
                audio = self._take(size)
                if audio.size and not self._speaking:
                    self._speaking = True
                    self._events.append(StreamEvent("speaking", k))
                elif not audio.size and self._speaking:
                    self._speaking = False
                    self._events.append(StreamEvent("idle", k))
                slot = np.zeros(size, np.float32)
                slot[: audio.size] = audio
                if self.audio_out:
                    self._slot_audio.append((k, slot))
                self._submit(self._front.rows(slot))
                self._slots = k + 1
                self._changed.set()  # room in the queue, events
            if self._speaking:
                self._speaking = False
                self._events.append(StreamEvent("idle", self._slots))
            rows, total = self._front.finish(fed_held=True)
            self._total = total
            self._submit(rows, total)
            self._changed.set()
        except Exception as exc:  # the stream's, not the loop's
            self._batch.fail(self.lane, exc)
            self._changed.set()

    def _rows_of(self, data: bytes) -> tuple[np.ndarray, np.ndarray]:
        """Asap, on the executor: an audio message -> (its MFCC rows, its samples)."""
        samples = self._front.samples(data)
        return self._front.rows(samples), samples

    def _finish_rows(self) -> tuple[np.ndarray, int, np.ndarray]:
        """Asap, on the executor: ``AudioFront.finish``, and the samples the decoder held."""
        held = self._front.held()
        rows = self._front.rows(held)
        tail, total = self._front.finish(fed_held=True)
        return np.concatenate([rows, tail]), total, held

    def _frame_audio(self, k: int) -> FrameAudio:
        """Frame k's slot of audio (frames come in order: earlier slots are let go)."""
        rate = self._front.sample_rate
        if self.paced:
            while self._slot_audio and self._slot_audio[0][0] < k:
                self._slot_audio.popleft()
            samples = self._slot_audio.popleft()[1] if self._slot_audio else np.zeros(0)
            return FrameAudio(k, samples.astype(np.float32, copy=False), rate)
        slot = k + next(offset for first, offset in reversed(self._offsets) if first <= k)
        start, stop = slot * rate // FRAME_RATE, (slot + 1) * rate // FRAME_RATE
        while self._fed and self._fed_start + self._fed[0].size <= start:  # before this slot
            self._fed_start += self._fed.popleft().size
        parts, position = [], self._fed_start
        for piece in self._fed:
            if position >= stop:
                break
            parts.append(piece[max(0, start - position) : stop - position])
            position += piece.size
        samples = np.concatenate(parts) if parts else np.zeros(0, np.float32)
        return FrameAudio(k, samples.astype(np.float32, copy=False), rate)

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("stream is closed")
        if self._ended:
            raise RuntimeError("stream has ended")

    async def _work(self, fn, *args):
        self._working = self._loop.run_in_executor(self._runner.executor, fn, *args)
        return await self._working
