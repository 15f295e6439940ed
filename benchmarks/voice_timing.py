"""How far each synthetic voice's audio runs behind its own phone timing.

    python benchmarks/voice_timing.py [--sentences 15]

The corpus and the lip-sync evaluation take each engine's phone timing as exact (mbrola's
.pho, flite's -psdur, espeak-ng's phoneme events). This checks it against the audio: in every
stop (p, b, t, d, k, g) the energy falls to a minimum during the closure, and the median lag of
that minimum behind the phone's centre is compared across voices (5 ms frames, 3-frame
smoothing, phones of at least 40 ms). The engines place a stop's closure differently within
its phone, so compare a voice with others of its engine. Writes
benchmarks/results/voice_timing.json.
"""

import argparse
import sys

import numpy as np

from spacelive import MODEL_SAMPLE_RATE
from spacelive.checks.bench import write_result
from spacelive.training.corpus import HELD_OUT, SentenceMaker, synthesize, training_voices

STOPS = {"P", "B", "T", "D", "K", "G"}
HOP = MODEL_SAMPLE_RATE // 200  # 5 ms


def closure_lags(samples: np.ndarray, phones) -> list[float]:
    """Seconds from each long stop's centre to the energy minimum around it."""
    frames = samples[: len(samples) // HOP * HOP].reshape(-1, HOP)
    level = 10 * np.log10((frames.astype(np.float64) ** 2).mean(axis=1) + 1e-12)
    level = np.convolve(level, np.ones(3) / 3, mode="same")
    lags = []
    for phone in phones:
        if phone.phoneme not in STOPS or phone.end_s - phone.start_s < 0.04:
            continue
        first = max(int((phone.start_s - 0.04) * MODEL_SAMPLE_RATE / HOP), 0)
        last = int((phone.end_s + 0.04) * MODEL_SAMPLE_RATE / HOP)
        around = level[first:last]
        if len(around) > 3:
            lowest = (first + int(np.argmin(around)) + 0.5) * HOP / MODEL_SAMPLE_RATE
            lags.append(lowest - (phone.start_s + phone.end_s) / 2)
    return lags


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sentences", type=int, default=15)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    sentences = SentenceMaker()
    report: dict = {"benchmark": "voice_timing", "sentences": args.sentences, "voices": {}}
    for voice in (*training_voices(), *HELD_OUT):
        lags = []
        for _ in range(args.sentences):
            samples, phones = synthesize(voice, sentences.sentence(voice.language, rng), rng)
            lags += closure_lags(samples, phones)
        lags_ms = 1000 * np.array(lags)
        report["voices"][voice.key] = {
            "stops": len(lags),
            "closure_lag_ms_median": float(np.median(lags_ms)),
            "closure_lag_ms_iqr": [float(np.percentile(lags_ms, q)) for q in (25, 75)],
            "held_out": voice in HELD_OUT,
        }
        print(voice.key, report["voices"][voice.key], flush=True)
    write_result("voice_timing", report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
