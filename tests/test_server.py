"""End to end against a real uvicorn on a free loopback port."""

import asyncio
import base64
import json
import subprocess
import sys
import threading

import av
import httpx
import numpy as np
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from spacelive.checks.bench import speech_like
from spacelive.client.stream import Uplink, run_stream, stream_audio
from spacelive.media.audio import frame_count, write_wav
from spacelive.server.protocol import WEBSOCKET_MAX_BYTES
from spacelive.stream.engine import DEFAULT_PORTRAIT
from spacelive.stream.offline import render_frames
from tests.conftest import LiveServer, png_bytes, portrait_bytes

GRAY = png_bytes(np.full((256, 256, 3), 128, np.uint8))


def test_health_and_openapi(live_server):
    health = httpx.get(live_server.http_url + "/healthz").json()
    assert health["status"] == "ok" and health["models"] == "tiny"
    paths = httpx.get(live_server.http_url + "/openapi.json").json()["paths"]
    assert "/v1/avatars" in paths and "/healthz" in paths
    assert httpx.get(live_server.http_url + "/v1").json()["stream"].startswith("/v1/stream")
    page = httpx.get(live_server.http_url + "/")
    assert page.headers["content-type"].startswith("text/html") and "<canvas" in page.text
    assert "VideoDecoder" in httpx.get(live_server.http_url + "/static/app.js").text


def test_avatar_upload_is_cached_by_content(live_server):
    image = portrait_bytes("grace_hopper")
    first = httpx.post(live_server.http_url + "/v1/avatars", content=image, timeout=60)
    assert first.status_code == 201, first.text
    again = httpx.post(live_server.http_url + "/v1/avatars", content=image, timeout=60)
    assert again.status_code == 200 and again.json()["cached"] is True
    assert again.json()["avatar_id"] == first.json()["avatar_id"]
    crop = httpx.get(f"{live_server.http_url}/v1/avatars/{first.json()['avatar_id']}/image")
    assert crop.headers["content-type"] == "image/png" and len(crop.content) > 10_000


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (b"plain text, not a picture", 400, "portrait_unreadable"),
        (GRAY, 400, "no_face"),
        (b"\x00" * (20 * 1024 * 1024 + 1), 413, "portrait_too_large"),
    ],
)
def test_avatar_upload_errors(live_server, body, status, code):
    response = httpx.post(live_server.http_url + "/v1/avatars", content=body, timeout=60)
    assert response.status_code == status
    assert response.json()["error"]["code"] == code


def test_streamed_frames_equal_the_offline_render(live_server, engine):
    samples = speech_like(2.5, 24_000, seed=7)
    result = asyncio.run(stream_audio(live_server.ws_url, Uplink.pcm(samples, 24_000), seed=3))
    assert [f.frame_index for f in result.frames] == list(range(frame_count(len(samples), 24_000)))
    assert result.expected_frames == len(result.frames) == 75
    offline = render_frames(engine, DEFAULT_PORTRAIT.read_bytes(), samples, 24_000, seed=3)
    assert [f.data for f in result.frames] == [f.data for f in offline]


def test_opus_packets_stream_like_the_pcm_they_encode(live_server, engine):
    """A browser on a bad link: 24 kbit/s Opus packets, paced in real time, give every frame
    of the decoded audio, in order."""
    samples = speech_like(2.0, 16_000, seed=8)
    uplink = Uplink.opus(samples, 16_000, 24_000)
    result = asyncio.run(stream_audio(live_server.ws_url, uplink, realtime=True))
    assert result.expected_frames == len(result.frames)
    assert [f.frame_index for f in result.frames] == list(range(len(result.frames)))
    # 2 s of audio; the encoder's last packet pads it by at most 20 ms: 60 or 61 frames.
    assert len(result.frames) in (60, 61)
    assert 16 < result.audio_kbps() < 32


