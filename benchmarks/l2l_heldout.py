"""Landmarks2Latents against its teacher on voices the training never used.

    python benchmarks/l2l_heldout.py --checkpoint runs/l2l/checkpoint.pt [--utterances 10]

Per held-out voice (mbrola us3, flite slt), sentences are synthesized and heard by the bundled
audio encoder (as a stream hears them); for each public-domain portrait (its real detected
mesh, not perturbed) the L2L teacher (``spacelive.training.train_l2l.teacher_example``: the
lip-sync teacher's mouth, the head-motion teacher's pose, blinks, a gaze, an emotion) gives the
posed landmarks and the dense keypoints. The checkpoint's L2L runs free on its own previous
keypoints from the portrait's. Reported: the keypoint error in pixels of the 512 frame (mean,
p95, max; all 478 points and the inner-lip points), next to the error of never moving from
the portrait. Writes benchmarks/results/l2l_heldout.json.
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from spacelive.audio import offline_mfcc
from spacelive.bench import write_result
from spacelive.engine import DEFAULT_MODELS
from spacelive.face import FaceAnalyzer, normalize_landmarks
from spacelive.landmarks import EMOTIONS, LOWER_INNER_LIP, UPPER_INNER_LIP
from spacelive.models.landmarks2latents import Landmarks2Latents
from spacelive.models.widths import width_named
from spacelive.render_checks import standard_portraits
from spacelive.runners import load_stages
from spacelive.training.corpus import HELD_OUT, SentenceMaker, synthesize
from spacelive.training.encoder_features import encode_audio
from spacelive.training.train_l2l import PIXELS, teacher_example
from spacelive.training.train_posegen import PoseUtterance

LIPS = sorted(set(UPPER_INNER_LIP + LOWER_INNER_LIP))


def summary(errors: np.ndarray) -> dict:
    """errors: per point and frame, pixels."""
    return {
        "mean_px": float(errors.mean()),
        "p95_px": float(np.percentile(errors, 95)),
        "max_px": float(errors.max()),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--models", default=str(DEFAULT_MODELS), help="whose audio encoder")
    parser.add_argument("--utterances", type=int, default=10)
    args = parser.parse_args()
    stages = load_stages(Path(args.models))
    model = Landmarks2Latents(width_named(stages.manifest["width"]))
    checkpoint = torch.load(args.checkpoint, map_location="cpu")
    model.load_state_dict(checkpoint["model"])
    model.eval()
    analyzer = FaceAnalyzer()
    faces = {}
    for name, data in standard_portraits().items():
        avatar = analyzer.analyze(data)
        faces[name] = normalize_landmarks(avatar.kp_source, avatar.pose)
    sentences = SentenceMaker()
    report: dict = {
        "benchmark": "l2l_heldout",
        "checkpoint": args.checkpoint,
        "step": int(checkpoint.get("step", -1)),
        "voices": {},
    }
    for v, voice in enumerate(HELD_OUT):
        rng = np.random.default_rng([515, v])
        errors, still, lips, lips_still = [], [], [], []
        for _ in range(args.utterances):
            samples, phones = synthesize(voice, sentences.sentence("en", rng), rng)
            (features,) = encode_audio(stages, [offline_mfcc(samples)])
            utterance = PoseUtterance(features, samples, phones)
            frames = len(features)
            for face in faces.values():
                emotion = np.zeros(len(EMOTIONS), np.float32)
                if rng.random() < 0.6:
                    emotion[rng.integers(1, len(EMOTIONS))] = rng.uniform(0.3, 1.0)
                posed, kp_source, target = teacher_example(face, utterance, 0, frames, emotion, rng)
                with torch.no_grad():
                    predicted = model(
                        torch.from_numpy(features[None].astype(np.float32)),
                        torch.from_numpy(posed[None].astype(np.float32)),
                        torch.from_numpy(kp_source[None].astype(np.float32)),
                        torch.from_numpy(np.repeat(emotion[None, None], frames, axis=1)),
                    )[0].numpy()
                error = np.linalg.norm(predicted - target, axis=-1) * PIXELS  # (T, 478)
                baseline = np.linalg.norm(kp_source[None] - target, axis=-1) * PIXELS
                errors.append(error.ravel())
                still.append(baseline.ravel())
                lips.append(error[:, LIPS].ravel())
                lips_still.append(baseline[:, LIPS].ravel())
        report["voices"][voice.key] = {
            "all_points": summary(np.concatenate(errors)),
            "lip_points": summary(np.concatenate(lips)),
            "portrait_still_all_points": summary(np.concatenate(still)),
            "portrait_still_lip_points": summary(np.concatenate(lips_still)),
            "utterances": args.utterances,
            "portraits": len(faces),
        }
    write_result("l2l_heldout", report)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
