"""Real-time streaming latency, end to end over loopback.

Starts `spacelive serve` in its own process on a free port, streams a WAV with
`spacelive stream --realtime` (20 ms chunks paced like a microphone), and writes the client's
statistics plus the server's per-stage timings to benchmarks/results/.

    python benchmarks/stream_latency.py [--models DIR] [--seconds 10] [--label NAME]
"""

import argparse
import json
import platform
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

from spacelive.audio import write_wav
from spacelive.client.stream import run_stream
from spacelive.engine import DEFAULT_MODELS

RESULTS = Path(__file__).resolve().parent / "results"


def speech_like(seconds: float, rate: int = 16_000, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    syllables = np.sin(2 * np.pi * 4 * t) > -0.2
    voiced = 0.3 * np.sin(2 * np.pi * np.cumsum(120 + 30 * np.sin(2 * np.pi * 0.5 * t)) / rate)
    return ((voiced + 0.03 * rng.standard_normal(t.size)) * syllables).astype(np.float32)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=str(DEFAULT_MODELS))
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--label", default="default")
    args = parser.parse_args()

    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "spacelive.cli",
            "--log-level",
            "warning",
            "serve",
            "--port",
            str(port),
            "--models",
            args.models,
        ],
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError("server did not start") from None
                time.sleep(0.2)
        with tempfile.TemporaryDirectory() as tmp:
            wav = Path(tmp) / "speech.wav"
            write_wav(wav, speech_like(args.seconds), 16_000)
            stats = run_stream(
                f"ws://127.0.0.1:{port}/v1/stream", wav, Path(tmp) / "out.mp4", realtime=True
            )
    finally:
        server.terminate()
        server.wait(timeout=30)
    result = {
        "benchmark": "stream_latency",
        "label": args.label,
        "models": args.models,
        "machine": {"cpus": __import__("os").cpu_count(), "python": platform.python_version()},
        "algorithmic_floor_ms": 1000 * (4 / 30 + 512 / 16_000),
        **stats,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"stream_latency_{args.label}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