def _expect_error(url, messages, code, close_code=1008):
    """Send messages in order (JSON for dicts/str, binary for bytes) until the server answers
    with an error; check its code and that the server then closes the socket."""
    with connect(url, max_size=WEBSOCKET_MAX_BYTES) as ws:
        event = None
        for message in messages:
            ws.send(json.dumps(message) if isinstance(message, dict) else message)
            if isinstance(message, dict) and message.get("type") == "start":
                reply = json.loads(ws.recv(timeout=30))
                if reply["type"] == "error":
                    event = reply
                    break
                assert reply["type"] == "ready"
        while event is None:
            reply = ws.recv(timeout=30)
            if isinstance(reply, str) and json.loads(reply)["type"] == "error":
                event = json.loads(reply)
        assert event["code"] == code, event
        assert event["message"]
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=10)
        assert ws.close_code == close_code


START = {"type": "start", "avatar_id": "default"}
BAD_INPUTS = {
    "non-image": (
        [{**START, "portrait": base64.b64encode(b"GIF89a?").decode()}],
        "portrait_unreadable",
        1008,
    ),
    "faceless": ([{**START, "portrait": base64.b64encode(GRAY).decode()}], "no_face", 1008),
    "wrong-rate": ([{**START, "audio": {"sample_rate": 8000}}], "unsupported_sample_rate", 1008),
    "odd-pcm": ([START, b"\x00\x01\x02"], "odd_pcm_length", 1008),
    "ogg-that-is-not": (
        [{**START, "audio": {"encoding": "opus", "container": "ogg"}}, b"RIFF" + bytes(100)],
        "invalid_opus",
        1008,
    ),
    "audio-first": ([b"\x00\x00" * 320], "audio_before_start", 1008),
    "oversized": ([START, b"\x00" * (2 << 20)], "message_too_large", 1009),
    "unknown-json": ([{"type": "dance"}], "unknown_message", 1008),
    "not-json": (["{oops"], "invalid_json", 1008),
    "unknown-avatar": ([{**START, "avatar_id": "nope"}], "unknown_avatar", 1008),
    "second-start": ([START, START], "already_started", 1008),
    "unknown-pacing": ([{**START, "pacing": "fast"}], "invalid_message", 1008),
    "unknown-audio-out": ([{**START, "audio_out": "mp3"}], "invalid_message", 1008),
    "clear-first": ([{"type": "clear"}], "clear_before_start", 1008),
    "reference-without-track": (
        [START, {"type": "control", "pose": {"mode": "reference"}}],
        "invalid_control",
        1008,
    ),
    "pose-track-too-long": (
        [
            {
                **START,
                "controls": {
                    "pose": {
                        "mode": "reference",
                        "track": {"fps": 1, "frames": [{}] * 1801 + [{"yaw": 1}]},
                    }
                },
            }
        ],
        "invalid_pose_track",
        1008,
    ),
}


def test_bad_input_ends_only_its_own_session(live_server):
    """Each bad input gets its specific error and a clean close while a live, real-time paced
    session on the same server carries on and receives every frame."""
    samples = speech_like(4.0, 16_000, seed=1)
    outcome = {}

    def good_session():
        try:
            outcome["result"] = asyncio.run(
                stream_audio(live_server.ws_url, Uplink.pcm(samples, 16_000), realtime=True)
            )
        except Exception as exc:  # reported below
            outcome["error"] = exc

    thread = threading.Thread(target=good_session)
    thread.start()
    try:
        for messages, code, close_code in BAD_INPUTS.values():
            _expect_error(live_server.ws_url, messages, code, close_code)
    finally:
        thread.join(timeout=60)
    assert "error" not in outcome, outcome.get("error")
    result = outcome["result"]
    assert len(result.frames) == result.expected_frames == 120
    assert httpx.get(live_server.http_url + "/healthz").json()["sessions"] == 0


