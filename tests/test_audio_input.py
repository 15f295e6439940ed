"""Opus in: Ogg streams cut anywhere and WebCodecs-style packets decode to the audio that was
encoded, in time (pre-skip cut) and in length; bad bytes get specific errors."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spacelive.checks.bench import speech_like
from spacelive.client.opus import ogg_opus, opus_packets
from spacelive.media.audio_input import (
    OPUS_RATE,
    AudioSpec,
    InputError,
    OggOpusInput,
    open_input,
)

SECONDS = 1.5
SOURCE = speech_like(SECONDS, OPUS_RATE, seed=11)
OGG = ogg_opus(SOURCE, OPUS_RATE, 24_000)
PACKETS, PRE_SKIP = opus_packets(SOURCE, OPUS_RATE, 24_000)


def _lag(decoded: np.ndarray, source: np.ndarray) -> int:
    """Samples by which ``decoded`` trails ``source`` (cross-correlation peak)."""
    a, b = 4_000, len(source) - 4_000
    scores = [float(np.dot(decoded[a:b], source[a - s : b - s])) for s in range(-600, 601)]
    return int(np.argmax(scores)) - 600


def _decode_ogg(data: bytes, cuts: list[int]) -> np.ndarray:
    decoder = OggOpusInput()
    edges = [0, *sorted(set(cuts)), len(data)]
    parts = [decoder.decode(data[a:b]) for a, b in zip(edges, edges[1:], strict=False)]
    parts.append(decoder.finish())
    return np.concatenate(parts)


def test_ogg_opus_decodes_in_time_and_to_the_exact_length():
    decoded = _decode_ogg(OGG, [])
    assert len(decoded) == len(SOURCE)
    assert abs(_lag(decoded, SOURCE)) <= 2
    error = decoded - SOURCE
    assert 10 * np.log10(np.mean(SOURCE**2) / np.mean(error**2)) > 5  # it is this speech


@settings(max_examples=25, deadline=None)
@given(cuts=st.lists(st.integers(1, len(OGG) - 1), max_size=12))
def test_ogg_opus_decodes_the_same_however_it_is_cut(cuts):
    assert np.array_equal(_decode_ogg(OGG, cuts), _decode_ogg(OGG, []))


def test_opus_packets_with_their_pre_skip_are_in_time():
    decoder = open_input(AudioSpec("opus", OPUS_RATE, 1, "packets", PRE_SKIP))
    decoded = np.concatenate([decoder.decode(p) for p in PACKETS])
    assert PRE_SKIP == 312
    # The encoder pads the last packet: at most one packet (20 ms) more than was sent.
    assert len(SOURCE) <= len(decoded) <= len(SOURCE) + 960
    assert abs(_lag(decoded, SOURCE)) <= 2


def test_an_opus_stream_is_about_its_bitrate():
    kbps = 8 * sum(len(p) for p in PACKETS) / SECONDS / 1000
    assert 16 < kbps < 32


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"RIFF" + bytes(60), "expected an Ogg page"),
        (OGG.replace(b"OpusHead", b"VorbHead", 1), "does not start with OpusHead"),
    ],
)
def test_bad_ogg_streams_are_refused_with_a_reason(data, words):
    with pytest.raises(InputError, match=words) as info:
        _decode_ogg(data, [])
    assert info.value.code == "invalid_opus"


def test_a_truncated_ogg_stream_is_refused_at_the_end():
    decoder = OggOpusInput()
    decoder.decode(OGG[: len(OGG) - 100])
    with pytest.raises(InputError, match="ended inside a page"):
        decoder.finish()


def test_bad_opus_packets_are_refused():
    decoder = open_input(AudioSpec("opus", OPUS_RATE, 1, "packets", 0))
    with pytest.raises(InputError, match="empty Opus packet"):
        decoder.decode(b"")
    with pytest.raises(InputError, match="could not be decoded") as info:
        decoder.decode(OGG[:200])  # Ogg bytes declared as packets
    assert info.value.code == "invalid_opus"


def test_opus_must_be_declared_at_48k():
    with pytest.raises(InputError, match="48000") as info:
        open_input(AudioSpec("opus", 16_000))
    assert info.value.code == "unsupported_sample_rate"
