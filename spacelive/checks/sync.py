"""A/V sync as a viewer sees it: the lag between the re-detected lip opening on the frames and
the energy of the audio, by cross-correlation on the 30 fps grid.

Used on the frames a stream sends with the audio it was sent (``benchmarks/av_sync.py``) and on
what the web page shows and plays, recorded in the page (``tests/test_browser.py``).
"""

import io

import av
import numpy as np

from spacelive import FRAME_RATE
from spacelive.face.analysis import FaceAnalyzer
from spacelive.face.landmarks import LOWER_INNER_LIP, UPPER_INNER_LIP
from spacelive.media.audio_input import mono_samples

MAX_LAG = 10


def lip_gap(analyzer: FaceAnalyzer, rgb: np.ndarray) -> float:
    """Re-detected inner-lip gap of one frame in pixels (NaN where no face is found)."""
    mesh = analyzer.mesh(rgb)
    if mesh is None:
        return float("nan")
    return float(np.mean(mesh[LOWER_INNER_LIP, 1] - mesh[UPPER_INNER_LIP, 1]))


def energy_envelope(samples: np.ndarray, rate: int, times: np.ndarray) -> np.ndarray:
    """RMS of mono ``samples`` (time 0 at sample 0) over [t, t + 1/30) for each t in ``times``."""
    width = rate // FRAME_RATE
    padded = np.concatenate([samples, np.zeros(width)])
    starts = np.clip(np.round(times * rate).astype(np.int64), 0, len(samples))
    return np.array([np.sqrt(np.mean(padded[s : s + width] ** 2)) for s in starts])


def best_lag(lips: np.ndarray, energy: np.ndarray) -> tuple[int, list[float]]:
    """Lag in frames maximizing the correlation of lips[k] with energy[k - lag] (positive:
    the lips trail the audio), and the correlation at each lag from -MAX_LAG to MAX_LAG."""
    lips = np.where(np.isnan(lips), np.nanmean(lips), lips)
    scores = []
    for lag in range(-MAX_LAG, MAX_LAG + 1):
        a = lips[MAX_LAG:-MAX_LAG]
        b = energy[MAX_LAG - lag : len(energy) - MAX_LAG - lag]
        scores.append(float(np.corrcoef(a, b)[0, 1]))
    return int(np.argmax(scores)) - MAX_LAG, scores


def refined_lag(lag: int, scores: list[float]) -> float:
    """The peak between frames: a parabola through the best lag and its neighbours."""
    i = lag + MAX_LAG
    if not 0 < i < len(scores) - 1:
        return float(lag)
    left, middle, right = scores[i - 1], scores[i], scores[i + 1]
    curvature = left - 2 * middle + right
    return float(lag + (0.5 * (left - right) / curvature if curvature < 0 else 0.0))


def recording_offset(data: bytes, analyzer: FaceAnalyzer) -> dict:
    """The lip/audio lag of a recording (WebM or MP4 with one video and one audio track):
    the video's frames are placed on a 30 fps grid by their timestamps, the audio by its."""
    times, gaps = [], []
    with av.open(io.BytesIO(data), "r") as container:
        for picture in container.decode(video=0):
            times.append(float(picture.time or 0.0))
            gaps.append(lip_gap(analyzer, picture.to_ndarray(format="rgb24")))
    pieces: list[np.ndarray] = []
    start: float | None = None
    with av.open(io.BytesIO(data), "r") as container:
        rate = container.streams.audio[0].codec_context.sample_rate
        for sound in container.decode(audio=0):
            if start is None:
                start = float(sound.time or 0.0)
            pieces.append(mono_samples(sound))
    samples = np.concatenate(pieces)
    t = np.array(times)
    grid = np.arange(t[0], t[-1], 1 / FRAME_RATE)
    ok = ~np.isnan(gaps)
    lips = np.interp(grid, t[ok], np.array(gaps)[ok])
    energy = energy_envelope(samples, rate, grid - (start or 0.0))
    lag, scores = best_lag(lips, energy)
    return {
        "offset_frames": lag,
        "offset_ms": 1000 * refined_lag(lag, scores) / FRAME_RATE,
        "peak_correlation": max(scores),
        "frames": len(times),
        "undetected_frames": int((~ok).sum()),
        "seconds": float(t[-1] - t[0]),
    }
