"""A streaming session: open -> feed -> ... -> flush -> close.

Audio in (PCM or Opus: ``spacelive.audio_input``), one H.264 access unit per frame out.
The session owns all of its state (decoder, resampler, MFCC buffer, recurrent state,
encoder), so sessions never share anything mutable; the engine's runners and renderer are
stateless and shared.
"""

import logging
import time

import numpy as np

from spacelive.audio import N_MFCC, MfccStreamer, Resampler, frame_count
from spacelive.audio_input import AudioSpec, InputError, open_input
from spacelive.controls import ControlUpdate
from spacelive.face import Avatar, crop_to_pixels
from spacelive.keypoints import BASIS_FILE, FLAG_ABSOLUTE, KeypointEncoder
from spacelive.motion import FrameMotion, MotionModel, MotionState
from spacelive.renderer import Renderer, RenderSource
from spacelive.timing import StageTimes
from spacelive.video import EncodedFrame, H264Encoder

log = logging.getLogger(__name__)


class StreamSession:
    """One client's stream. Its three parts may run on three threads, each part from one
    thread at a time: the input (``decode``, ``finish``), the motion state (stepped, and
    ``control``), and the output (``render``). ``feed`` and ``flush`` run all three here."""

    def __init__(
        self,
        motion: MotionModel,
        renderer: Renderer,
        avatar: Avatar,
        audio: AudioSpec,
        controls: ControlUpdate | None = None,
        seed: int = 0,
        output: str = "video",
    ):
        """output: "video" (H.264 frames) or "keypoints" (the motion, for a receiver that
        renders; needs the model directory's motion basis)."""
        self._input = open_input(audio)
        try:
            self._resampler = Resampler(self._input.sample_rate)
        except ValueError as exc:
            raise InputError("unsupported_sample_rate", str(exc)) from None
        self.sample_rate = self._input.sample_rate
        self.avatar = avatar
        self._motion = motion
        self._renderer = renderer
        self.output = output
        self._keypoints: KeypointEncoder | None = None
        self._render_source: RenderSource | None = None  # made at the first local render:
        self._encoder: H264Encoder | None = None  # the BatchEngine renders elsewhere
        self._picture: np.ndarray | None = None  # the frame rendered into, reused
        if output == "keypoints":
            if motion.stages.motion_basis is None:
                raise InputError(
                    "keypoints_unavailable",
                    f"the server's models have no {BASIS_FILE}; ask for output 'video' (fit "
                    "one with `spacelive train basis`)",
                )
            self._keypoints = KeypointEncoder(motion.stages.motion_basis)
        elif output != "video":
            raise ValueError(f"unknown output {output!r}")
        self._mfcc = MfccStreamer()
        self._state = motion.new_state(avatar, controls, seed)
        self._closed = False
        self.samples_received = 0
        self.frames_produced = 0
        self.flushed = False
        self.times = StageTimes()

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def motion_state(self) -> MotionState:
        """The recurrent state that ``MotionModel.step`` advances."""
        return self._state

    def decode(self, data: bytes) -> np.ndarray:
        """One audio message (as the session's AudioSpec says) -> its MFCC rows (n, 40), to be
        stepped in order (``feed`` does it here; the server's ``BatchEngine`` batches them)."""
        self._check_open()
        t0 = time.perf_counter()
        samples = self._input.decode(data)
        self.samples_received += samples.size
        mfcc = self._mfcc.push(self._resampler.push(samples))
        self.times.add("mfcc", time.perf_counter() - t0)
        return mfcc

    def finish(self) -> tuple[np.ndarray, int]:
        """End of stream: the last MFCC rows (n, 40) and the stream's frame count, which the
        state must know before they are stepped (it masks the lookahead past the end).

        The rows are the audio's tail, then zero rows that drive the encoder's lookahead out:
        stepping them all yields every remaining frame, ceil(duration * 30) in total.
        """
        self._check_open()
        if self.flushed:
            return np.zeros((0, N_MFCC), np.float32), int(self._state.frame_count)
        self.flushed = True
        t0 = time.perf_counter()
        held = self._input.finish()
        self.samples_received += held.size
        total = frame_count(self.samples_received, self.sample_rate)
        rows = [
            self._mfcc.push(self._resampler.push(held)),
            self._mfcc.push(self._resampler.finish()),
            self._mfcc.finish(total),
            np.zeros((self._motion.lookahead, N_MFCC), np.float32),
        ]
        self.times.add("mfcc", time.perf_counter() - t0)
        return np.concatenate(rows), total

    def feed(self, data: bytes) -> list[EncodedFrame]:
        """One audio message -> the frames that became due, stepped here alone."""
        return self._advance(self.decode(data))

    def flush(self) -> list[EncodedFrame]:
        """End of stream: every remaining frame, up to ceil(duration * 30) in total."""
        if self.flushed:
            self._check_open()
            return []
        rows, total = self.finish()
        self._state.frame_count = np.int64(total)
        frames = self._advance(rows)
        if self.frames_produced != total:
            raise RuntimeError(f"stream produced {self.frames_produced} frames, expected {total}")
        return frames

    def control(self, update: ControlUpdate) -> None:
        """Change the face controls from the next frame on (ramped; see spacelive.controls).
        Raises ValueError for values out of range, changing nothing."""
        self._check_open()
        self._state.controls.apply(update)

    def close(self) -> None:
        """Release the encoder; the state goes with the session object. Idempotent."""
        if not self._closed:
            self._closed = True
            if self._encoder is not None:
                self._encoder.close()

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("session is closed")

    def _advance(self, mfcc: np.ndarray) -> list[EncodedFrame]:
        out = []
        for row in mfcc:
            (motion,) = self._motion.step([self._state], row[None, :], self.times)
            if motion is not None:
                out.append(self.render(motion))
        return out

    def render(self, motion: FrameMotion) -> EncodedFrame:
        """The next frame's output (video or keypoints) from its motion; frames in order."""
        t0 = time.perf_counter()
        if self._keypoints is not None:  # the receiver renders
            flags, payload = self._keypoints.encode(motion)
            keyframe = bool(flags & FLAG_ABSOLUTE)
            encoded = EncodedFrame(motion.frame_index, keyframe, payload, kind=2)
            return self.count_frame(encoded, 0.0, time.perf_counter() - t0)
        if self._encoder is None:
            self._render_source = self._renderer.prepare(self.avatar.image, self.avatar.mesh_px)
            self._encoder = H264Encoder()
            self._picture = np.empty_like(self._render_source.image)
        assert self._render_source is not None
        rgb = self._renderer.render(
            self._render_source, crop_to_pixels(motion.keypoints), self._picture
        )
        t1 = time.perf_counter()
        encoded = self._encoder.encode(rgb, motion.frame_index)
        return self.count_frame(encoded, t1 - t0, time.perf_counter() - t1)

    def count_frame(
        self, encoded: EncodedFrame, render_seconds: float, encode_seconds: float
    ) -> EncodedFrame:
        """Book the next frame, rendered here or by a render worker (``spacelive.render_pool``);
        frames in order."""
        if encoded.frame_index != self.frames_produced:
            raise RuntimeError(f"frame {encoded.frame_index} out of order")
        if render_seconds:
            self.times.add("render", render_seconds)
        self.times.add("encode", encode_seconds)
        self.times.frames += 1
        self.frames_produced += 1
        return encoded
