"""Renderer speed on one core: ms per 512x512 frame across a realistic command sweep.

    python benchmarks/renderer.py [--frames 300] [--portrait IMAGE] [--name renderer]

Pins itself to one CPU and OpenCV to one thread and renders three sweeps with head rotation
throughout: head motion alone; talking (plus mouth openings); and every layer at once (plus
blinks and a gaze that never rests), each frame into one reused frame buffer as served and,
alternating with it, into a new one. Writes benchmarks/results/renderer.json with
percentiles, a per-layer breakdown and the memory a frame holds while it is rendered (into the
reused buffer or a new one) and encoded. The remap of one 512x512 frame is reported as the
machine's yardstick, since this machine's speed drifts between runs. The layer breakdown is
for one frame of the all-layers sweep, over the window of the frame that moves. The ONNX twin
(the GPU hosts' renderer) is compared with it on ONNX Runtime's CPU provider.
"""

import argparse
import json
import os
import sys
import time
import tracemalloc
from pathlib import Path

import cv2
import numpy as np

from spacelive import FRAME_SIZE
from spacelive.checks.bench import write_result
from spacelive.face.analysis import FaceAnalyzer
from spacelive.face.rig import FaceCommand, FaceRig
from spacelive.media.video import H264Encoder
from spacelive.render.renderer import EYES, WarpRenderer, _Window
from spacelive.render.renderer_onnx import OnnxRenderer
from spacelive.stream.engine import DEFAULT_PORTRAIT


def sweep(frames: int, mouth: bool, eyes: bool) -> list[FaceCommand]:
    """Head motion always; a talking mouth and/or moving lids and irises on request."""
    t = np.arange(frames) / 30
    return [
        FaceCommand(
            mouth_open=float(0.25 + 0.25 * np.sin(2 * np.pi * 3 * ti)) if mouth else None,
            blink=float(max(0.0, np.sin(2 * np.pi * 0.5 * ti)) ** 8) if eyes else 0.0,
            gaze=(
                float(0.4 * np.sin(2 * np.pi * 0.3 * ti)),
                float(0.2 * np.cos(2 * np.pi * 0.2 * ti)),
            )
            if eyes
            else (0.0, 0.0),
            yaw=float(np.radians(15) * np.sin(2 * np.pi * 0.25 * ti)),
            pitch=float(np.radians(8) * np.sin(2 * np.pi * 0.4 * ti)),
            roll=float(np.radians(6) * np.sin(2 * np.pi * 0.15 * ti)),
        )
        for ti in t
    ]


SCENARIOS = {
    "head_motion": {"mouth": False, "eyes": False},
    "talking": {"mouth": True, "eyes": False},
    "all_layers": {"mouth": True, "eyes": True},
}


def timed(fn, repeats: int) -> np.ndarray:
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(1000 * (time.perf_counter() - t0))
    return np.array(out)


def onnx_twin(avatar, driving: list[np.ndarray]) -> dict:
    """The ONNX twin (GPU hosts' renderer) on ONNX Runtime's CPU provider: its agreement with
    the numpy renderer over the all-layers sweep, and its speed here (for reference only)."""
    cpu, twin = WarpRenderer(), OnnxRenderer()
    cpu_source, twin_source = (
        cpu.prepare(avatar.image, avatar.mesh_px),
        twin.prepare(avatar.image, avatar.mesh_px),
    )
    psnrs, ms = [], []
    for kp in driving:
        t0 = time.perf_counter()
        b = twin.render(twin_source, kp).astype(np.float64)
        ms.append(1000 * (time.perf_counter() - t0))
        a = cpu.render(cpu_source, kp).astype(np.float64)
        mse = float(np.mean((a - b) ** 2))
        psnrs.append(float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse))
    return {"frames": len(driving), "psnr_db_min": min(psnrs), "ms_p50": float(np.median(ms))}


def transient_peak_kb(call, calls: int = 30) -> float:
    """Median over ``calls`` of the most memory ``call(i)`` held at once beyond what was held
    before it (tracemalloc, which numpy reports its buffers to), in KB."""
    tracemalloc.start()
    peaks = []
    for i in range(calls):
        before, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        call(i)
        peaks.append(tracemalloc.get_traced_memory()[1] - before)
    tracemalloc.stop()
    return float(np.median(peaks)) / 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--portrait", default=str(DEFAULT_PORTRAIT))
    parser.add_argument("--name", default="renderer", help="results file name (without .json)")
    args = parser.parse_args()
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    cv2.setNumThreads(1)

    avatar = FaceAnalyzer().analyze(Path(args.portrait).read_bytes())
    rig, renderer = FaceRig(avatar.mesh_px, avatar.pose), WarpRenderer()
    source = renderer.prepare(avatar.image, avatar.mesh_px)
    picture = np.empty_like(avatar.image)  # as sessions and render workers render
    scenarios = {}
    for name, flags in SCENARIOS.items():
        driving = [rig.apply(c) for c in sweep(args.frames, **flags)]
        for kp in driving[:20]:
            renderer.render(source, kp, picture)
        per_frame, new_frame = [], []  # served (into one reused frame) and a new frame each
        for kp in driving:
            t0 = time.perf_counter()
            renderer.render(source, kp, picture)
            t1 = time.perf_counter()
            renderer.render(source, kp)
            per_frame.append(1000 * (t1 - t0))
            new_frame.append(1000 * (time.perf_counter() - t1))
        scenarios[name] = {
            "p50": float(np.percentile(per_frame, 50)),
            "p95": float(np.percentile(per_frame, 95)),
            "mean": float(np.mean(per_frame)),
            "new_frame_each_time_p50": float(np.percentile(new_frame, 50)),
        }
    kp = driving[len(driving) // 3]
    coarse = renderer._coarse_flow(source, kp)
    window = renderer._moving_window(source, coarse, kp)
    sample = renderer._upsample_flow(coarse, window).copy()

    def fresh() -> _Window:
        return _Window(window, sample.copy())

    layers = {
        "global_flow": timed(
            lambda: renderer._upsample_flow(renderer._coarse_flow(source, kp), window), 100
        ),
        "mouth": timed(lambda: renderer._mouth(source, kp, fresh()), 100),
        "eyes": timed(lambda: [renderer._eye(source, kp, e, fresh()) for e in EYES], 100),
        "remap": timed(lambda: cv2.remap(source.image, sample, None, cv2.INTER_LINEAR), 100),
    }
    encoder = H264Encoder()
    allocation = {
        "render_into_reused_frame": transient_peak_kb(
            lambda i: renderer.render(source, driving[i], picture)
        ),
        "render_into_new_frame": transient_peak_kb(lambda i: renderer.render(source, driving[i])),
        "encode": transient_peak_kb(lambda i: encoder.encode(picture, i)),
    }
    window_fraction = (window[1] - window[0]) * (window[3] - window[2]) / FRAME_SIZE**2
    twin = onnx_twin(avatar, driving[:: max(len(driving) // 30, 1)])
    result = {
        "benchmark": "renderer",
        "cpus_used": 1,
        "opencv_threads": cv2.getNumThreads(),
        "frames_per_scenario": args.frames,
        "ms_per_frame": scenarios,
        "layer_ms_p50": {name: float(np.median(v)) for name, v in layers.items()},
        "moving_window_fraction_of_frame": window_fraction,
        "transient_allocation_kb_median": allocation,
        "onnx_twin_cpu_provider": twin,
        "target_ms": 5.0,
    }
    write_result(args.name, result)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
