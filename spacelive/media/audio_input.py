"""Audio as a client sends it -> float samples for the session: PCM, or Opus for bad links.

Opus comes in one of two containers:

* ``packets``: each binary message is one Opus packet, as WebCodecs' ``AudioEncoder`` emits
  them (``EncodedAudioChunk`` data);
* ``ogg``: the bytes of an Ogg Opus stream (RFC 7845), cut anywhere into messages, as
  ``MediaRecorder`` or ``opusenc`` write it. Its ``OpusHead`` gives the channel count and
  the pre-skip; the last page's granule position trims the end.

Opus is decoded with PyAV (libopus) at 48 kHz; the encoder's delay (``pre_skip`` samples at
48 kHz, from ``OpusHead`` or declared by the client) is cut from the start, so that frame k
still shows audio time k / 30 s of what the microphone heard.
"""

import struct
from dataclasses import dataclass
from typing import Literal, Protocol

import av
import numpy as np

OPUS_RATE = 48_000
MAX_PRE_SKIP = OPUS_RATE  # 1 s; libopus uses 312 samples (6.5 ms)


class InputError(ValueError):
    """Audio a session cannot accept (bytes that do not decode, a format it does not take);
    ``code`` is stable, the message says the fix."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class AudioSpec:
    """What a stream's binary messages hold (``start.audio``)."""

    encoding: Literal["pcm_s16le", "opus"] = "pcm_s16le"
    sample_rate: int = 16_000  # Opus: always 48000 (its clock, whatever was recorded)
    channels: int = 1
    container: Literal["packets", "ogg"] = "packets"  # Opus only
    pre_skip: int = 0  # Opus packets only: encoder delay at 48 kHz (Ogg says it in OpusHead)


class AudioInput(Protocol):
    sample_rate: int

    def decode(self, data: bytes) -> np.ndarray:
        """One binary message -> mono float32 samples in [-1, 1] at ``sample_rate``."""
        ...

    def finish(self) -> np.ndarray:
        """End of stream: the samples still held back."""
        ...


def open_input(spec: AudioSpec) -> AudioInput:
    if spec.encoding == "pcm_s16le":
        return PcmInput(spec.sample_rate)
    if spec.sample_rate != OPUS_RATE:
        raise InputError(
            "unsupported_sample_rate",
            f"Opus is decoded at {OPUS_RATE} Hz; declare sample_rate {OPUS_RATE} (the rate the "
            "microphone recorded at does not matter)",
        )
    if spec.container == "ogg":
        return OggOpusInput()
    return OpusPacketInput(spec.channels, spec.pre_skip)


class PcmInput:
    """Signed 16-bit little-endian mono PCM."""

    def __init__(self, sample_rate: int):
        self.sample_rate = sample_rate

    def decode(self, data: bytes) -> np.ndarray:
        if len(data) % 2:
            raise InputError(
                "odd_pcm_length",
                f"audio chunk of {len(data)} bytes is not a whole number of 16-bit samples; "
                "send PCM s16le mono in chunks of an even number of bytes",
            )
        return np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0

    def finish(self) -> np.ndarray:
        return _EMPTY


class OpusPacketInput:
    """Opus packets -> 48 kHz mono, the first ``pre_skip`` samples dropped."""

    sample_rate = OPUS_RATE

    def __init__(self, channels: int, pre_skip: int):
        if channels not in (1, 2):
            raise InputError("unsupported_channels", "Opus audio must be mono or stereo")
        if not 0 <= pre_skip <= MAX_PRE_SKIP:
            raise InputError(
                "invalid_opus", f"pre_skip must be 0..{MAX_PRE_SKIP} samples at 48 kHz"
            )
        self._codec = av.CodecContext.create("libopus", "r")
        self._codec.sample_rate = OPUS_RATE
        self._codec.layout = "stereo" if channels == 2 else "mono"
        self._skip = pre_skip
        self.packets = 0

    def decode(self, data: bytes) -> np.ndarray:
        if not data:
            raise InputError("invalid_opus", "an empty Opus packet; send one packet a message")
        try:
            frames = self._codec.decode(av.Packet(data))
        except av.error.FFmpegError as exc:
            raise InputError(
                "invalid_opus",
                f"Opus packet {self.packets} could not be decoded ({exc.strerror}); with "
                "container 'packets' send one Opus packet per message, as AudioEncoder emits",
            ) from None
        self.packets += 1
        samples = np.concatenate([mono_samples(f) for f in frames]) if frames else _EMPTY
        if self._skip:
            cut = min(self._skip, len(samples))
            samples, self._skip = samples[cut:], self._skip - cut
        return samples

    def finish(self) -> np.ndarray:
        return _EMPTY


