"""Lip sync with Opus input against PCM of the same speech, on held-out voices.

    python benchmarks/opus_lipsync.py [--models DIR] [--utterances 20] [--bitrate 24000]

Each held-out sentence (mbrola us3, flite slt) is evaluated twice in one run, as
`spacelive eval lipsync` does: from its PCM, and from Opus at the bitrate, packets of 20 ms
(as WebCodecs' AudioEncoder sends them) decoded by the server's own path (libopus, pre-skip
cut, resampled to 16 kHz). Reports the issue-4 metrics for both, the relative change, and
the Opus bitrate. Writes benchmarks/results/opus_lipsync.json; exits 1 when a metric degrades
by 10% or more.
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from spacelive import MODEL_SAMPLE_RATE
from spacelive.checks.bench import write_result
from spacelive.client.opus import opus_packets
from spacelive.face.analysis import FaceAnalyzer
from spacelive.media.audio import Resampler
from spacelive.media.audio_input import AudioSpec, open_input
from spacelive.stream.engine import DEFAULT_MODELS, DEFAULT_PORTRAIT, Engine, EngineConfig
from spacelive.training.corpus import HELD_OUT, SentenceMaker, synthesize
from spacelive.training.lipsync_eval import evaluate

ERRORS = ("M-P", "M-V", "F-P", "F-V")  # lower is better
LIMIT = 0.10


def through_opus(samples: np.ndarray, bitrate: int) -> tuple[np.ndarray, int]:
    """16 kHz float audio -> (what the server hears after Opus, 16 kHz; bytes sent)."""
    packets, pre_skip = opus_packets(samples, MODEL_SAMPLE_RATE, bitrate)
    decoder = open_input(AudioSpec("opus", 48_000, 1, "packets", pre_skip))
    resampler = Resampler(decoder.sample_rate)
    pieces = [resampler.push(decoder.decode(p)) for p in packets]
    pieces.append(resampler.finish())
    return np.concatenate(pieces)[: len(samples)], sum(len(p) for p in packets)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=str(DEFAULT_MODELS))
    parser.add_argument("--utterances", type=int, default=20)
    parser.add_argument("--bitrate", type=int, default=24_000)
    parser.add_argument("--seed", type=int, default=12345)
    args = parser.parse_args()
    motion = Engine(EngineConfig(models=Path(args.models))).motion
    avatar = FaceAnalyzer().analyze(DEFAULT_PORTRAIT.read_bytes())
    sentences = SentenceMaker()
    report: dict = {
        "benchmark": "opus_lipsync",
        "models": args.models,
        "bitrate": args.bitrate,
        "voices": {},
    }
    for voice in HELD_OUT:
        pcm, opus, sent, seconds = [], [], 0, 0.0
        for i in range(args.utterances):
            rng = np.random.default_rng([args.seed, i])
            samples, phones = synthesize(voice, sentences.sentence("en", rng), rng)
            heard, size = through_opus(samples, args.bitrate)
            pcm.append(evaluate(motion, avatar, samples, phones)["model"])
            opus.append(evaluate(motion, avatar, heard, phones)["model"])
            sent += size
            seconds += len(samples) / MODEL_SAMPLE_RATE
        keys = (*ERRORS, "mouth_open_corr")
        mean_pcm = {k: float(np.mean([r[k] for r in pcm])) for k in keys}
        mean_opus = {k: float(np.mean([r[k] for r in opus])) for k in keys}
        change = {k: mean_opus[k] / mean_pcm[k] - 1 for k in keys}
        report["voices"][voice.key] = {
            "pcm": mean_pcm,
            "opus": mean_opus,
            "relative_change": change,
            "opus_kbps": 8 * sent / seconds / 1000,
            "seconds": seconds,
        }
    report["passed"] = all(
        v["relative_change"][k] < LIMIT for v in report["voices"].values() for k in ERRORS
    ) and all(v["relative_change"]["mouth_open_corr"] > -LIMIT for v in report["voices"].values())
    write_result("opus_lipsync", report)
    print(json.dumps(report, indent=2))
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
