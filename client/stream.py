"""The streaming client: sends a portrait and a WAV over /v1/stream (PCM, or Opus packets as
a browser on a bad link sends them), records the frames, writes an MP4 (received H.264 as
is, plus AAC audio) and per-frame latency statistics."""

import asyncio
import io
import json
import logging
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import numpy as np
import websockets
from PIL import Image

from spacelive import FRAME_RATE
from spacelive.client.opus import PACKET_MS, opus_packets
from spacelive.media.audio import pcm_s16le, read_audio
from spacelive.media.video import EncodedFrame, H264Encoder, write_mp4
from spacelive.server.protocol import (
    KIND_AUDIO,
    WEBSOCKET_MAX_BYTES,
    parse_audio_message,
    parse_frame_message,
)

log = logging.getLogger(__name__)

CHUNK_MS = 20


class StreamError(RuntimeError):
    """The server refused or failed the stream."""


@dataclass
class StreamResult:
    frames: list[EncodedFrame]
    expected_frames: int
    chunk_send_times: list[float]  # perf_counter seconds; chunk i: audio [i*d, (i+1)*d) s
    frame_recv_times: dict[int, float]
    chunk_seconds: float  # d
    audio_bytes: int  # what the uplink carried
    ready: dict = field(default_factory=dict)  # the server's `ready`
    server_stage_ms: dict[str, float] = field(default_factory=dict)
    audio_out: list[tuple[int, np.ndarray]] = field(default_factory=list)  # (frame, int16 PCM)

    def latencies_ms(self) -> np.ndarray:
        """Frame k: receive time minus the send time of the chunk holding audio time k / 30."""
        out = []
        for k, received in sorted(self.frame_recv_times.items()):
            chunk = int(k / FRAME_RATE / self.chunk_seconds + 1e-9)
            chunk = min(chunk, len(self.chunk_send_times) - 1)
            out.append(1000 * (received - self.chunk_send_times[chunk]))
        return np.array(out)

    def audio_kbps(self) -> float:
        seconds = len(self.chunk_send_times) * self.chunk_seconds
        return 8 * self.audio_bytes / seconds / 1000 if seconds else 0.0

    def downlink_kbps(self) -> float:
        """Frame messages (header included) per second of stream, in kbit/s."""
        seconds = len(self.frames) / FRAME_RATE
        return 8 * sum(8 + len(f.data) for f in self.frames) / seconds / 1000 if seconds else 0.0

    def stats(self) -> dict:
        latencies = self.latencies_ms()
        times = sorted(self.frame_recv_times.values())
        span = times[-1] - times[0] if len(times) > 1 else 0.0
        pct = (lambda q: float(np.percentile(latencies, q))) if latencies.size else (lambda q: None)
        return {
            "frames": len(self.frames),
            "expected_frames": self.expected_frames,
            "dropped": self.expected_frames - len(self.frames),
            "fps": (len(times) - 1) / span if span > 0 else None,
            "latency_ms": {
                "p50": pct(50),
                "p95": pct(95),
                "p99": pct(99),
                "max": float(latencies.max()) if latencies.size else None,
            },
            "chunk_ms": 1000 * self.chunk_seconds,
            "audio_kbps": self.audio_kbps(),
            "server_stage_ms": self.server_stage_ms,
        }


def http_base(ws_url: str) -> str:
    parts = urlsplit(ws_url)
    scheme = {"ws": "http", "wss": "https"}.get(parts.scheme)
    if scheme is None:
        raise ValueError(f"{ws_url!r} is not a ws:// or wss:// URL")
    return urlunsplit((scheme, parts.netloc, "", "", ""))


def fetch_avatar_image(ws_url: str, avatar_id: str) -> np.ndarray:
    url = f"{http_base(ws_url)}/v1/avatars/{avatar_id}/image"
    with urllib.request.urlopen(url, timeout=60) as response:
        return np.asarray(Image.open(io.BytesIO(response.read())).convert("RGB"))


