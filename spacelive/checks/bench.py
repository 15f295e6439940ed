"""`spacelive bench latency|throughput|stages`: measured, written to benchmarks/results/.

- ``latency``: a real server process and N websocket clients in their own processes, each
  streaming speech paced like a microphone (20 ms chunks). Per frame, latency is its arrival
  minus the sending of the chunk that holds its audio time (``StreamResult.latencies_ms``).
  Reports p50/p95/p99 over every session's frames, each session's fps, dropped frames, and
  the server process's CPU.
- ``throughput``: latency runs for N = 1, 2, ... until one fails; the answer is the largest N
  at which every session holds >= 29.5 fps with p99 <= 300 ms and no frame dropped.
- ``stages``: ms per frame of each stage at batch 1 (MFCC, audio encoder + S2L, PoseGen, the
  keypoint transfer, render, encode) at the realtime and paper widths, ONNX Runtime (fp32,
  and int8 weights as served: ``spacelive.motion.quantization``) and torch eager in the same
  run, and each recurrent stage batched over 1-8 sessions (what the batched engine buys).

The machine is shared: the clients of ``latency`` run on the server's cores, as they would
not in production, and every figure in one file comes from one run.
"""

import asyncio
import json
import logging
import multiprocessing
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

from spacelive.media.audio import FRAME_RATE, write_wav

log = logging.getLogger(__name__)

RESULTS = Path(__file__).resolve().parents[2] / "benchmarks" / "results"
ALGORITHMIC_FLOOR_MS = 1000 * (4 / FRAME_RATE + 512 / 16_000)
"""4 frames of encoder lookahead, plus the last MFCC window's 512 samples (32 ms)."""
SUSTAIN_FPS, SUSTAIN_P99_MS = 29.5, 300.0


def speech_like(seconds: float, rate: int = 16_000, seed: int = 0) -> np.ndarray:
    """(n,) float32 in [-1, 1]: voiced bursts (a 110-150 Hz glide with breath noise) at 2-5
    syllables a second with gaps, ``seconds`` long (rounded down); a stand-in a model reacts
    to, for tests and benchmarks."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    syllables = np.sin(2 * np.pi * rng.uniform(2, 5) * t + rng.uniform(0, 6)) > -0.2
    pitch = 110 + 40 * np.sin(2 * np.pi * 0.7 * t)
    voiced = 0.3 * np.sin(2 * np.pi * np.cumsum(pitch) / rate)
    noise = 0.05 * rng.standard_normal(t.size)
    return ((voiced + noise) * syllables).astype(np.float32)


def machine() -> dict:
    return {"cpus": os.cpu_count(), "python": platform.python_version()}


def rss_mb(pids: list[int]) -> float:
    """Resident memory of these processes together, MB."""
    total = 0
    for pid in pids:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total / 1024


def write_result(name: str, result: dict, results: Path = RESULTS) -> Path:
    results.mkdir(parents=True, exist_ok=True)
    path = results / f"{name}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    return path


# -- a server and its clients ---------------------------------------------------------------


class ServerProcess:
    """`spacelive serve` on a free loopback port, in its own process."""

    def __init__(self, models: Path | None, max_sessions: int, extra: tuple[str, ...] = ()):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        command = [sys.executable, "-m", "spacelive.cli", "--log-level", "warning", "serve"]
        command += ["--port", str(self.port), "--max-sessions", str(max_sessions), *extra]
        if models is not None:
            command += ["--models", str(models)]
        self.process = subprocess.Popen(command)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/v1/stream"

    def __enter__(self) -> "ServerProcess":
        deadline = time.monotonic() + 180
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=1)
                return self
            except OSError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    self.__exit__()
                    raise RuntimeError("the server did not start") from None
                time.sleep(0.2)

    def __exit__(self, *exc) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()

    def pids(self) -> list[int]:
        """The server and its render workers (its process tree)."""
        out, todo = [], [self.process.pid]
        while todo:
            pid = todo.pop()
            out.append(pid)
            for children in Path(f"/proc/{pid}/task").glob("*/children"):
                todo += [int(c) for c in children.read_text().split()]
        return out

    def cpu_seconds(self) -> float:
        """User + system CPU time the server's processes have used."""
        total = 0
        for pid in self.pids():
            try:
                stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except FileNotFoundError:
                continue
            total += int(stat[11]) + int(stat[12])
        return total / os.sysconf("SC_CLK_TCK")

    def rss_mb(self) -> float:
        """Resident memory of the server's processes, MB."""
        return rss_mb(self.pids())


