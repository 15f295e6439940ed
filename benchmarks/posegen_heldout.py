"""Generated head motion on voices the training never used: mbrola us3 and flite slt.

    python benchmarks/posegen_heldout.py [--models DIR] [--seeds 5] [--label NAME]
                                         [--training-voices]

Per voice, held-out sentences are joined into a talk of about 20 s, 5 s of silence and 10 s
more talk; the exported stages stream it (mode ``generated``) once per seed. Reported, as
commanded (the pose the renderer is given), next to the head-motion teacher's on the same
speech and alignment: yaw/pitch/roll standard deviation, mean speed while speaking and while
silent, how far two seeds' motions differ, and the largest angle over a 2-minute stream (the
decoder must not drift). Writes benchmarks/results/posegen_heldout_LABEL.json.
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from spacelive import FRAME_RATE, MODEL_SAMPLE_RATE
from spacelive.checks.bench import write_result
from spacelive.face.analysis import FaceAnalyzer
from spacelive.media.audio import offline_mfcc
from spacelive.motion.controls import ControlUpdate
from spacelive.stream.engine import DEFAULT_MODELS, DEFAULT_PORTRAIT, Engine, EngineConfig
from spacelive.training.alignment import Phone
from spacelive.training.corpus import HELD_OUT, SentenceMaker, Voice, synthesize
from spacelive.training.head_motion import activity, head_motion

TRAINING = (Voice("mbrola", "us1", "en"), Voice("flite", "kal16", "en"))
"""``--training-voices``: for choosing between checkpoints without looking at held-out voices."""
AXES = ("yaw", "pitch", "roll")


def talk(voice: Voice, seconds: float, rng: np.random.Generator, sentences: SentenceMaker):
    """(samples, phones) of at least ``seconds`` of sentences joined end to end."""
    pieces, phones, t = [], [], 0.0
    while t < seconds:
        samples, sentence = synthesize(voice, sentences.sentence("en", rng), rng)
        phones += [Phone(p.phoneme, p.start_s + t, p.end_s + t) for p in sentence]
        pieces.append(samples)
        t += len(samples) / MODEL_SAMPLE_RATE
    return np.concatenate(pieces), phones


def statistics(degrees: np.ndarray, speaking: np.ndarray, silent: np.ndarray) -> dict:
    """degrees (T, 3); masks (T,) -> std per axis and mean speed (deg/s) speaking, silent."""
    speed = FRAME_RATE * np.linalg.norm(np.diff(degrees[:, :2], axis=0), axis=1)
    return {
        **{f"{a}_std_deg": float(degrees[:, i].std()) for i, a in enumerate(AXES)},
        "speed_speaking_deg_per_s": float(speed[speaking[1:]].mean()),
        "speed_silent_deg_per_s": float(speed[silent[1:]].mean()),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=str(DEFAULT_MODELS))
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--label", default="default")
    parser.add_argument("--training-voices", action="store_true", help="us1 and kal16 instead")
    args = parser.parse_args()
    motion = Engine(EngineConfig(models=Path(args.models))).motion
    avatar = FaceAnalyzer().analyze(DEFAULT_PORTRAIT.read_bytes())
    sentences = SentenceMaker()
    update = ControlUpdate(blinks_per_minute=0)
    report: dict = {"benchmark": "posegen_heldout", "models": args.models, "voices": {}}
    for v, voice in enumerate(TRAINING if args.training_voices else HELD_OUT):
        rng = np.random.default_rng([4242, v])
        first, first_phones = talk(voice, 20.0, rng, sentences)
        again, again_phones = talk(voice, 10.0, rng, sentences)
        pause = np.zeros(5 * MODEL_SAMPLE_RATE, np.float32)
        offset = (len(first) + len(pause)) / MODEL_SAMPLE_RATE
        samples = np.concatenate([first, pause, again])
        phones = first_phones + [
            Phone(p.phoneme, p.start_s + offset, p.end_s + offset) for p in again_phones
        ]
        mfcc = offline_mfcc(samples)
        frames = len(mfcc)
        level = activity(phones, frames)
        speaking, silent = level > 0.9, level < 0.2
        runs = []
        for seed in range(args.seeds):
            state = motion.new_state(avatar, update, seed)
            runs.append(np.degrees([m.pose[:3] for m in motion.run(state, mfcc)]))
        teacher = [
            np.degrees(head_motion(phones, samples, frames, np.random.default_rng(s))[:, :3])
            for s in range(args.seeds)
        ]
        model_stats = [statistics(r, speaking, silent) for r in runs]
        teacher_stats = [statistics(t, speaking, silent) for t in teacher]
        mean = lambda stats: {k: float(np.mean([s[k] for s in stats])) for k in stats[0]}  # noqa: E731
        long_state = motion.new_state(avatar, update, 0)
        long_run = np.degrees(
            [m.pose[:3] for m in motion.run(long_state, np.resize(mfcc, (120 * FRAME_RATE, 40)))]
        )
        report["voices"][voice.key] = {
            "seconds": frames / FRAME_RATE,
            "model": mean(model_stats),
            "teacher": mean(teacher_stats),
            "seed_difference_rms_deg": float(
                np.mean([np.sqrt(np.mean((runs[i] - runs[0]) ** 2)) for i in range(1, len(runs))])
            ),
            "two_minutes": {
                "largest_abs_deg": np.abs(long_run).max(axis=0).round(2).tolist(),
                "last_minute_std_deg": long_run[60 * FRAME_RATE :].std(axis=0).round(2).tolist(),
            },
        }
    write_result(f"posegen_heldout_{args.label}", report)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
