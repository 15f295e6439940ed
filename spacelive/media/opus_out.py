"""A stream's audio going out as Opus: mono float audio in pieces -> 20 ms Opus packets at
48 kHz, as they fill (PyAV's libopus). Packet n covers [20 n, 20 (n + 1)) ms of the audio once
the decoder has dropped the encoder's ``pre_skip`` samples."""

import struct

import av
import numpy as np

from spacelive.media.audio import pcm_s16le
from spacelive.media.audio_input import OPUS_RATE

PACKET_MS = 20
PACKET_SAMPLES = OPUS_RATE * PACKET_MS // 1000  # 960


class OpusEncoder:
    """One stream's: ``push`` samples (n,) float32 at ``sample_rate`` in order, then
    ``finish``; each returns the packets that filled."""

    def __init__(self, sample_rate: int, bitrate: int = 32_000):
        self.sample_rate = sample_rate
        self._resampler = (
            None
            if sample_rate == OPUS_RATE
            else av.AudioResampler(format="s16", layout="mono", rate=OPUS_RATE)
        )
        self._codec = av.CodecContext.create("libopus", "w")
        self._codec.sample_rate, self._codec.layout, self._codec.format = OPUS_RATE, "mono", "s16"
        self._codec.bit_rate = bitrate
        self._codec.open()
        head = self._codec.extradata  # its OpusHead
        if head is None:
            raise RuntimeError("libopus gave no OpusHead")
        self.pre_skip: int = struct.unpack_from("<H", head, 10)[0]  # 48 kHz samples
        self._held = np.zeros(0, np.int16)  # 48 kHz, not yet a whole packet
        self._pts = 0

    def push(self, samples: np.ndarray) -> list[bytes]:
        pcm = np.frombuffer(pcm_s16le(samples), "<i2")
        if self._resampler is not None and pcm.size:
            frame = av.AudioFrame.from_ndarray(pcm[None], format="s16", layout="mono")
            frame.sample_rate = self.sample_rate
            pcm = self._resampled(self._resampler.resample(frame))
        return self._packets(pcm)

    def finish(self) -> list[bytes]:
        """The rest: what the resampler held, a last packet padded with silence, the
        encoder's tail."""
        tail = np.zeros(0, np.int16)
        if self._resampler is not None:
            tail = self._resampled(self._resampler.resample(None))
        packets = self._packets(tail)
        if self._held.size:
            packets += self._packets(np.zeros(PACKET_SAMPLES - self._held.size, np.int16))
        return packets + [bytes(p) for p in self._codec.encode(None)]

    @staticmethod
    def _resampled(frames) -> np.ndarray:
        pieces = [f.to_ndarray()[0] for f in frames]
        return np.concatenate(pieces) if pieces else np.zeros(0, np.int16)

    def _packets(self, pcm: np.ndarray) -> list[bytes]:
        self._held = np.concatenate([self._held, pcm.astype(np.int16)])
        out: list[bytes] = []
        while self._held.size >= PACKET_SAMPLES:
            block, self._held = self._held[:PACKET_SAMPLES], self._held[PACKET_SAMPLES:]
            frame = av.AudioFrame.from_ndarray(block[None], format="s16", layout="mono")
            frame.sample_rate, frame.pts = OPUS_RATE, self._pts
            self._pts += PACKET_SAMPLES
            out += [bytes(p) for p in self._codec.encode(frame)]
        return out