def upload_portrait(ws_url: str, image: bytes) -> str:
    """POST /v1/avatars; returns the avatar id."""
    request = urllib.request.Request(
        http_base(ws_url) + "/v1/avatars",
        data=image,
        method="POST",
        headers={"Content-Type": "application/octet-stream"},
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.load(response)["avatar_id"]
    except urllib.error.HTTPError as exc:
        detail = json.loads(exc.read() or b"{}").get("error", {})
        raise StreamError(f"portrait refused: {detail.get('message', exc)}") from None


@dataclass
class Uplink:
    """The audio as the client sends it: ``start.audio`` and the binary messages, each
    ``chunk_seconds`` of audio."""

    audio: dict
    chunks: list[bytes]
    chunk_seconds: float

    @classmethod
    def pcm(cls, samples: np.ndarray, sample_rate: int, chunk_ms: int = CHUNK_MS) -> "Uplink":
        n = sample_rate * chunk_ms // 1000
        pcm = pcm_s16le(samples)
        return cls(
            {"encoding": "pcm_s16le", "sample_rate": sample_rate, "channels": 1},
            [pcm[i : i + 2 * n] for i in range(0, len(pcm), 2 * n)],
            n / sample_rate,
        )

    @classmethod
    def opus(cls, samples: np.ndarray, sample_rate: int, bitrate: int) -> "Uplink":
        """Opus packets of 20 ms, as WebCodecs' AudioEncoder sends them."""
        packets, pre_skip = opus_packets(samples, sample_rate, bitrate)
        audio = {"encoding": "opus", "container": "packets", "pre_skip": pre_skip}
        return cls(audio, packets, PACKET_MS / 1000)


async def stream_audio(
    url: str,
    uplink: Uplink,
    avatar_id: str = "default",
    realtime: bool = False,
    controls: dict | None = None,
    seed: int = 0,
    output: str = "video",
    audio_out: bool = False,
) -> StreamResult:
    """Stream the uplink's chunks; with ``realtime`` pace them like a microphone. ``output``
    "keypoints" asks for a keypoint stream (see ``spacelive.client.keypoints``);
    ``audio_out``, for each frame's audio (``StreamResult.audio_out``)."""
    chunks, chunk_seconds = uplink.chunks, uplink.chunk_seconds
    send_times: list[float] = []
    recv_times: dict[int, float] = {}
    frames: list[EncodedFrame] = []
    audio: list[tuple[int, np.ndarray]] = []
    done: dict = {}

    async with websockets.connect(url, max_size=WEBSOCKET_MAX_BYTES) as ws:
        start = {
            "type": "start",
            "avatar_id": avatar_id,
            "seed": seed,
            "audio": uplink.audio,
            "output": output,
        }
        if audio_out:
            start["audio_out"] = "pcm_s16le"
        if controls:
            start["controls"] = controls
        await ws.send(json.dumps(start))
        ready = json.loads(await ws.recv())
        if ready.get("type") != "ready":
            raise StreamError(f"server refused the stream: {ready.get('message', ready)}")

        async def send() -> None:
            t0 = time.perf_counter()
            for i, chunk in enumerate(chunks):
                if realtime:  # a microphone hands over a chunk when its last sample exists
                    delay = t0 + (i + 1) * chunk_seconds - time.perf_counter()
                    if delay > 0:
                        await asyncio.sleep(delay)
                await ws.send(chunk)
                send_times.append(time.perf_counter())
            await ws.send(json.dumps({"type": "end"}))

        async def receive() -> None:
            async for message in ws:
                now = time.perf_counter()
                if isinstance(message, bytes):
                    if message[0] == KIND_AUDIO:  # asked for with start.audio_out
                        audio.append(parse_audio_message(message))
                        continue
                    frame = parse_frame_message(message)
                    recv_times[frame.frame_index] = now
                    frames.append(frame)
                    continue
                event = json.loads(message)
                if event["type"] == "error":
                    raise StreamError(f"{event['code']}: {event['message']}")
                if event["type"] == "done":
                    done.update(event)

        sender = asyncio.create_task(send(), name="spacelive-client-send")
        try:
            await receive()
        finally:
            sender.cancel()
            await asyncio.gather(sender, return_exceptions=True)
    if not done:
        raise StreamError("the server closed the stream before `done`")
    return StreamResult(
        frames=frames,
        expected_frames=int(done["frames"]),
        chunk_send_times=send_times,
        frame_recv_times=recv_times,
        chunk_seconds=chunk_seconds,
        audio_bytes=sum(len(c) for c in chunks),
        ready=ready,
        server_stage_ms=done.get("stage_ms", {}),
        audio_out=audio,
    )


def stream_file(
    url: str,
    audio_path: Path,
    image: Path | None = None,
    realtime: bool = False,
    controls: dict | None = None,
    seed: int = 0,
    opus_bitrate: int | None = None,
    output: str = "video",
) -> tuple[StreamResult, np.ndarray, int]:
    """Upload the portrait (if any) and stream a WAV: (result, samples, sample rate).
    ``opus_bitrate`` (bits/s) sends Opus packets instead of PCM."""
    samples, rate = read_audio(audio_path)
    avatar_id = upload_portrait(url, Path(image).read_bytes()) if image else "default"
    opus = bool(opus_bitrate)
    uplink = Uplink.opus(samples, rate, opus_bitrate or 0) if opus else Uplink.pcm(samples, rate)
    result = asyncio.run(
        stream_audio(url, uplink, avatar_id, realtime, controls=controls, seed=seed, output=output)
    )
    return result, samples, rate


def run_stream(
    url: str,
    audio_path: Path,
    out: Path,
    image: Path | None = None,
    realtime: bool = False,
    stats_path: Path | None = None,
    controls: dict | None = None,
    seed: int = 0,
    opus_bitrate: int | None = None,
    output: str = "video",
) -> dict:
    """The `spacelive stream` and `spacelive client render-keypoints` (output "keypoints":
    rendered here) commands: returns the stats it also writes."""
    result, samples, rate = stream_file(
        url, audio_path, image, realtime, controls, seed, opus_bitrate, output
    )
    stats = result.stats()
    video = result.frames
    if output == "keypoints":
        video = _render_keypoints(url, result)
        stats.update(
            keypoint_kbps=result.downlink_kbps(), setup_bytes=len(json.dumps(result.ready))
        )
    write_mp4(Path(out), video, samples, rate)
    stats.update({"audio_seconds": len(samples) / rate, "realtime": realtime, "output": str(out)})
    if stats_path:
        Path(stats_path).write_text(json.dumps(stats, indent=2) + "\n")
    return stats


def _render_keypoints(url: str, result: StreamResult) -> list[EncodedFrame]:
    """A keypoint stream rendered by the reference receiver, encoded as the server would."""
    from spacelive.client.keypoints import KeypointReceiver

    if "keypoints" not in result.ready:
        raise StreamError("the server did not start a keypoint stream")
    image = fetch_avatar_image(url, result.ready["avatar_id"])
    receiver = KeypointReceiver(result.ready["keypoints"], image)
    encoder = H264Encoder()
    try:
        return [encoder.encode(receiver.render(f), f.frame_index) for f in result.frames]
    finally:
        encoder.close()
