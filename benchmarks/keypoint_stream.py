"""Keypoint output against video: bitrate, and how closely the reference receiver's frames
match the server's, on held-out speech.

    python benchmarks/keypoint_stream.py [--models DIR] [--seconds 20]

For each held-out voice (mbrola us3, flite slt) and two sets of controls (the defaults; and
happy 0.5 with a fixed gaze, saccades and 30 blinks a minute), one session streams the audio
as video and one as keypoints (the same engine, audio and seed: the frames a server sends).
The keypoint frames are rendered by ``spacelive.client.keypoints.KeypointReceiver``; the video
is decoded. Reports both bitrates (8-byte frame headers included), PSNR per frame (min, p5,
mean) and the one-time setup size. Writes benchmarks/results/keypoint_stream.json; exits 1
if a stream exceeds 16 kbit/s or a frame falls under 35 dB.
"""

import argparse
import json
import sys
from pathlib import Path

import av
import numpy as np

from spacelive import FRAME_RATE, MODEL_SAMPLE_RATE
from spacelive.checks.bench import write_result
from spacelive.client.keypoints import KeypointReceiver
from spacelive.face.analysis import FaceAnalyzer
from spacelive.face.landmarks import EMOTIONS
from spacelive.media.audio import pcm_s16le
from spacelive.media.audio_input import AudioSpec
from spacelive.media.video import EncodedFrame
from spacelive.motion.controls import ControlUpdate
from spacelive.motion.keypoints import rig_json
from spacelive.stream.engine import DEFAULT_MODELS, DEFAULT_PORTRAIT, Engine, EngineConfig
from spacelive.training.corpus import HELD_OUT, SentenceMaker, synthesize

HAPPY = np.zeros(len(EMOTIONS), np.float32)
HAPPY[EMOTIONS.index("happy")] = 0.5
CONTROLS = {
    "defaults": ControlUpdate(),
    "happy_gaze_saccades_blinks": ControlUpdate(
        emotion=HAPPY, gaze=(0.3, -0.1), saccades=True, blinks_per_minute=30
    ),
}


def stream(engine, avatar, samples, controls, output):
    """The frames of one stream fed 20 ms chunks, as a microphone sends them."""
    stream = engine.open_stream(avatar, AudioSpec(), controls, seed=1, output=output)
    pcm, step = pcm_s16le(samples), 2 * 320
    for start in range(0, len(pcm), step):
        stream.push_audio(pcm[start : start + step])
    stream.end()
    frames = [item for item in stream if isinstance(item, EncodedFrame)]
    stream.close()
    return frames


def kbps(frames) -> float:
    return 8 * sum(8 + len(f.data) for f in frames) / (len(frames) / FRAME_RATE) / 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=str(DEFAULT_MODELS))
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    engine = Engine(EngineConfig(models=Path(args.models)))
    basis = engine.motion.stages.motion_basis
    if basis is None:
        sys.exit(f"{args.models} has no motion basis; run `spacelive train basis`")
    avatar = FaceAnalyzer().analyze(DEFAULT_PORTRAIT.read_bytes())
    setup = {"rig": rig_json(avatar), "basis": basis.to_json()}
    report: dict = {
        "benchmark": "keypoint_stream",
        "models": args.models,
        "setup_bytes": len(json.dumps(setup)),
        "runs": {},
    }
    sentences = SentenceMaker()
    for v, voice in enumerate(HELD_OUT):
        rng = np.random.default_rng([31, v])
        pieces: list[np.ndarray] = []
        while sum(len(p) for p in pieces) < args.seconds * MODEL_SAMPLE_RATE:
            pieces.append(synthesize(voice, sentences.sentence("en", rng), rng)[0])
        samples = np.concatenate(pieces)
        for name, controls in CONTROLS.items():
            video = stream(engine, avatar, samples, controls, "h264")
            keypoints = stream(engine, avatar, samples, controls, "keypoints")
            receiver = KeypointReceiver(setup, avatar.image)
            codec = av.CodecContext.create("h264", "r")
            psnr = []
            for f, k in zip(video, keypoints, strict=True):
                (picture,) = codec.decode(av.Packet(f.data))
                sent = picture.to_ndarray(format="rgb24").astype(np.float64)
                error = np.mean((sent - receiver.render(k).astype(np.float64)) ** 2)
                psnr.append(10 * np.log10(255**2 / max(error, 1e-12)))
            report["runs"][f"{voice.key} {name}"] = {
                "frames": len(video),
                "keypoint_kbps": kbps(keypoints),
                "video_kbps": kbps(video),
                "psnr_db": {
                    "min": float(np.min(psnr)),
                    "p5": float(np.percentile(psnr, 5)),
                    "mean": float(np.mean(psnr)),
                },
            }
    report["passed"] = all(
        r["keypoint_kbps"] <= 16 and r["psnr_db"]["min"] >= 35 for r in report["runs"].values()
    )
    write_result("keypoint_stream", report)
    print(json.dumps(report, indent=2))
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
