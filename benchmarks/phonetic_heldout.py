"""Do the lips meet on p, b and m of voices the training never used (mbrola us3, flite slt)?

    python benchmarks/phonetic_heldout.py [--models DIR] [--utterances 20] [--label NAME]
        [--portraits default,grace_hopper] [--voices mbrola:us1,flite:kal16]

Synthesizes held-out sentences (clean, with exact phone timing), speaks each through the
motion stages as the server does, renders every frame and finds the face again, and scores
the inner-lip gap against the phones (``spacelive.training.phonetic_eval``): on the model's
landmarks and re-detected, per voice and portrait and pooled. Writes
benchmarks/results/phonetic_heldout_LABEL.json. ``--voices`` scores training voices instead
(new sentences), where training runs are compared, so that the held-out voices stay unseen by
every decision.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from spacelive.checks.bench import write_result
from spacelive.face.analysis import FaceAnalyzer
from spacelive.face.portraits import standard_portraits
from spacelive.render.renderer import WarpRenderer
from spacelive.stream.engine import DEFAULT_MODELS, DEFAULT_PORTRAIT, Engine, EngineConfig
from spacelive.training.corpus import HELD_OUT, SentenceMaker, parse_voices, synthesize
from spacelive.training.phonetic_eval import Counts, pool, score_track, track

SOURCES = ("landmarks", "redetected")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=str(DEFAULT_MODELS))
    parser.add_argument("--utterances", type=int, default=20)
    parser.add_argument("--label", default="default")
    parser.add_argument("--seed", type=int, default=12345)
    parser.add_argument("--portraits", default="default,grace_hopper")
    parser.add_argument("--voices", help="engine:name,... (English voices; default: held out)")
    args = parser.parse_args()
    try:
        voices = parse_voices(args.voices) if args.voices else HELD_OUT
    except ValueError as error:
        parser.error(f"--voices {error}")
    standard = standard_portraits()
    names = args.portraits.split(",")
    unknown = [n for n in names if n != "default" and n not in standard]
    if unknown:
        parser.error(f"--portraits: unknown {unknown}; use default or {sorted(standard)}")
    motion = Engine(EngineConfig(models=Path(args.models))).motion
    analyzer, renderer = FaceAnalyzer(), WarpRenderer()
    avatars = {
        n: analyzer.analyze(DEFAULT_PORTRAIT.read_bytes() if n == "default" else standard[n])
        for n in names
    }
    sentences = SentenceMaker()
    utterances = {}
    for voice in voices:
        utterances[voice.key] = []
        for i in range(args.utterances):
            rng = np.random.default_rng([args.seed, i])
            utterances[voice.key].append(synthesize(voice, sentences.sentence("en", rng), rng))
    report: dict = {"benchmark": "phonetic_heldout", "models": args.models, "runs": {}}
    overall = {source: Counts() for source in SOURCES}
    started = time.perf_counter()
    for name, avatar in avatars.items():
        for voice_key, spoken in utterances.items():
            counts = {source: Counts() for source in SOURCES}
            for samples, phones in spoken:
                for source, c in score_track(
                    track(motion, avatar, samples, renderer, analyzer), phones
                ).items():
                    counts[source].extend(c)
                    overall[source].extend(c)
            report["runs"][f"{voice_key} {name}"] = {s: pool(c) for s, c in counts.items()}
    report["overall"] = {s: pool(c) for s, c in overall.items()}
    report["seconds"] = time.perf_counter() - started
    write_result(f"phonetic_heldout_{args.label}", report)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