def _client(url: str, wav: str, start_at: float, out: str) -> None:
    """One benchmark client (its own process): stream the WAV in real time from
    ``start_at`` (time.time()), write the per-frame latencies and stats as JSON."""
    from spacelive.client.stream import StreamError, Uplink, stream_audio
    from spacelive.media.audio import read_audio

    samples, rate = read_audio(Path(wav))
    time.sleep(max(0.0, start_at - time.time()))
    try:
        result = asyncio.run(stream_audio(url, Uplink.pcm(samples, rate), realtime=True))
    except Exception as exc:  # refused, disconnected, ...: reported, not raised
        kind = "" if isinstance(exc, StreamError) else f"{type(exc).__name__}: "
        Path(out).write_text(json.dumps({"error": f"{kind}{exc}"}))
        return
    stats = result.stats()
    stats["latencies_ms"] = result.latencies_ms().round(2).tolist()
    Path(out).write_text(json.dumps(stats))


def latency_run(url: str, server: ServerProcess, sessions: int, seconds: float, seed=0) -> dict:
    """N clients at once against a running server; their phases spread over 1 s."""
    context = multiprocessing.get_context("spawn")
    rng = np.random.default_rng(seed)
    with tempfile.TemporaryDirectory() as tmp:
        procs, outs = [], []
        t0 = time.time() + 3.0  # the clients' imports happen before this
        for k in range(sessions):
            wav = Path(tmp) / f"speech{k}.wav"
            write_wav(wav, speech_like(seconds, seed=seed + k), 16_000)
            out = Path(tmp) / f"client{k}.json"
            start = t0 + float(rng.uniform(0, 1.0))
            proc = context.Process(target=_client, args=(url, str(wav), start, str(out)))
            proc.start()
            procs.append(proc)
            outs.append(out)
        time.sleep(max(0.0, t0 - time.time()))
        cpu0, wall0 = server.cpu_seconds(), time.monotonic()
        for proc in procs:
            proc.join(timeout=seconds * 4 + 120)
        cpu1, wall1 = server.cpu_seconds(), time.monotonic()
        clients: list[dict[str, Any]] = [
            json.loads(o.read_text()) if o.is_file() else {"error": "no result"} for o in outs
        ]
    failed = [c["error"] for c in clients if "error" in c]
    ok = [c for c in clients if "error" not in c]
    latencies = np.concatenate([c["latencies_ms"] for c in ok]) if ok else np.zeros(0)
    pct = {
        f"p{q}": float(np.percentile(latencies, q)) if latencies.size else None
        for q in (50, 95, 99)
    }
    fps = [float(c["fps"] or 0.0) for c in ok]
    dropped = sum(c["dropped"] for c in ok) + sum(1 for _ in failed)
    fps_min = min(fps) if fps else 0.0
    result: dict[str, Any] = {
        "sessions": sessions,
        "seconds": seconds,
        "latency_ms": {**pct, "max": float(latencies.max()) if latencies.size else None},
        "above_floor_ms_p50": pct["p50"] - ALGORITHMIC_FLOOR_MS if pct["p50"] else None,
        "fps_per_session": [round(f, 2) for f in fps],
        "fps_min": fps_min,
        "dropped_frames": int(dropped),
        "failed_sessions": failed,
        "server_cpu_cores": (cpu1 - cpu0) / (wall1 - wall0),
        "server_rss_mb": server.rss_mb(),
        "server_stage_ms": ok[0]["server_stage_ms"] if ok else {},
    }
    result["sustained"] = bool(
        not failed
        and dropped == 0
        and fps_min >= SUSTAIN_FPS
        and pct["p99"] is not None
        and pct["p99"] <= SUSTAIN_P99_MS
    )
    result["_latencies"] = latencies
    return result


def bench_latency(
    sessions: int, seconds: float, models: Path | None, label: str, threads: int = 1
) -> dict:
    extra = ("--threads", str(threads))
    with ServerProcess(models, max_sessions=max(sessions, 1), extra=extra) as server:
        run = latency_run(server.url, server, sessions, seconds)
    latencies = run.pop("_latencies")
    result = {
        "benchmark": "latency",
        "label": label,
        "models": str(models or "bundled"),
        "machine": machine(),
        "algorithmic_floor_ms": ALGORITHMIC_FLOOR_MS,
        "onnxruntime_threads": threads,
        **run,
    }
    name = f"latency_{label}"
    write_result(name, result)
    _plot_latency(latencies, result, RESULTS / f"{name}.png")
    return result


