"""A stream's outputs: sinks on its one frame source.

Every frame starts as the motion loop's ``FrameMotion``. A keypoint stream codes that motion
for a receiver that renders; every other output renders it to pixels first, (512, 512, 3)
uint8 RGB, and hands the picture to a pixel sink: H.264 access units (the websocket's video,
and an MP4 file, which muxes them) or the raw picture (for WebRTC and the agent plug-ins).
Each sink yields ``EncodedFrame``s, in frame order.
"""

from typing import Protocol

import numpy as np

from spacelive.media.video import KIND_KEYPOINTS, KIND_RGB, EncodedFrame, H264Encoder
from spacelive.motion.keypoints import FLAG_ABSOLUTE, KeypointEncoder, MotionBasis
from spacelive.motion.loop import FrameMotion

OUTPUTS = ("h264", "rgb", "keypoints")
"""What a stream can give: H.264 access units, raw RGB pictures, or keypoint frames."""


class PixelSink(Protocol):
    def frame(self, rgb: np.ndarray, frame_index: int) -> EncodedFrame:
        """The rendered picture (512, 512, 3) uint8 of frame ``frame_index`` -> its output."""
        ...

    def close(self) -> None: ...


class H264Sink:
    """One H.264 access unit per frame (``H264Encoder``: baseline, an IDR every 2 s)."""

    def __init__(self) -> None:
        self._encoder = H264Encoder()

    def frame(self, rgb: np.ndarray, frame_index: int) -> EncodedFrame:
        return self._encoder.encode(rgb, frame_index)

    def close(self) -> None:
        self._encoder.close()


class RgbSink:
    """The picture itself, copied out of the renderer's reused buffer."""

    def frame(self, rgb: np.ndarray, frame_index: int) -> EncodedFrame:
        return EncodedFrame(frame_index, True, rgb.tobytes(), kind=KIND_RGB)

    def close(self) -> None:
        pass


def pixel_sink(output: str) -> PixelSink:
    """The sink of a pixel output ("h264" or "rgb")."""
    if output == "h264":
        return H264Sink()
    if output == "rgb":
        return RgbSink()
    raise ValueError(f"{output!r} is not a pixel output; use 'h264' or 'rgb'")


class KeypointSink:
    """The motion, coded against the model's basis (``spacelive.motion.keypoints``)."""

    def __init__(self, basis: MotionBasis):
        self._encoder = KeypointEncoder(basis)

    def frame(self, motion: FrameMotion) -> EncodedFrame:
        flags, payload = self._encoder.encode(motion)
        return EncodedFrame(
            motion.frame_index, bool(flags & FLAG_ABSOLUTE), payload, kind=KIND_KEYPOINTS
        )
