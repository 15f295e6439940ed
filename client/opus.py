"""Opus for the uplink of a bad link: float audio -> Opus packets (as WebCodecs' AudioEncoder
sends them) or an Ogg Opus stream, with PyAV's libopus. The server's side is
``spacelive.media.audio_input``."""

import io
import struct

import av
import numpy as np

from spacelive.media.audio import pcm_s16le
from spacelive.media.audio_input import OPUS_RATE

PACKET_MS = 20
PACKET_SAMPLES = OPUS_RATE * PACKET_MS // 1000


def _frames_48k(samples: np.ndarray, sample_rate: int):
    """Mono float samples at any rate -> 20 ms s16 frames at 48 kHz (the last one padded)."""
    resampler = av.AudioResampler(format="s16", layout="mono", rate=OPUS_RATE)
    frame = av.AudioFrame.from_ndarray(
        np.frombuffer(pcm_s16le(samples), "<i2")[None], format="s16", layout="mono"
    )
    frame.sample_rate = sample_rate
    pieces = [f.to_ndarray()[0] for f in resampler.resample(frame) + resampler.resample(None)]
    pcm = np.concatenate(pieces) if pieces else np.zeros(0, np.int16)
    pcm = pcm[: round(len(samples) * OPUS_RATE / sample_rate)]
    for start in range(0, len(pcm), PACKET_SAMPLES):
        block = np.zeros(PACKET_SAMPLES, np.int16)
        piece = pcm[start : start + PACKET_SAMPLES]
        block[: len(piece)] = piece
        out = av.AudioFrame.from_ndarray(block[None], format="s16", layout="mono")
        out.sample_rate, out.pts = OPUS_RATE, start
        yield out


def opus_packets(samples: np.ndarray, sample_rate: int, bitrate: int) -> tuple[list[bytes], int]:
    """(one Opus packet per 20 ms, the encoder's pre-skip in 48 kHz samples)."""
    codec = av.CodecContext.create("libopus", "w")
    codec.sample_rate, codec.layout, codec.format = OPUS_RATE, "mono", "s16"
    codec.bit_rate = bitrate
    codec.open()
    head = codec.extradata  # its OpusHead
    if head is None:
        raise RuntimeError("libopus gave no OpusHead")
    _, _, pre_skip = struct.unpack_from("<BBH", head, 8)
    packets = []
    for frame in _frames_48k(samples, sample_rate):
        packets += [bytes(p) for p in codec.encode(frame)]
    packets += [bytes(p) for p in codec.encode(None)]
    return packets, pre_skip


def ogg_opus(samples: np.ndarray, sample_rate: int, bitrate: int) -> bytes:
    """An Ogg Opus stream (RFC 7845) of the audio."""
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="ogg") as container:
        stream = container.add_stream("libopus", rate=OPUS_RATE)
        stream.layout, stream.bit_rate = "mono", bitrate
        for frame in _frames_48k(samples, sample_rate):
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return buffer.getvalue()