def test_session_cap_refuses_with_a_clear_error(tiny_models):
    with LiveServer(tiny_models, max_sessions=1) as server, connect(server.ws_url) as first:
        first.send(json.dumps(START))
        assert json.loads(first.recv(timeout=30))["type"] == "ready"
        _expect_error(server.ws_url, [START], "server_busy", close_code=1013)


def test_stream_command_writes_mp4_and_stats(live_server, tmp_path):
    wav = tmp_path / "speech.wav"
    write_wav(wav, speech_like(2.0, 48_000, seed=5), 48_000)
    out, stats_path = tmp_path / "out.mp4", tmp_path / "stats.json"
    stats = run_stream(
        live_server.ws_url, wav, out, image=None, realtime=True, stats_path=stats_path
    )
    assert stats == json.loads(stats_path.read_text())
    assert stats["frames"] == 60 and stats["dropped"] == 0
    assert stats["latency_ms"]["p50"] > 100  # can't beat the 4-frame lookahead
    with av.open(str(out)) as container:
        video, sound = container.streams.video[0], container.streams.audio[0]
        assert video.frames == 60 and (video.width, video.height) == (512, 512)
        assert float(sound.duration * sound.time_base) == pytest.approx(2.0, abs=1 / 30)


def test_render_command(tiny_models, tmp_path):
    from spacelive.cli import main

    wav = tmp_path / "speech.wav"
    write_wav(wav, speech_like(1.0, 16_000, seed=2), 16_000)
    out, sheet = tmp_path / "render.mp4", tmp_path / "sheet.png"
    command = ["render", str(DEFAULT_PORTRAIT), str(wav), "-o", str(out)]
    options = ["--models", str(tiny_models), "--contact-sheet", str(sheet)]
    controls = ["--emotion", "happy=0.7", "--gaze", "0.3,-0.1", "--blinks-per-minute", "30"]
    assert main(command + options + controls) == 0
    with av.open(str(out)) as container:
        assert container.streams.video[0].frames == 30
    assert sheet.stat().st_size > 100_000
    with pytest.raises(SystemExit, match="--gaze: '0.3' is not X,Y"):
        main(command + options + ["--gaze", "0.3"])
    with pytest.raises(SystemExit, match="blinks_per_minute"):
        main(command + options + ["--blinks-per-minute", "200"])


def test_controls_change_mid_stream(live_server):
    """`control`s between audio chunks: blink now, look right, smile, a live head pose; the
    stream carries on."""
    pcm = (np.clip(speech_like(2.0, 16_000, seed=4), -1, 1) * 32767).astype("<i2").tobytes()
    with connect(live_server.ws_url, max_size=WEBSOCKET_MAX_BYTES) as ws:
        ws.send(json.dumps({**START, "controls": {"blinks_per_minute": 0}}))
        assert json.loads(ws.recv(timeout=30))["type"] == "ready"
        ws.send(pcm[: len(pcm) // 2])
        control = {"type": "control", "blink": True, "gaze": [0.4, 0], "emotion": {"happy": 1}}
        ws.send(json.dumps(control))
        ws.send(pcm[len(pcm) // 2 : 3 * len(pcm) // 4])
        live = {"mode": "live", "live": {"yaw": 10, "pitch": -5}}
        ws.send(json.dumps({"type": "control", "pose": live}))
        ws.send(pcm[3 * len(pcm) // 4 :])
        ws.send(json.dumps({"type": "end"}))
        frames, done = 0, None
        while done is None:
            reply = ws.recv(timeout=30)
            if isinstance(reply, bytes):
                frames += 1
            elif json.loads(reply)["type"] in ("done", "error"):
                done = json.loads(reply)
    assert done["type"] == "done" and frames == 60, done


def test_serving_needs_no_torch():
    code = (
        "import sys; import spacelive.server.app, spacelive.client.stream, "
        "spacelive.stream.offline, spacelive.cli, spacelive.stream.engine; "
        "assert 'torch' not in sys.modules, 'torch was imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
