"""Offline rendering of a long WAV: exact frame count and speed.

    python benchmarks/offline_render.py [--minutes 10] [--models DIR] [--label NAME]

Writes benchmarks/results/offline_render_LABEL.json with the frame count read back from the MP4.
"""

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import av

from spacelive.checks.bench import speech_like, write_result
from spacelive.media.audio import write_wav
from spacelive.stream.engine import DEFAULT_MODELS, DEFAULT_PORTRAIT, Engine, EngineConfig
from spacelive.stream.offline import render_file


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--models", default=str(DEFAULT_MODELS))
    parser.add_argument("--label", default="default")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        wav, out = Path(tmp) / "long.wav", Path(tmp) / "long.mp4"
        write_wav(wav, speech_like(60 * args.minutes), 16_000)
        engine = Engine(EngineConfig(models=Path(args.models)))
        t0 = time.perf_counter()
        frames = len(render_file(engine, DEFAULT_PORTRAIT, wav, out))
        seconds = time.perf_counter() - t0
        with av.open(str(out)) as container:
            video, sound = container.streams.video[0], container.streams.audio[0]
            result = {
                "benchmark": "offline_render",
                "label": args.label,
                "models": args.models,
                "audio_seconds": 60 * args.minutes,
                "frames_rendered": frames,
                "frames_in_mp4": video.frames,
                "expected_frames": round(60 * args.minutes * 30),
                "video_seconds": float(video.duration * video.time_base),
                "audio_track_seconds": float(sound.duration * sound.time_base),
                "wall_seconds": seconds,
                "ms_per_frame": 1000 * seconds / frames,
                "x_realtime": 60 * args.minutes / seconds,
            }
    write_result(f"offline_render_{args.label}", result)
    print(json.dumps(result, indent=2))
    return 0 if result["frames_in_mp4"] == result["expected_frames"] else 1


if __name__ == "__main__":
    sys.exit(main())
