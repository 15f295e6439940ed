"""The inference engine: one per process. Owns the stage runners and the renderer, and opens
streams on them.

``Engine.open_stream`` gives the synchronous form of a stream, stepped alone in the caller's
thread (offline rendering, scripts, tests). A server runs its streams through
``spacelive.stream.runner.StreamRunner`` instead, which batches every live stream; both give
the same frames, byte for byte.
"""

import logging
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from spacelive import ASSETS
from spacelive.face.analysis import Avatar
from spacelive.media.audio_front import AudioFront
from spacelive.media.audio_input import AudioSpec
from spacelive.media.video import EncodedFrame
from spacelive.motion.controls import ControlUpdate
from spacelive.motion.loop import MotionModel
from spacelive.motion.runners import load_stages
from spacelive.render.renderer import Renderer, WarpRenderer
from spacelive.render.renderer_onnx import OnnxRenderer
from spacelive.stream.session import Done, StreamSession

log = logging.getLogger(__name__)

DEFAULT_MODELS = ASSETS / "models" / "realtime"
DEFAULT_PORTRAIT = ASSETS / "default_portrait.jpg"


@dataclass(frozen=True, slots=True)
class EngineConfig:
    """How to run the stages."""

    models: Path = DEFAULT_MODELS
    backend: str = "cpu"
    threads: int = 1  # ONNX Runtime intra-op threads per stage call
    renderer: str = "numpy"  # "numpy" (CPU, OpenCV) or "onnx" (its twin, on ``backend``)


class Engine:
    def __init__(self, config: EngineConfig = EngineConfig()):
        self.config = config
        self.stages = load_stages(config.models, config.backend, config.threads)
        self.motion = MotionModel(self.stages)
        self.renderer: Renderer
        if config.renderer == "numpy":
            self.renderer = WarpRenderer()
        elif config.renderer == "onnx":
            self.renderer = OnnxRenderer(backend=config.backend, threads=config.threads)
        else:
            raise ValueError(f"unknown renderer {config.renderer!r}; use 'numpy' or 'onnx'")

    def open_session(
        self,
        avatar: Avatar,
        controls: ControlUpdate | None = None,
        seed: int = 0,
        output: str = "h264",
    ) -> StreamSession:
        """The state of a new stream on ``avatar``; ``seed`` fixes the generated motion (head
        pose, blinks); ``output``: one of ``spacelive.stream.sinks.OUTPUTS``."""
        return StreamSession(self.motion, self.renderer, avatar, controls, seed, output)

    def open_stream(
        self,
        avatar: Avatar,
        audio: AudioSpec | None = None,
        controls: ControlUpdate | None = None,
        seed: int = 0,
        output: str = "h264",
    ) -> "LocalStream":
        """A new stream, stepped alone in the caller's thread; ``audio`` as its messages will
        be (``AudioSpec()``: 16 kHz PCM)."""
        session = self.open_session(avatar, controls, seed, output)
        return LocalStream(
            self.motion,
            AudioFront(audio or AudioSpec(), self.motion.lookahead, session.times),
            session,
        )


class LocalStream:
    """The synchronous form of a stream: ``push_audio`` (any chunking), ``control``, ``end``;
    iterating yields the frames made so far, and after ``end`` every remaining frame, then one
    ``Done``. One thread at a time."""

    def __init__(self, motion: MotionModel, front: AudioFront, session: StreamSession):
        self._motion = motion
        self._front = front
        self.session = session
        self._ready: deque[EncodedFrame | Done] = deque()
        self._done: Done | None = None

    @property
    def sample_rate(self) -> int:
        return self._front.sample_rate

    def push_audio(self, data: bytes) -> None:
        """One audio message, as the stream's AudioSpec says. Raises InputError for audio it
        cannot decode (the stream is then unusable)."""
        self._check_open()
        self._advance(self._front.decode(data))

    def control(self, update: ControlUpdate) -> None:
        """Change the face controls from the next frame on (ramped; see
        ``spacelive.motion.controls``). Raises ValueError for values out of range, changing
        nothing."""
        self._check_open()
        self.session.state.controls.apply(update)

    def end(self) -> None:
        """End of audio: every remaining frame is made, up to ceil(duration * 30) in total."""
        self._check_open()
        rows, total = self._front.finish()
        self.session.state.end_at(total)
        self._advance(rows)
        if self.session.frames_produced != total:
            raise RuntimeError(
                f"stream produced {self.session.frames_produced} frames, expected {total}"
            )
        self._done = Done(total, self._front.audio_seconds, self.session.times.per_frame_ms())
        self._ready.append(self._done)

    def __iter__(self) -> Iterator[EncodedFrame | Done]:
        while self._ready:
            yield self._ready.popleft()

    def close(self) -> None:
        """Release the output; idempotent."""
        self.session.close()

    def _check_open(self) -> None:
        if self.session.closed:
            raise RuntimeError("stream is closed")
        if self._done is not None:
            raise RuntimeError("stream has ended")

    def _advance(self, mfcc: np.ndarray) -> None:
        state = self.session.state
        for row in mfcc:
            (motion,) = self._motion.step([state], row[None, :], self.session.times)
            if motion is not None:
                self._ready.append(self.session.render(motion))
