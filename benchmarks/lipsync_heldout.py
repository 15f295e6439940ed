"""Lip sync on voices the training never used: mbrola us3 and flite slt.

    python benchmarks/lipsync_heldout.py [--models DIR] [--utterances 20] [--label NAME]
        [--voices mbrola:us1,flite:kal16] [--portrait grace_hopper] [--teacher-shift-ms 20]

Synthesizes held-out sentences (clean, with exact timing), runs the exported S2L in streaming
mode, and compares with the teacher and the energy baseline (`spacelive eval lipsync` on
each). Writes benchmarks/results/lipsync_heldout_LABEL.json with per-voice means and the
improvement over the baseline, and how far each standard portrait's lips drift in 3 s of
silence. ``--voices`` evaluates other English voices instead: training voices, with sentences
the corpus never had, are where to choose between training runs, so that the held-out voices
stay unseen by every decision. ``--portrait`` speaks with another standard portrait than the
bundled default (the astronaut, who smiles with parted lips: closed while she speaks, her own
mouth again when idle).
``--teacher-shift-ms`` delays the teacher's phones against the audio, to measure how much of a
voice's score is its timing (``benchmarks/voice_timing.py``: mbrola us3's audio runs late).
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from spacelive.checks.bench import write_result
from spacelive.face.analysis import FaceAnalyzer
from spacelive.face.portraits import standard_portraits
from spacelive.stream.engine import DEFAULT_MODELS, DEFAULT_PORTRAIT, Engine, EngineConfig
from spacelive.training.alignment import Phone
from spacelive.training.corpus import HELD_OUT, SentenceMaker, parse_voices, synthesize
from spacelive.training.lipsync_eval import evaluate, silence_drift

KEYS = ("M-P", "M-V", "F-P", "F-V", "mouth_open_corr")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=str(DEFAULT_MODELS))
    parser.add_argument("--utterances", type=int, default=20)
    parser.add_argument("--label", default="default")
    parser.add_argument("--seed", type=int, default=12345)
    parser.add_argument("--voices", help="engine:name,... (English voices; default: held out)")
    parser.add_argument("--portrait", choices=sorted(standard_portraits()), help="default: bundled")
    parser.add_argument(
        "--teacher-shift-ms", type=float, default=0.0, help="delay the teacher's phones by this"
    )
    args = parser.parse_args()
    try:
        voices = parse_voices(args.voices) if args.voices else HELD_OUT
    except ValueError as error:
        parser.error(f"--voices {error}")
    motion = Engine(EngineConfig(models=Path(args.models))).motion
    analyzer = FaceAnalyzer()
    portrait = (
        standard_portraits()[args.portrait] if args.portrait else DEFAULT_PORTRAIT.read_bytes()
    )
    avatar = analyzer.analyze(portrait)
    sentences = SentenceMaker()
    report: dict = {
        "benchmark": "lipsync_heldout",
        "models": args.models,
        "portrait": args.portrait or "default",
        "teacher_shift_ms": args.teacher_shift_ms,
        "voices": {},
    }
    shift = args.teacher_shift_ms / 1000
    for voice in voices:
        results = []
        for i in range(args.utterances):
            rng = np.random.default_rng([args.seed, i])
            samples, phones = synthesize(voice, sentences.sentence("en", rng), rng)
            phones = [Phone(p.phoneme, p.start_s + shift, p.end_s + shift) for p in phones]
            results.append(evaluate(motion, avatar, samples, phones))
        summary = {
            side: {k: float(np.mean([r[side][k] for r in results])) for k in KEYS}
            for side in ("model", "energy_baseline")
        }
        summary["improvement_over_baseline"] = {
            k: 1 - summary["model"][k] / summary["energy_baseline"][k] for k in ("M-P", "M-V")
        }
        summary["frames"] = int(sum(r["frames"] for r in results))
        report["voices"][voice.key] = summary
    report["passed"] = all(
        v["improvement_over_baseline"]["M-P"] >= 0.4
        and v["improvement_over_baseline"]["M-V"] >= 0.4
        and v["model"]["mouth_open_corr"] >= 0.8
        for v in report["voices"].values()
    )
    report["silence"] = {
        name: {"inner_lip_gap_change": silence_drift(motion, analyzer.analyze(data))}
        for name, data in standard_portraits().items()
    }
    write_result(f"lipsync_heldout_{args.label}", report)
    print(json.dumps(report, indent=2))
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
