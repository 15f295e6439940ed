"""A/V sync: the offset between the rendered lips and the audio, on held-out voices.

    python benchmarks/av_sync.py [--models DIR] [--seconds 30]

Per held-out voice (mbrola us3, flite slt), about 30 s of sentences are rendered exactly as a
stream delivers them (``spacelive.stream.offline.render_frames``: the same frames, byte for
byte), the H.264 is decoded, the inner-lip gap is re-detected on every frame with MediaPipe, and its
cross-correlation with the audio's energy envelope (RMS over each frame's 1/30 s) is taken
over lags of up to 10 frames. The lag of the peak is the offset (positive: the lips trail the
audio); ``offset_ms`` places the peak between frames (a parabola through its neighbours).
The MP4 the client writes places frame k at k/30 s and the audio at 0, so this is also the
MP4's offset. Writes benchmarks/results/av_sync.json; exits 1 beyond +-1 frame.
"""

import argparse
import json
import sys
from pathlib import Path

import av
import numpy as np

from spacelive import FRAME_RATE, MODEL_SAMPLE_RATE
from spacelive.checks.bench import write_result
from spacelive.checks.sync import MAX_LAG, best_lag, energy_envelope, lip_gap, refined_lag
from spacelive.face.analysis import FaceAnalyzer
from spacelive.motion.controls import ControlUpdate
from spacelive.stream.engine import DEFAULT_MODELS, DEFAULT_PORTRAIT, Engine, EngineConfig
from spacelive.stream.offline import render_frames
from spacelive.training.corpus import HELD_OUT, SentenceMaker, synthesize


def lip_gaps(frames, analyzer: FaceAnalyzer) -> np.ndarray:
    """(frames,) re-detected inner-lip gap of each encoded frame, decoded."""
    codec = av.CodecContext.create("h264", "r")
    gaps = []
    for f in frames:
        for picture in codec.decode(av.Packet(f.data)):
            gaps.append(lip_gap(analyzer, picture.to_ndarray(format="rgb24")))
    return np.array(gaps)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=str(DEFAULT_MODELS))
    parser.add_argument("--seconds", type=float, default=30.0)
    args = parser.parse_args()
    engine = Engine(EngineConfig(models=Path(args.models)))
    analyzer = FaceAnalyzer()
    sentences = SentenceMaker()
    portrait = DEFAULT_PORTRAIT.read_bytes()
    # The head held still and no blinks: the lips are what moves.
    update = ControlUpdate(blinks_per_minute=0, pose_mode="fixed")
    report: dict = {"benchmark": "av_sync", "models": args.models, "voices": {}}
    for v, voice in enumerate(HELD_OUT):
        rng = np.random.default_rng([777, v])
        pieces: list[np.ndarray] = []
        while sum(len(p) for p in pieces) < args.seconds * MODEL_SAMPLE_RATE:
            samples, _ = synthesize(voice, sentences.sentence("en", rng), rng)
            pieces += [
                samples,
                np.zeros(int(rng.uniform(0.1, 0.6) * MODEL_SAMPLE_RATE), np.float32),
            ]
        audio = np.concatenate(pieces)
        frames = render_frames(engine, portrait, audio, MODEL_SAMPLE_RATE, update)
        lips = lip_gaps(frames, analyzer)
        times = np.arange(len(frames)) / FRAME_RATE  # frame k shows audio time k/30 s
        lag, scores = best_lag(lips, energy_envelope(audio, MODEL_SAMPLE_RATE, times))
        report["voices"][voice.key] = {
            "offset_frames": lag,
            "offset_ms": 1000 * refined_lag(lag, scores) / FRAME_RATE,
            "peak_correlation": max(scores),
            "correlation_by_lag": dict(zip(range(-MAX_LAG, MAX_LAG + 1), scores, strict=True)),
            "frames": len(frames),
            "undetected_frames": int(np.isnan(lips).sum()),
        }
    report["passed"] = all(abs(v["offset_frames"]) <= 1 for v in report["voices"].values())
    write_result("av_sync", report)
    print(json.dumps(report, indent=2))
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
