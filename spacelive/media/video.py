"""H.264 encoding (one access unit per frame, Annex B) and MP4 muxing, via PyAV."""

import logging
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from spacelive import FRAME_RATE, FRAME_SIZE

log = logging.getLogger(__name__)

KEYFRAME_INTERVAL = 2 * FRAME_RATE
_START_CODE = b"\x00\x00\x00\x01"


KIND_H264, KIND_KEYPOINTS, KIND_RGB = 1, 2, 3
"""What an ``EncodedFrame`` holds (1 and 2 are also the wire protocol's binary kinds)."""


@dataclass(slots=True)
class EncodedFrame:
    """What a stream gives for frame ``frame_index``, which shows audio time index / 30 s:
    kind 1, one H.264 access unit (Annex B byte stream; ``keyframe``: an IDR); kind 2, a
    keypoint frame (``spacelive.motion.keypoints``; ``keyframe``: coded from zero); kind 3, the
    raw picture, (512, 512, 3) uint8 RGB row-major (``rgb()``; every frame a keyframe)."""

    frame_index: int
    keyframe: bool
    data: bytes
    kind: int = KIND_H264

    @property
    def pts(self) -> float:
        """Presentation time, seconds from the stream's first audio sample."""
        return self.frame_index / FRAME_RATE

    def rgb(self) -> np.ndarray:
        """A kind-3 frame's picture, (512, 512, 3) uint8 (read-only, no copy)."""
        if self.kind != KIND_RGB:
            raise ValueError(f"frame {self.frame_index} is kind {self.kind}, not raw RGB")
        return np.frombuffer(self.data, np.uint8).reshape(FRAME_SIZE, FRAME_SIZE, 3)


class H264Encoder:
    """libx264, zerolatency: every ``encode`` returns that frame's access unit at once.

    Baseline profile (WebCodecs ``avc1.42E01F``-compatible), no B-frames, an IDR every two
    seconds with SPS/PPS repeated in-band, one thread so that output is deterministic.
    """

    def __init__(self, width: int = FRAME_SIZE, height: int = FRAME_SIZE, crf: int = 23):
        codec = av.CodecContext.create("libx264", "w")
        codec.width, codec.height = width, height
        codec.pix_fmt = "yuv420p"
        codec.time_base = Fraction(1, FRAME_RATE)
        codec.framerate = Fraction(FRAME_RATE, 1)
        codec.gop_size = KEYFRAME_INTERVAL
        codec.thread_count = 1
        codec.options = {
            "preset": "ultrafast",
            "tune": "zerolatency",
            "profile": "baseline",
            "crf": str(crf),
            "x264-params": f"keyint={KEYFRAME_INTERVAL}:min-keyint={KEYFRAME_INTERVAL}:"
            "scenecut=0:repeat-headers=1:threads=1",
        }
        self._codec: av.VideoCodecContext | None = codec
        self._pts = 0
        # One picture, refilled per frame: encoding converts it to yuv420p into a frame of
        # its own before libx264 sees it, so nothing holds on to this one.
        self._picture = av.VideoFrame(width, height, "rgb24")

    def encode(self, rgb: np.ndarray, frame_index: int) -> EncodedFrame:
        """rgb: (H, W, 3) uint8 -> the frame's access unit."""
        if self._codec is None:
            raise RuntimeError("encoder is closed")
        frame = self._picture
        if rgb.shape != (frame.height, frame.width, 3) or rgb.dtype != np.uint8:
            raise ValueError(
                f"expected ({frame.height}, {frame.width}, 3) uint8, got {rgb.shape} {rgb.dtype}"
            )
        plane = frame.planes[0]
        rows = np.frombuffer(memoryview(plane), np.uint8).reshape(frame.height, plane.line_size)
        rows[:, : 3 * frame.width] = rgb.reshape(frame.height, -1)
        frame.pts = self._pts
        self._pts += 1
        packets = self._codec.encode(frame)
        if len(packets) != 1:
            raise RuntimeError(f"libx264 returned {len(packets)} packets for one frame")
        packet = packets[0]
        return EncodedFrame(frame_index, bool(packet.is_keyframe), bytes(packet))

    def close(self) -> None:
        self._codec = None


def _parameter_sets(access_unit: bytes) -> bytes:
    """SPS and PPS NAL units (Annex B) from a keyframe's access unit."""
    units = [u for u in access_unit.split(_START_CODE) if u]
    kept = [u.lstrip(b"\x00") for u in units if u and (u[0] & 0x1F) in (7, 8)]
    return b"".join(_START_CODE + u for u in kept)


def write_mp4(
    path: Path,
    frames: list[EncodedFrame],
    audio: np.ndarray | None,
    sample_rate: int,
) -> None:
    """Mux already encoded frames (no re-encode) and mono float audio (AAC) into an MP4.

    Frames are placed by frame_index at 30 fps; audio starts at time 0.
    """
    if not frames:
        raise ValueError("no video frames to write")
    frames = sorted(frames, key=lambda f: f.frame_index)
    if not frames[0].keyframe:
        raise ValueError("the first video frame must be a keyframe")
    with av.open(str(path), "w", format="mp4") as container:
        video = container.add_stream("h264", rate=FRAME_RATE)
        video.width = video.height = FRAME_SIZE
        video.pix_fmt = "yuv420p"
        video.time_base = Fraction(1, FRAME_RATE)
        video.codec_context.extradata = _parameter_sets(frames[0].data)
        sound = None
        if audio is not None:
            sound = container.add_stream("aac", rate=sample_rate, layout="mono")
            sound.bit_rate = 96_000
        for f in frames:
            packet = av.Packet(f.data)
            packet.stream = video
            packet.time_base = Fraction(
                1, FRAME_RATE
            )  # the stream's own changes once muxing starts
            packet.pts = packet.dts = f.frame_index
            packet.is_keyframe = f.keyframe
            container.mux(packet)
        if sound is not None:
            samples = np.asarray(audio, dtype=np.float32).reshape(1, -1)
            block = 1024
            for start in range(0, samples.shape[1], block):
                chunk = np.ascontiguousarray(samples[:, start : start + block])
                frame = av.AudioFrame.from_ndarray(chunk, format="flt", layout="mono")
                frame.sample_rate = sample_rate
                frame.pts = start
                container.mux(sound.encode(frame))
            container.mux(sound.encode(None))
