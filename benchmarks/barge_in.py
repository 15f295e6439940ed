"""Barge-in, as a voice agent does it: a real server, a websocket client with `pacing:
"realtime"` that sends 6 s of held-out synthetic speech (mbrola us3) at once, then `clear` after
45 frames, waits 2 s, and sends `end`.

    python benchmarks/barge_in.py [--portrait grace_hopper] [--clear-after 45]

Writes benchmarks/results/barge_in.json: K from `cleared` against the frames received when
`clear` was sent; the events; the frame rate before and after the clear (from arrival times);
the largest gap between frames; the re-detected inner-lip gap (eye widths, MediaPipe on the
decoded frames) while speaking and on the idle frames from K + 6 to the end; and how long after
`end` the `done` came.
"""

import argparse
import asyncio
import json
import sys
import time

import av
import httpx
import numpy as np
import websockets

from spacelive.checks.bench import ServerProcess, write_result
from spacelive.face.analysis import FaceAnalyzer
from spacelive.face.landmarks import LOWER_INNER_LIP, UPPER_INNER_LIP
from spacelive.face.portraits import standard_portraits
from spacelive.media.audio import pcm_s16le
from spacelive.server.protocol import WEBSOCKET_MAX_BYTES, parse_frame_message
from spacelive.training.corpus import HELD_OUT, SentenceMaker, synthesize


def speech(seconds: float) -> np.ndarray:
    rng = np.random.default_rng(3)
    sentences, pieces = SentenceMaker(), []
    while sum(p.size for p in pieces) < seconds * 16_000:
        pieces.append(synthesize(HELD_OUT[0], sentences.sentence("en", rng), rng)[0])
    return np.concatenate(pieces)[: int(seconds * 16_000)]


async def session(url: str, avatar_id: str, pcm: bytes, clear_after: int) -> dict:
    frames, arrivals, events = [], [], []
    sent_clear = end_at = done_at = None
    async with websockets.connect(url, max_size=WEBSOCKET_MAX_BYTES) as ws:
        await ws.send(json.dumps({"type": "start", "avatar_id": avatar_id, "pacing": "realtime"}))
        json.loads(await ws.recv())
        t0 = time.monotonic()
        for i in range(0, len(pcm), 64_000):
            await ws.send(pcm[i : i + 64_000])
        while True:
            message = await ws.recv()
            now = time.monotonic() - t0
            if isinstance(message, bytes):
                frames.append(parse_frame_message(message))
                arrivals.append(now)
                if len(frames) == clear_after:
                    await ws.send(json.dumps({"type": "clear"}))
                    sent_clear = len(frames) - 1
                if sent_clear is not None and end_at is None and now > arrivals[sent_clear] + 2:
                    await ws.send(json.dumps({"type": "end"}))
                    end_at = now
                continue
            event = json.loads(message)
            if event["type"] in ("speaking", "idle", "cleared"):
                events.append({**event, "at_s": round(now, 3)})
            if event["type"] == "done":
                done_at = now
                break
    return {
        "frames": frames,
        "arrivals": arrivals,
        "events": events,
        "last_received_at_clear": sent_clear,
        "end_at": end_at,
        "done_at": done_at,
    }


def mouth_gaps(frames, analyzer: FaceAnalyzer) -> np.ndarray:
    """Re-detected inner-lip gap per frame, in eye widths (NaN where no face is found)."""
    codec = av.CodecContext.create("h264", "r")
    gaps = []
    for f in frames:
        for picture in codec.decode(av.Packet(f.data)):
            mesh = analyzer.mesh(picture.to_ndarray(format="rgb24"))
            if mesh is None:
                gaps.append(np.nan)
                continue
            eye = np.linalg.norm(mesh[33, :2] - mesh[133, :2])
            gap = np.mean(mesh[LOWER_INNER_LIP, 1] - mesh[UPPER_INNER_LIP, 1])
            gaps.append(float(gap / eye))
    return np.array(gaps)


def fps(arrivals: list[float]) -> float:
    return (len(arrivals) - 1) / (arrivals[-1] - arrivals[0]) if len(arrivals) > 1 else 0.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--portrait", default="grace_hopper", help="a standard portrait")
    parser.add_argument("--clear-after", type=int, default=45, help="frames received first")
    args = parser.parse_args()
    pcm = pcm_s16le(speech(6.0))
    with ServerProcess(None, max_sessions=2) as server:
        base = server.url.replace("ws://", "http://").replace("/v1/stream", "")
        image = standard_portraits()[args.portrait]
        avatar_id = httpx.post(f"{base}/v1/avatars", content=image, timeout=60).json()["avatar_id"]
        run = asyncio.run(session(server.url, avatar_id, pcm, args.clear_after))
    cleared = next(e["frame"] for e in run["events"] if e["type"] == "cleared")
    last = run["last_received_at_clear"]
    arrivals = run["arrivals"]
    gaps = mouth_gaps(run["frames"], FaceAnalyzer())
    idle_gaps = gaps[cleared + 6 :]
    result = {
        "benchmark": "barge_in",
        "portrait": args.portrait,
        "speech": "6 s of mbrola us3 (held out), sent at once",
        "clear_sent_after_frame": last,
        "cleared_frame": cleared,
        "cleared_minus_last_received": cleared - last,
        "events": run["events"],
        "frames": len(run["frames"]),
        "fps_before_clear": round(fps(arrivals[: last + 1]), 2),
        "fps_after_clear": round(fps(arrivals[last:]), 2),
        "largest_gap_ms": round(1000 * float(np.max(np.diff(arrivals))), 1),
        "lip_gap_eye_widths": {
            "speaking_p95": round(float(np.nanpercentile(gaps[:last], 95)), 3),
            "idle_after_clear_median": round(float(np.nanmedian(idle_gaps)), 3),
            "idle_after_clear_max": round(float(np.nanmax(idle_gaps)), 3),
            "idle_frames_without_a_face": int(np.isnan(idle_gaps).sum()),
        },
        "done_after_end_s": round(run["done_at"] - run["end_at"], 3),
    }
    write_result(f"barge_in_{args.portrait}", result)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
