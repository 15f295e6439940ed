"""One stream as an engine steps it: its motion state, its output sink, its counters.

A ``StreamSession`` is a payload, not an actor: the stream that owns it (``LocalStream`` in
``spacelive.stream.engine``, or ``Stream`` in ``spacelive.stream.runner``) feeds it audio
through its own ``AudioFront``, and an engine steps its ``state`` and books its frames. The
engine's runners and renderer are stateless and shared; nothing here is shared between
sessions.
"""

import time
from dataclasses import dataclass

import numpy as np

from spacelive.face.analysis import Avatar, crop_to_pixels
from spacelive.media.audio_input import InputError
from spacelive.media.timing import StageTimes
from spacelive.media.video import EncodedFrame
from spacelive.motion.controls import ControlUpdate
from spacelive.motion.keypoints import BASIS_FILE
from spacelive.motion.loop import FrameMotion, MotionModel
from spacelive.motion.state import MotionState
from spacelive.render.renderer import Renderer, RenderSource
from spacelive.stream.sinks import OUTPUTS, KeypointSink, PixelSink, pixel_sink


@dataclass(frozen=True, slots=True)
class Done:
    """A stream's last item, after its every frame: ``frames`` = ceil(audio seconds * 30)."""

    frames: int
    audio_seconds: float
    stage_ms: dict[str, float]  # per frame, by stage (mfcc, audio_encoder, ... render, encode)


class StreamSession:
    """The stepped state of one stream, and what turns each of its frames into output."""

    def __init__(
        self,
        motion: MotionModel,
        renderer: Renderer,
        avatar: Avatar,
        controls: ControlUpdate | None = None,
        seed: int = 0,
        output: str = "h264",
    ):
        """``output``: one of ``spacelive.stream.sinks.OUTPUTS``; "keypoints" needs the model
        directory's motion basis. Raises InputError (keypoints without a basis) or ValueError
        (an unknown output, controls out of range)."""
        if output not in OUTPUTS:
            raise ValueError(f"unknown output {output!r}; use one of {', '.join(OUTPUTS)}")
        self.avatar = avatar
        self.output = output
        self._renderer = renderer
        self._keypoints: KeypointSink | None = None
        if output == "keypoints":
            if motion.stages.motion_basis is None:
                raise InputError(
                    "keypoints_unavailable",
                    f"the server's models have no {BASIS_FILE}; ask for output 'video' (fit "
                    "one with `spacelive train basis`)",
                )
            self._keypoints = KeypointSink(motion.stages.motion_basis)
        # Made at the first local render (a batched engine renders in its workers instead).
        self._render_source: RenderSource | None = None
        self._pixels: PixelSink | None = None
        self._picture: np.ndarray | None = None  # the frame rendered into, reused
        self.state: MotionState = motion.new_state(avatar, controls, seed)
        self.times = StageTimes()
        self.frames_produced = 0
        self.closed = False

    @property
    def renders_pixels(self) -> bool:
        return self._keypoints is None

    def render(self, motion: FrameMotion) -> EncodedFrame:
        """The next frame's output from its motion, made here; frames in order."""
        t0 = time.perf_counter()
        if self._keypoints is not None:  # the receiver renders
            encoded = self._keypoints.frame(motion)
            return self.count_frame(encoded, 0.0, time.perf_counter() - t0)
        if self._pixels is None:
            self._render_source = self._renderer.prepare(self.avatar.image, self.avatar.mesh_px)
            self._pixels = pixel_sink(self.output)
            self._picture = np.empty_like(self._render_source.image)
        assert self._render_source is not None
        rgb = self._renderer.render(
            self._render_source, crop_to_pixels(motion.keypoints), self._picture
        )
        t1 = time.perf_counter()
        encoded = self._pixels.frame(rgb, motion.frame_index)
        return self.count_frame(encoded, t1 - t0, time.perf_counter() - t1)

    def count_frame(
        self, encoded: EncodedFrame, render_seconds: float, encode_seconds: float
    ) -> EncodedFrame:
        """Book the next frame, made here or by a render worker
        (``spacelive.stream.render_pool``); frames in order."""
        if encoded.frame_index != self.frames_produced:
            raise RuntimeError(f"frame {encoded.frame_index} out of order")
        if render_seconds:
            self.times.add("render", render_seconds)
        self.times.add("encode", encode_seconds)
        self.times.frames += 1
        self.frames_produced += 1
        return encoded

    def close(self) -> None:
        """Release the output sink. Idempotent."""
        if not self.closed:
            self.closed = True
            if self._pixels is not None:
                self._pixels.close()