def bench_throughput(max_sessions: int, seconds: float, models: Path | None, label: str) -> dict:
    runs = []
    with ServerProcess(models, max_sessions=max_sessions) as server:
        for n in range(1, max_sessions + 1):
            run = latency_run(server.url, server, n, seconds, seed=100 * n)
            run.pop("_latencies")
            runs.append(run)
            log.warning(
                "%d sessions: p50 %.0f p99 %.0f ms, fps min %.1f, dropped %d, CPU %.2f -> %s",
                n, run["latency_ms"]["p50"] or -1, run["latency_ms"]["p99"] or -1,
                run["fps_min"], run["dropped_frames"], run["server_cpu_cores"],
                "sustained" if run["sustained"] else "not sustained",
            )  # fmt: skip
            if not run["sustained"]:
                break
    sustained = [r["sessions"] for r in runs if r["sustained"]]
    result = {
        "benchmark": "throughput",
        "label": label,
        "models": str(models or "bundled"),
        "machine": machine(),
        "criterion": f"every session >= {SUSTAIN_FPS} fps, p99 <= {SUSTAIN_P99_MS:g} ms, "
        f"no dropped frame, for {seconds:g} s",
        "max_sustained_sessions": max(sustained) if sustained else 0,
        "runs": runs,
    }
    name = f"throughput_{label}"
    write_result(name, result)
    _plot_throughput(result, RESULTS / f"{name}.png")
    return result


# -- stages ---------------------------------------------------------------------------------


