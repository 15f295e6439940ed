"""How the face-motion teacher's mouth moves: the articulators' inertia against a bare
dominance blend.

    python benchmarks/teacher_motion.py [--utterances 20]

On sentences from two training voices (mbrola us1, flite kal16; no model is involved), for
the shipped teacher and for the same blend without smoothing: the inner-lip gap's
correlation with itself one frame later, its mean speed, the gap at the centre of every
p/b/m (closure) and of every open vowel, and the lip-sync metrics of the teacher delayed by
one frame against itself (how hard one frame of timing error is punished). Writes
benchmarks/results/teacher_motion.json.
"""

import argparse
import json
import sys

import numpy as np

from spacelive.checks.bench import write_result
from spacelive.face.head_model import face_model
from spacelive.face.landmarks import MESH_TO_SPARSE, closed_mouth, inner_lip_gap
from spacelive.training import teacher
from spacelive.training.corpus import SentenceMaker, Voice, synthesize
from spacelive.training.lipsync_eval import metrics

VOICES = (Voice("mbrola", "us1", "en"), Voice("flite", "kal16", "en"))
OPEN_VOWELS = ("AA", "AE", "AY", "AW", "AH")


def describe(utterances: list, identity: np.ndarray) -> dict:
    lag1, speed, closures, openings, delayed = [], [], [], [], []
    for duration, phones in utterances:
        frames = teacher.landmark_targets(phones, identity, None, duration)
        gap = inner_lip_gap(frames)
        lag1.append(np.corrcoef(gap[1:], gap[:-1])[0, 1])
        speed.append(np.abs(np.diff(gap)).mean() * 30)
        for phone in phones:
            k = int(round((phone.start_s + phone.end_s) / 2 * 30))
            if k < len(gap) and phone.phoneme in ("P", "B", "M"):
                closures.append(gap[k])
            if k < len(gap) and phone.phoneme in OPEN_VOWELS:
                openings.append(gap[k])
        delayed.append(metrics(np.concatenate([frames[:1], frames[:-1]]), frames))
    return {
        "gap_lag1_autocorrelation": float(np.mean(lag1)),
        "gap_speed_per_s": float(np.mean(speed)),
        "bilabial_gap": {"mean": float(np.mean(closures)), "max": float(np.max(closures))},
        "open_vowel_gap_mean": float(np.mean(openings)),
        "one_frame_late": {k: float(np.mean([d[k] for d in delayed])) for k in delayed[0]},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--utterances", type=int, default=20)
    args = parser.parse_args()
    identity = closed_mouth(face_model()[MESH_TO_SPARSE])
    sentences = SentenceMaker()
    utterances = []
    for voice in VOICES:
        for i in range(args.utterances):
            rng = np.random.default_rng([2024, i])
            samples, phones = synthesize(voice, sentences.sentence("en", rng), rng)
            utterances.append((len(samples) / 16_000, phones))
    shipped = teacher.INERTIA_S.copy()
    report = {"benchmark": "teacher_motion", "voices": [v.key for v in VOICES]}
    report["with_inertia"] = {"inertia_s": shipped.tolist(), **describe(utterances, identity)}
    teacher.INERTIA_S = np.zeros_like(shipped)
    try:
        report["bare_dominance_blend"] = describe(utterances, identity)
    finally:
        teacher.INERTIA_S = shipped
    write_result("teacher_motion", report)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
