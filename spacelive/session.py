"""A streaming session: open -> feed -> ... -> flush -> close.

PCM s16le mono in, one H.264 access unit per frame out. The session owns all of its state
(resampler, MFCC buffer, recurrent state, encoder), so sessions never share anything
mutable; the engine's runners and renderer are stateless and shared.
"""

import logging
import time

import numpy as np

from spacelive.audio import N_MFCC, MfccStreamer, Resampler, frame_count
from spacelive.controls import ControlUpdate
from spacelive.face import Avatar, crop_to_pixels
from spacelive.motion import FrameMotion, MotionModel
from spacelive.renderer import Renderer
from spacelive.timing import StageTimes
from spacelive.video import EncodedFrame, H264Encoder

log = logging.getLogger(__name__)


class InputError(ValueError):
    """Audio the session cannot accept; ``code`` is stable, the message says the fix."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


class StreamSession:
    """One client's stream. Not thread-safe: call it from one thread at a time."""

    def __init__(
        self,
        motion: MotionModel,
        renderer: Renderer,
        avatar: Avatar,
        sample_rate: int,
        controls: ControlUpdate | None = None,
        seed: int = 0,
    ):
        try:
            self._resampler = Resampler(sample_rate)
        except ValueError as exc:
            raise InputError("unsupported_sample_rate", str(exc)) from None
        self.sample_rate = sample_rate
        self.avatar = avatar
        self._motion = motion
        self._renderer = renderer
        self._render_source = renderer.prepare(avatar.image, avatar.mesh_px)
        self._mfcc = MfccStreamer()
        self._state = motion.new_state(avatar, controls, seed)
        self._encoder = H264Encoder()
        self._closed = False
        self.samples_received = 0
        self.frames_produced = 0
        self.flushed = False
        self.times = StageTimes()

    @property
    def closed(self) -> bool:
        return self._closed

    def feed(self, pcm: bytes) -> list[EncodedFrame]:
        """PCM s16le mono at the session's sample rate -> the frames that became due."""
        self._check_open()
        if len(pcm) % 2:
            raise InputError(
                "odd_pcm_length",
                f"audio chunk of {len(pcm)} bytes is not a whole number of 16-bit samples; "
                "send PCM s16le mono in chunks of an even number of bytes",
            )
        samples = np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0
        self.samples_received += samples.size
        t0 = time.perf_counter()
        mfcc = self._mfcc.push(self._resampler.push(samples))
        self.times.add("mfcc", time.perf_counter() - t0)
        return self._advance(mfcc)

    def flush(self) -> list[EncodedFrame]:
        """End of stream: every remaining frame, up to ceil(duration * 30) in total."""
        self._check_open()
        if self.flushed:
            return []
        self.flushed = True
        total = frame_count(self.samples_received, self.sample_rate)
        t0 = time.perf_counter()
        tail = self._mfcc.push(self._resampler.finish())
        rest = self._mfcc.finish(total)
        self.times.add("mfcc", time.perf_counter() - t0)
        frames = self._advance(np.concatenate([tail, rest]))
        self._state.frame_count = np.int64(total)
        # Zero MFCC past the end drives the encoder's lookahead out (it masks those positions).
        frames += self._advance(np.zeros((self._motion.lookahead, N_MFCC), np.float32))
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
            self._encoder.close()

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("session is closed")

    def _advance(self, mfcc: np.ndarray) -> list[EncodedFrame]:
        out = []
        for row in mfcc:
            (motion,) = self._motion.step([self._state], row[None, :], self.times)
            if motion is not None:
                out.append(self._render(motion))
        return out

    def _render(self, motion: FrameMotion) -> EncodedFrame:
        if motion.frame_index != self.frames_produced:
            raise RuntimeError(f"frame {motion.frame_index} out of order")
        t0 = time.perf_counter()
        rgb = self._renderer.render(self._render_source, crop_to_pixels(motion.keypoints))
        t1 = time.perf_counter()
        encoded = self._encoder.encode(rgb, motion.frame_index)
        t2 = time.perf_counter()
        self.times.add("render", t1 - t0)
        self.times.add("encode", t2 - t1)
        self.times.frames += 1
        self.frames_produced += 1
        return encoded
