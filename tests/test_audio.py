"""The MFCC front end and resampling: exact frame clock, chunking invariance."""

import numpy as np
import pytest
import python_speech_features as psf
from hypothesis import given, settings
from hypothesis import strategies as st

from spacelive.checks.bench import speech_like
from spacelive.media.audio import (
    NFFT,
    MfccStreamer,
    Resampler,
    frame_count,
    offline_mfcc,
    preemphasize,
    samples_needed,
    window_start,
)


def stream_mfcc(signal: np.ndarray, chunk_sizes: list[int]) -> np.ndarray:
    streamer, out, i = MfccStreamer(), [], 0
    sizes = iter(chunk_sizes)
    while i < len(signal):
        n = next(sizes, len(signal))
        out.append(streamer.push(signal[i : i + n]))
        i += n
    out.append(streamer.finish(frame_count(len(signal), 16_000)))
    return np.concatenate(out)


def test_coefficients_follow_python_speech_features():
    signal = speech_like(1.0, seed=3).astype(np.float64)
    ours = offline_mfcc(signal)
    emphasized = preemphasize(signal)
    for k in (5, 12, 20):
        start = window_start(k)
        reference = psf.mfcc(
            emphasized[start : start + NFFT],
            16_000,
            winlen=NFFT / 16_000,
            winstep=NFFT / 16_000,
            numcep=40,
            nfilt=40,
            nfft=NFFT,
            preemph=0.0,
        )[0]
        np.testing.assert_allclose(ours[k], reference, rtol=1e-4, atol=1e-3)


def test_frame_clock_is_exact_and_does_not_drift():
    assert frame_count(160_000, 16_000) == 300  # 10.000 s
    assert frame_count(10 * 60 * 48_000, 48_000) == 18_000
    assert frame_count(10 * 60 * 44_100, 44_100) == 18_000
    assert frame_count(160_001, 16_000) == 301
    assert frame_count(0, 16_000) == 0
    # Frame 18,000 is centred exactly on sample 9,600,000: no accumulated rounding.
    assert window_start(18_000) + NFFT // 2 == 9_600_000
    assert window_start(1) + NFFT // 2 == 533  # the fractional hop, floored per frame
    assert window_start(3) + NFFT // 2 == 1600
    # Frame k needs audio up to (k + 4) / 30 s plus half a window once the encoder looks ahead.
    assert samples_needed(4) == 4 * 1600 // 3 + NFFT // 2


def test_ten_minutes_stream_into_exactly_18000_frames():
    streamer = MfccStreamer()
    second = speech_like(1.0, seed=1)
    frames = sum(streamer.push(second).shape[0] for _ in range(600))
    frames += streamer.finish(frame_count(600 * 16_000, 16_000)).shape[0]
    assert frames == 18_000


@settings(max_examples=25, deadline=None)
@given(
    seconds=st.floats(0.01, 2.5),
    chunks=st.lists(st.integers(1, 32_000), min_size=1, max_size=60),
    seed=st.integers(0, 1000),
)
def test_any_chunking_gives_exactly_the_offline_mfcc(seconds, chunks, seed):
    signal = speech_like(seconds, seed=seed) + 1e-4  # nonzero even in pauses
    expected = offline_mfcc(signal)
    got = stream_mfcc(signal, chunks)
    assert got.shape == expected.shape == (frame_count(len(signal), 16_000), 40)
    assert np.array_equal(got, expected)


def test_one_sample_chunks_give_exactly_the_offline_mfcc():
    signal = speech_like(0.3, seed=9)
    assert np.array_equal(stream_mfcc(signal, [1] * len(signal)), offline_mfcc(signal))


@pytest.mark.parametrize("rate", [24_000, 48_000])
@settings(max_examples=10, deadline=None)
@given(chunks=st.lists(st.integers(1, 96_000), min_size=1, max_size=30), seed=st.integers(0, 99))
def test_resampling_is_identical_whatever_the_chunking(rate, chunks, seed):
    signal = speech_like(2.0, rate, seed=seed)

    def run(sizes):
        resampler, out, i = Resampler(rate), [], 0
        for n in sizes:
            out.append(resampler.push(signal[i : i + n]))
            i += n
        out += [resampler.push(signal[i:]), resampler.finish()]
        return np.concatenate(out)

    whole = run([len(signal)])
    assert abs(len(whole) - len(signal) * 16_000 / rate) <= 2
    assert np.array_equal(run(chunks), whole)


def test_unsupported_sample_rate_is_refused_with_the_fix():
    with pytest.raises(ValueError, match="8000 is not supported; send one of 16000"):
        Resampler(8000)