def bench_stages(frames: int, label: str, widths: tuple[str, ...] = ("realtime", "paper")) -> dict:
    """Per-stage ms per frame, ONNX Runtime vs torch eager, one thread each."""
    import torch

    from spacelive.export.stages import (
        build_stages,
        export_stages,
        quantize_int8,
        randomize,
        step_modules,
    )
    from spacelive.face.analysis import FaceAnalyzer, crop_to_pixels
    from spacelive.media.audio import MfccStreamer, offline_mfcc
    from spacelive.media.video import H264Encoder
    from spacelive.motion.loop import frontal_transfer
    from spacelive.motion.runners import load_stages
    from spacelive.render.renderer import WarpRenderer
    from spacelive.stream.engine import DEFAULT_PORTRAIT, Engine

    torch.set_num_threads(1)
    result: dict = {"benchmark": "stages", "label": label, "machine": machine(), "frames": frames}

    # Stages outside the networks, on the bundled default portrait.
    avatar = FaceAnalyzer().analyze(DEFAULT_PORTRAIT.read_bytes())
    audio = speech_like(frames / FRAME_RATE + 0.2)
    streamer, step = MfccStreamer(), 16_000 // FRAME_RATE
    t = _timed(lambda i: streamer.push(audio[i * step : (i + 1) * step]), frames)
    engine = Engine()
    motion = engine.motion
    motions = motion.run(motion.new_state(avatar), offline_mfcc(audio)[:frames])
    renderer = WarpRenderer()
    source = renderer.prepare(avatar.image, avatar.mesh_px)
    rendered: list[np.ndarray] = []
    t_render = _timed(
        lambda i: rendered.append(renderer.render(source, crop_to_pixels(motions[i].keypoints))),
        frames,
    )
    encoder = H264Encoder()
    t_encode = _timed(lambda i: encoder.encode(rendered[i], i), frames)
    encoder.close()
    transfer = frontal_transfer(avatar)
    spoken = np.stack([m.landmarks for m in motions])
    t_transfer = _timed(lambda i: transfer.apply(spoken[i : i + 1]), frames)
    result["shared_ms"] = {
        "mfcc": t,
        "keypoint_transfer": t_transfer,
        "render": t_render,
        "encode": t_encode,
    }

    result["widths"] = {}
    for width in widths:
        stages = randomize(build_stages(width, seed=1), seed=2).eval()
        modules = step_modules(stages)
        with tempfile.TemporaryDirectory() as tmp:
            fp32_dir, int8_dir = Path(tmp) / "fp32", Path(tmp) / "int8"
            export_stages(stages, fp32_dir)
            shutil.copytree(fp32_dir, int8_dir)
            quantize_int8(int8_dir, tuple(modules))  # served with per-row int8 activations
            served = {"fp32": load_stages(fp32_dir), "int8": load_stages(int8_dir)}
            entry: dict = {
                "onnxruntime_ms": {},
                "onnxruntime_int8_ms": {},
                "torch_eager_ms": {},
                "batched_ms": {},
                "batched_int8_ms": {},
            }
            for name in modules:
                reps = max(50, frames // 2)
                for kind, suffix in (("fp32", ""), ("int8", "_int8")):
                    runner = getattr(served[kind], name)
                    entry[f"onnxruntime{suffix}_ms"][name] = _time_runner(
                        runner, stages, name, 1, reps
                    )
                    entry[f"batched{suffix}_ms"][name] = {
                        b: _time_runner(runner, stages, name, b, max(50, frames // 4))
                        for b in (1, 2, 4, 8)
                    }
                entry["torch_eager_ms"][name] = _time_module(modules[name], stages, name, reps)
            result["widths"][width] = entry
    bundled = engine.stages
    realtime = build_stages("realtime")
    result["bundled_realtime_onnxruntime_ms"] = {
        name: _time_runner(getattr(bundled, name), realtime, name, 1, 200)
        for name in ("audio_encoder", "s2l", "posegen")
    }
    name = f"stages_{label}"
    write_result(name, result)
    _plot_stages(result, RESULTS / f"{name}.png")
    return result


def _time_runner(runner, stages, name: str, batch: int, reps: int) -> float:
    """ms per call of a stage's ONNX step graph on ``batch`` rows of example inputs."""
    from spacelive.export.stages import step_example

    names, example, _ = step_example(stages, batch=batch)[name]
    feed = {n: v.numpy() for n, v in zip(names, example, strict=True)}
    return _timed(lambda _i: runner.run(feed), reps)


def _time_module(module, stages, name: str, reps: int) -> float:
    """ms per call of a stage's torch step module, eager, on one row."""
    import torch

    from spacelive.export.stages import step_example

    _, example, _ = step_example(stages, batch=1)[name]
    with torch.no_grad():
        return _timed(lambda _i: module(*example), reps)


def _timed(fn, reps: int) -> float:
    """Median ms of ``fn(i)`` over ``reps`` calls, after 5 warm-up calls."""
    for i in range(min(5, reps)):
        fn(i)
    times = []
    for i in range(reps):
        t0 = time.perf_counter()
        fn(i)
        times.append(time.perf_counter() - t0)
    return round(1000 * float(np.median(times)), 4)


# -- figures --------------------------------------------------------------------------------


def _figure():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _plot_latency(latencies: np.ndarray, result: dict, path: Path) -> None:
    plt = _figure()
    fig, ax = plt.subplots(figsize=(7, 4))
    if latencies.size:
        ax.hist(latencies, bins=60, color="#4477aa")
    ax.axvline(ALGORITHMIC_FLOOR_MS, color="k", linestyle="--", label="algorithmic floor")
    for q, style in (("p50", "-"), ("p99", ":")):
        if result["latency_ms"][q] is not None:
            ax.axvline(result["latency_ms"][q], color="#cc3311", linestyle=style, label=q)
    ax.set_xlabel("audio -> frame latency (ms)")
    ax.set_ylabel("frames")
    ax.set_title(
        f"{result['sessions']} session(s), {result['seconds']:g} s: fps min "
        f"{result['fps_min']:.1f}, server CPU {result['server_cpu_cores']:.2f} cores"
    )
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _plot_throughput(result: dict, path: Path) -> None:
    plt = _figure()
    runs = result["runs"]
    n = [r["sessions"] for r in runs]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    for q in ("p50", "p95", "p99"):
        a.plot(n, [r["latency_ms"][q] for r in runs], marker="o", label=q)
    a.axhline(SUSTAIN_P99_MS, color="k", linestyle=":", label="p99 limit")
    a.axhline(ALGORITHMIC_FLOOR_MS, color="k", linestyle="--", label="floor")
    a.set_xlabel("concurrent sessions")
    a.set_ylabel("latency (ms)")
    a.legend()
    b.plot(n, [r["fps_min"] for r in runs], marker="o", label="fps (slowest session)")
    b.axhline(SUSTAIN_FPS, color="k", linestyle=":")
    b.set_xlabel("concurrent sessions")
    b.set_ylabel("fps")
    c = b.twinx()
    c.plot(n, [r["server_cpu_cores"] for r in runs], marker="s", color="#cc3311")
    c.set_ylabel("server CPU (cores)", color="#cc3311")
    fig.suptitle(f"max sustained: {result['max_sustained_sessions']} sessions")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _plot_stages(result: dict, path: Path) -> None:
    plt = _figure()
    widths = list(result["widths"])
    fig, axes = plt.subplots(1, len(widths) + 1, figsize=(5 * (len(widths) + 1), 4))
    for ax, width in zip(axes, widths, strict=False):
        entry = result["widths"][width]
        names = list(entry["onnxruntime_ms"])
        x = np.arange(len(names))
        for offset, key, label in (
            (-0.27, "onnxruntime_ms", "ONNX Runtime fp32"),
            (0.0, "onnxruntime_int8_ms", "ONNX Runtime int8 (served)"),
            (0.27, "torch_eager_ms", "torch eager"),
        ):
            ax.bar(x + offset, [entry[key][k] for k in names], 0.27, label=label)
        ax.set_xticks(x, names, rotation=20)
        ax.set_ylabel("ms per frame (batch 1)")
        ax.set_title(f"{width} width")
        ax.legend()
    ax = axes[-1]
    shared = result["shared_ms"]
    ax.bar(list(shared), list(shared.values()), color="#228833")
    ax.set_xticks(range(len(shared)), list(shared), rotation=20)
    ax.set_title("outside the networks")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