class OggOpusInput:
    """An Ogg Opus byte stream, in messages cut anywhere -> 48 kHz mono."""

    sample_rate = OPUS_RATE

    def __init__(self) -> None:
        self._pages = OggPages()
        self._decoder: OpusPacketInput | None = None
        self._headers = 0  # OpusHead, OpusTags seen
        self._pre_skip = 0
        self._decoded = 0  # samples given out
        self._end_granule: int | None = None

    def decode(self, data: bytes) -> np.ndarray:
        out = []
        for packet, granule, last in self._pages.push(data):
            if self._headers == 0:
                channels, self._pre_skip = _opus_head(packet)
                self._decoder = OpusPacketInput(channels, self._pre_skip)
                self._headers = 1
            elif self._headers == 1:
                if not packet.startswith(b"OpusTags"):
                    raise InputError("invalid_opus", "the Ogg stream has no OpusTags header")
                self._headers = 2
            else:
                assert self._decoder is not None
                out.append(self._decoder.decode(packet))
            if last:
                self._end_granule = granule
        samples = np.concatenate(out) if out else _EMPTY
        if self._end_granule is not None:  # the last page's granule trims the encoder's padding
            keep = max(self._end_granule - self._pre_skip - self._decoded, 0)
            samples = samples[:keep]
        self._decoded += len(samples)
        return samples

    def finish(self) -> np.ndarray:
        if self._pages.pending:
            raise InputError(
                "invalid_opus", "the Ogg stream ended inside a page; send the whole stream"
            )
        return _EMPTY


class OggPages:
    """Incremental Ogg demuxer (RFC 3533) for one logical stream: bytes -> whole packets, each
    with the granule position of the page it ends on and whether that page ends the stream."""

    MAX_BUFFER = 1 << 20

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._packet = bytearray()  # a packet continued across pages
        self._serial: int | None = None
        self.pages = 0

    @property
    def pending(self) -> bool:
        return bool(self._buffer) or bool(self._packet)

    def push(self, data: bytes) -> list[tuple[bytes, int, bool]]:
        self._buffer += data
        out: list[tuple[bytes, int, bool]] = []
        while len(self._buffer) >= 27:
            if self._buffer[:4] != b"OggS":
                raise InputError(
                    "invalid_opus",
                    f"expected an Ogg page ('OggS') after {self.pages} pages; with container "
                    "'ogg' send the Ogg stream's bytes in order, unaltered",
                )
            version, flags, granule, serial, _, _, count = struct.unpack_from(
                "<BBqIIIB", self._buffer, 4
            )
            if version != 0:
                raise InputError("invalid_opus", f"Ogg page version {version} is unknown")
            header = 27 + count
            if len(self._buffer) < header:
                break
            lacing = self._buffer[27:header]
            size = header + sum(lacing)
            if len(self._buffer) < size:
                if len(self._buffer) > self.MAX_BUFFER:
                    raise InputError("invalid_opus", "an Ogg page is too large")
                break
            if self._serial is None:
                self._serial = serial
            elif serial != self._serial:
                raise InputError(
                    "invalid_opus", "the Ogg stream holds several logical streams; send one"
                )
            body = bytes(self._buffer[header:size])
            del self._buffer[:size]
            self.pages += 1
            ends = [i for i, v in enumerate(lacing) if v < 255]
            position = 0
            for i, value in enumerate(lacing):
                self._packet += body[position : position + value]
                position += value
                if value < 255:
                    last = bool(flags & 0x04) and i == ends[-1]
                    out.append((bytes(self._packet), granule, last))
                    self._packet = bytearray()
        return out


def _opus_head(packet: bytes) -> tuple[int, int]:
    """OpusHead (RFC 7845 5.1) -> (channels, pre-skip)."""
    if len(packet) < 19 or not packet.startswith(b"OpusHead"):
        raise InputError(
            "invalid_opus", "the Ogg stream does not start with OpusHead: it is not Ogg Opus"
        )
    version, channels, pre_skip = struct.unpack_from("<BBH", packet, 8)
    if version >> 4:
        raise InputError("invalid_opus", f"OpusHead version {version} is unknown")
    return channels, pre_skip  # OpusPacketInput refuses what it cannot decode


_EMPTY = np.zeros(0, np.float32)


def mono_samples(frame: av.AudioFrame) -> np.ndarray:
    """A decoded frame -> mono float32."""
    data = frame.to_ndarray()
    if frame.format.is_planar:
        samples = data.astype(np.float32).mean(axis=0)
    else:
        samples = data.reshape(-1, len(frame.layout.channels)).astype(np.float32).mean(axis=1)
    if frame.format.name.startswith("s16"):
        samples /= 32768.0
    return samples
