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

Flow control: a stream whose consumer has not taken ``max_unsent`` frames is not stepped,
and ``push_audio`` waits while ``max_pending`` rows of its audio wait to be stepped, so a
slow consumer backpressures its producer and never delays the other streams. Nothing is
dropped.
"""

import asyncio
import os
from collections import deque
from collections.abc import AsyncIterator
from concurrent.futures import Executor, ThreadPoolExecutor

from spacelive.face.analysis import Avatar
from spacelive.media.audio_front import AudioFront
from spacelive.media.audio_input import AudioSpec
from spacelive.media.video import EncodedFrame
from spacelive.motion.controls import ControlUpdate
from spacelive.stream.batch import MAX_PENDING, MAX_UNSENT, BatchEngine, ControlError, Lane
from spacelive.stream.engine import Engine
from spacelive.stream.render_pool import RendererSpec
from spacelive.stream.session import Done, StreamSession

__all__ = ["ControlError", "Done", "Stream", "StreamFailed", "StreamRunner"]


class StreamFailed(RuntimeError):
    """The engine failed this stream (its step, render or output); the others go on."""


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
    ) -> "Stream":
        """A new stream on ``avatar``; ``audio`` as its messages will be; ``seed`` fixes the
        generated motion; ``output`` one of ``spacelive.stream.sinks.OUTPUTS``. Raises
        InputError (audio format, keypoints unavailable) or ValueError (controls)."""
        loop = asyncio.get_running_loop()
        session = await loop.run_in_executor(
            self.executor, self.engine.open_session, avatar, controls, seed, output
        )
        try:
            front = AudioFront(audio or AudioSpec(), self.engine.motion.lookahead, session.times)
        except Exception:
            session.close()
            raise
        return Stream(self, front, session, loop)

    def close(self) -> None:
        self.batch.close()
        if self._own_executor:
            self.executor.shutdown(wait=False, cancel_futures=True)


class Stream:
    """One stream: ``push_audio``, ``control``, ``end`` from one task at a time, and one
    consumer iterating its frames (``EncodedFrame``, in order) and then its ``Done``.
    Iteration raises ``StreamFailed`` if the engine failed the stream, ``ControlError`` if a
    queued control was refused when it came to apply. ``close`` releases it at any time."""

    def __init__(
        self,
        runner: StreamRunner,
        front: AudioFront,
        session: StreamSession,
        loop: asyncio.AbstractEventLoop,
    ):
        self._runner = runner
        self._batch = runner.batch
        self._front = front
        self.session = session
        self._changed = asyncio.Event()
        self.lane: Lane = self._batch.attach(
            session, lambda: loop.call_soon_threadsafe(self._changed.set)
        )
        self._taken: deque[EncodedFrame] = deque()  # from the lane, not yet yielded
        self._working: asyncio.Future | None = None  # decoding on the executor, if any
        self._total: int | None = None  # the frame count, once the audio has ended
        self._done = False
        self._closed = False

    @property
    def frames_produced(self) -> int:
        return self.session.frames_produced

    @property
    def audio_seconds(self) -> float:
        return self._front.audio_seconds

    async def push_audio(self, data: bytes) -> None:
        """One audio message, as the stream's AudioSpec says; returns once it is queued,
        waiting first while the engine holds ``max_pending`` rows of this stream's audio.
        Raises InputError for audio it cannot decode."""
        self._check_open()
        while not self.lane.has_room and self.lane.error is None and not self._closed:
            self._changed.clear()
            await self._changed.wait()
        self._check_open()
        self._batch.submit(self.lane, await self._work(self._front.decode, data))

    def control(self, update: ControlUpdate) -> None:
        """Change the face controls after the audio pushed so far, from the next frame on.
        Raises ValueError for values out of range, changing nothing."""
        self._check_open()
        self._batch.control(self.lane, update)

    async def end(self) -> None:
        """End of audio: every remaining frame will come, ceil(duration * 30) in total."""
        self._check_open()
        rows, total = await self._work(self._front.finish)
        self._total = total
        self._batch.submit(self.lane, rows, total)

    def __aiter__(self) -> AsyncIterator[EncodedFrame | Done]:
        return self

    async def __anext__(self) -> EncodedFrame | Done:
        while True:
            if self._taken:
                self.lane.sent(1)
                return self._taken.popleft()
            if self.lane.error is not None:
                error = self.lane.error
                if isinstance(error, ControlError):
                    raise error
                raise StreamFailed(str(error)) from error
            if self._done or self._closed:
                raise StopAsyncIteration
            self._changed.clear()
            self._taken.extend(self.lane.take_frames())
            if self._taken:
                continue
            if self._total is not None and self.lane.idle:
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
        lane = self.lane
        if self._working is not None and not self._working.done():
            # Cancelled mid-decode: the worker thread still holds the audio front.
            self._working.add_done_callback(lambda _: self._batch.detach(lane))
        else:
            self._batch.detach(lane)

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("stream is closed")
        if self._total is not None:
            raise RuntimeError("stream has ended")

    async def _work(self, fn, *args):
        loop = asyncio.get_running_loop()
        self._working = loop.run_in_executor(self._runner.executor, fn, *args)
        return await self._working
