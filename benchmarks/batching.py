"""What the batched engine rests on, measured: rows independent, batching cheaper, threads no
use for rendering, memory released.

    python benchmarks/batching.py

Writes benchmarks/results/batching.json:
- ``row_mixing``: per stage graph, the largest difference between a row run in a batch of 4
  and the same row run alone, for the int8 file as stored and as the server runs it
  (``spacelive.motion.quantization``);
- ``motion_step_ms``: one ``MotionModel.step`` (bundled models, default portrait) per tick and
  per session, at 1, 2, 4 and 8 sessions;
- ``render_threads``: ms per frame rendering (and encoding) 2 x 150 frames one after the other
  vs on two threads;
- ``memory``: RSS of the engine and its render workers before and after 200 sequential
  sessions of 0.2 s.
"""

import asyncio
import json
import os
import sys
import threading
import time

import numpy as np
import onnxruntime as ort

from spacelive.checks.bench import rss_mb, speech_like, write_result
from spacelive.face.analysis import FaceAnalyzer, crop_to_pixels
from spacelive.media.audio import offline_mfcc, pcm_s16le
from spacelive.media.timing import StageTimes
from spacelive.media.video import H264Encoder
from spacelive.motion.runners import StageRunner
from spacelive.stream.engine import DEFAULT_MODELS, DEFAULT_PORTRAIT, Engine
from spacelive.stream.runner import Done, StreamRunner


def feeds(inputs: list[dict], batch: int, rng) -> dict[str, np.ndarray]:
    out = {}
    for spec in inputs:
        shape = [batch if d == "batch" else int(d) for d in spec["shape"]]
        out[spec["name"]] = (
            np.full(shape, 6, np.int64)
            if spec.get("dtype") == "int64"
            else (rng.standard_normal(shape) * rng.uniform(0.1, 3.0)).astype(np.float32)
        )
    return out


def row(feed: dict[str, np.ndarray], inputs: list[dict], i: int) -> dict[str, np.ndarray]:
    """Row i of a batch feed (the batch axis is 1 for LSTM state, else 0)."""
    out = {}
    for spec in inputs:
        axis = spec["shape"].index("batch")
        out[spec["name"]] = np.take(feed[spec["name"]], [i], axis=axis)
    return out


def row_mixing(manifest: dict) -> dict:
    rng = np.random.default_rng(0)
    result = {}
    for stage in ("audio_encoder", "s2l"):
        entry = manifest["stages"][stage]
        path = DEFAULT_MODELS / entry["file"]
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        stored = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        served = StageRunner(path).session
        feed = feeds(entry["inputs"], 4, rng)
        result[stage] = {}
        for kind, session in (("int8_as_stored", stored), ("row_quantized_as_served", served)):
            names = [o.name for o in session.get_outputs()]
            batched = session.run(None, feed)
            worst = 0.0
            for i in range(4):
                alone = session.run(None, row(feed, entry["inputs"], i))
                for name, b, a in zip(names, batched, alone, strict=True):
                    axis = 1 if name in ("new_h", "new_c") else 0  # LSTM state: (2, B, H)
                    worst = max(worst, float(np.abs(np.take(b, [i], axis=axis) - a).max()))
            result[stage][kind] = worst
    return result


def motion_step_ms(engine: Engine, avatar) -> dict:
    motion, rng, out = engine.motion, np.random.default_rng(1), {}
    for batch in (1, 2, 4, 8):
        states = [motion.new_state(avatar, None, seed=b) for b in range(batch)]
        mfcc = rng.standard_normal((150, batch, 40)).astype(np.float32)
        for t in range(10):
            motion.step(states, mfcc[t])
        t0 = time.perf_counter()
        for t in range(10, 150):
            motion.step(states, mfcc[t], StageTimes())
        tick = (time.perf_counter() - t0) / 140 * 1000
        out[batch] = {"per_tick": round(tick, 3), "per_session": round(tick / batch, 3)}
    return out


def render_threads(engine: Engine, avatar) -> dict:
    import cv2

    from spacelive.render.renderer import WarpRenderer

    cv2.setNumThreads(1)
    motions = engine.motion.run(engine.motion.new_state(avatar), offline_mfcc(speech_like(5))[:150])
    renderer = WarpRenderer()
    source = renderer.prepare(avatar.image, avatar.mesh_px)

    def work(encode: bool) -> None:
        encoder = H264Encoder()
        for i, m in enumerate(motions):
            rgb = renderer.render(source, crop_to_pixels(m.keypoints))
            if encode:
                encoder.encode(rgb, i)
        encoder.close()

    out = {}
    for encode in (False, True):
        t0 = time.perf_counter()
        work(encode)
        work(encode)
        alone = time.perf_counter() - t0
        threads = [threading.Thread(target=work, args=(encode,)) for _ in range(2)]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        both = time.perf_counter() - t0
        out["render_and_encode" if encode else "render"] = {
            "one_after_the_other_ms_per_frame": round(alone / 300 * 1000, 3),
            "two_threads_ms_per_frame": round(both / 300 * 1000, 3),
            "speedup": round(alone / both, 2),
        }
    return out


def memory(engine: Engine, avatar) -> dict:
    """200 sequential streams through the stream runner, as a server runs them."""
    runner = StreamRunner(engine, workers=2)
    pids = [os.getpid(), *(w.process.pid for w in runner.batch._pool._workers)]
    pcm = pcm_s16le(speech_like(0.2, seed=9))

    async def one(seed: int) -> None:
        stream = await runner.open_stream(avatar, seed=seed)
        try:
            await stream.push_audio(pcm)
            await stream.end()
            items = [item async for item in stream]
            assert isinstance(items[-1], Done) and items[-1].frames == len(items) - 1
        finally:
            stream.close()

    async def many(seeds: range) -> None:
        for seed in seeds:
            await one(seed)

    try:
        asyncio.run(many(range(20)))
        before, t0 = rss_mb(pids), time.perf_counter()
        asyncio.run(many(range(200)))
        after, seconds = rss_mb(pids), time.perf_counter() - t0
    finally:
        runner.close()
    return {
        "sessions": 200,
        "rss_before_mb": round(before, 1),
        "rss_after_mb": round(after, 1),
        "grown_mb": round(after - before, 1),
        "ms_per_session": round(seconds / 200 * 1000, 1),
    }


def main() -> int:
    manifest = json.loads((DEFAULT_MODELS / "manifest.json").read_text())
    engine = Engine()
    avatar = FaceAnalyzer().analyze(DEFAULT_PORTRAIT.read_bytes())
    report = {
        "benchmark": "batching",
        "row_mixing": row_mixing(manifest),
        "motion_step_ms": motion_step_ms(engine, avatar),
        "render_threads": render_threads(engine, avatar),
        "memory": memory(engine, avatar),
    }
    write_result("batching", report)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
