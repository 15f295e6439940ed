"""How much of the lip-sync score is timing: the metrics with the landmarks moved in time.

    python benchmarks/lipsync_timing.py [--models DIR] [--utterances 20]

Per voice (training voices mbrola us1 and flite kal16 with sentences the corpus never had,
and the held-out mbrola us3 and flite slt), the same sentences as
``benchmarks/lipsync_heldout.py``. Two measurements, as improvements over the energy baseline
(the issue asks >= 40 % on M-P and M-V) and inner-lip correlation:

- **model shifted**: the streamed S2L landmarks with frame t taken from t + s (s > 0: the
  model's later output, as if it lagged); half frames interpolate linearly between neighbours;
- **teacher shifted**: the teacher's own targets moved by s: a perfect model whose timing is
  off by s frames.

Nothing is fitted: this only reads how sharply the metrics fall off with timing. Writes
benchmarks/results/lipsync_timing.json.
"""

import argparse
import sys
from pathlib import Path

import numpy as np

from spacelive.checks.bench import write_result
from spacelive.face.analysis import FaceAnalyzer
from spacelive.stream.engine import DEFAULT_MODELS, DEFAULT_PORTRAIT, Engine, EngineConfig
from spacelive.training.corpus import HELD_OUT, SentenceMaker, Voice, synthesize
from spacelive.training.lipsync_eval import landmark_tracks, metrics

VOICES = (Voice("mbrola", "us1", "en"), Voice("flite", "kal16", "en"), *HELD_OUT)
MODEL_SHIFTS = (-1.0, -0.5, 0.0, 0.5, 1.0)
TEACHER_SHIFTS = (0.5, 1.0)


def shifted(landmarks: np.ndarray, frames: float) -> np.ndarray:
    """(T, 110, 3) landmarks whose frame t is the input's t + frames (linear between frames,
    the ends held)."""
    t = np.clip(np.arange(len(landmarks)) + frames, 0, len(landmarks) - 1)
    lo = np.floor(t).astype(int)
    hi = np.minimum(lo + 1, len(landmarks) - 1)
    w = (t - lo)[:, None, None]
    return landmarks[lo] * (1 - w) + landmarks[hi] * w


def summary(scores: list[dict], baseline: list[dict]) -> dict:
    mean = {k: float(np.mean([s[k] for s in scores])) for k in ("M-P", "M-V")}
    base = {k: float(np.mean([s[k] for s in baseline])) for k in ("M-P", "M-V")}
    return {
        "M-P_vs_baseline": 1 - mean["M-P"] / base["M-P"],
        "M-V_vs_baseline": 1 - mean["M-V"] / base["M-V"],
        "mouth_open_corr": float(np.mean([s["mouth_open_corr"] for s in scores])),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=str(DEFAULT_MODELS))
    parser.add_argument("--utterances", type=int, default=20)
    parser.add_argument("--seed", type=int, default=12345)
    args = parser.parse_args()
    motion = Engine(EngineConfig(models=Path(args.models))).motion
    avatar = FaceAnalyzer().analyze(DEFAULT_PORTRAIT.read_bytes())
    sentences = SentenceMaker()
    report: dict = {"benchmark": "lipsync_timing", "models": args.models, "voices": {}}
    for voice in VOICES:
        runs = []
        for i in range(args.utterances):
            rng = np.random.default_rng([args.seed, i])
            samples, phones = synthesize(voice, sentences.sentence("en", rng), rng)
            runs.append(landmark_tracks(motion, avatar, samples, phones))
        baseline = [metrics(u.baseline, u.target) for u in runs]
        report["voices"][voice.key] = {
            "held_out": voice in HELD_OUT,
            "model_shifted": {
                f"{s:+.1f}": summary(
                    [metrics(shifted(u.predicted, s), u.target) for u in runs], baseline
                )
                for s in MODEL_SHIFTS
            },
            "teacher_shifted": {
                f"{s:+.1f}": summary(
                    [metrics(shifted(u.target, s), u.target) for u in runs], baseline
                )
                for s in TEACHER_SHIFTS
            },
        }
    write_result("lipsync_timing", report)
    for key, voice in report["voices"].items():
        print(key)
        for kind in ("model_shifted", "teacher_shifted"):
            for s, m in voice[kind].items():
                print(
                    f"  {kind:15s} {s}: M-P {m['M-P_vs_baseline']:+.2f} "
                    f"M-V {m['M-V_vs_baseline']:+.2f} corr {m['mouth_open_corr']:.2f}"
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
