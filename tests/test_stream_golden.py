"""Old against new: every output mode reproduces, byte for byte, the frames that the code of
ef4c161 (before the stream runner) gave on the bundled models and two portraits, and the raw
RGB output is the very picture the H.264 output encodes.

The digests in ``tests/data/stream_golden.json`` were written by that commit. A change that
is meant to alter frames (new weights, a renderer change) rewrites them with
``python tests/test_stream_golden.py`` and says so in its commit.
"""

import asyncio
import hashlib
import json
import sys
from pathlib import Path

import httpx
import numpy as np
import pytest

from spacelive.checks.bench import speech_like
from spacelive.client.stream import Uplink, stream_audio
from spacelive.face.analysis import FaceAnalyzer
from spacelive.media.audio import pcm_s16le
from spacelive.media.audio_input import AudioSpec
from spacelive.media.video import EncodedFrame
from spacelive.motion.controls import ControlUpdate
from spacelive.stream.engine import DEFAULT_MODELS, Engine
from spacelive.stream.offline import render_frames
from tests.conftest import LiveServer, portrait_bytes

GOLDEN = Path(__file__).parent / "data" / "stream_golden.json"
PORTRAITS = ("astronaut", "barack_obama")
SEED = 3
CONTROLS = {"emotion": {"happy": 0.6}, "gaze": [0.3, -0.2], "blinks_per_minute": 30}


def _samples() -> np.ndarray:
    return speech_like(2.0, seed=4)  # 16 kHz


def _controls() -> ControlUpdate:
    emotion = np.zeros(8, np.float32)
    emotion[1] = CONTROLS["emotion"]["happy"]
    return ControlUpdate(emotion=emotion, gaze=(0.3, -0.2), blinks_per_minute=30)


def digest(frames: list[EncodedFrame]) -> str:
    h = hashlib.sha256()
    for f in frames:
        h.update(f.frame_index.to_bytes(4, "little"))
        h.update(bytes([f.keyframe]))
        h.update(f.data)
    return h.hexdigest()


def offline_digests(engine: Engine, portrait: str) -> dict:
    """The offline render's video and a keypoint stream fed in 40 ms chunks."""
    image = portrait_bytes(portrait)
    samples = _samples()
    video = render_frames(engine, image, samples, 16_000, _controls(), seed=SEED)
    avatar = FaceAnalyzer().analyze(image)
    stream = engine.open_stream(avatar, AudioSpec(), _controls(), SEED, output="keypoints")
    pcm = pcm_s16le(samples)
    for start in range(0, len(pcm), 1280):
        stream.push_audio(pcm[start : start + 1280])
    stream.end()
    keypoints = [item for item in stream if isinstance(item, EncodedFrame)]
    stream.close()
    return {"frames": len(video), "video": digest(video), "keypoints": digest(keypoints)}


@pytest.fixture(scope="module")
def bundled_engine() -> Engine:
    return Engine()


@pytest.fixture(scope="module")
def bundled_server():
    with LiveServer(DEFAULT_MODELS, max_sessions=2) as server:
        yield server


@pytest.mark.parametrize("portrait", PORTRAITS)
def test_offline_and_keypoint_frames_are_unchanged(bundled_engine, portrait):
    assert offline_digests(bundled_engine, portrait) == json.loads(GOLDEN.read_text())[portrait]


def test_rgb_output_is_the_picture_the_video_encodes(bundled_engine):
    """The raw output, encoded as the video output encodes, gives the video's bytes."""
    from spacelive.media.video import H264Encoder

    image = portrait_bytes("astronaut")
    rgb = render_frames(bundled_engine, image, _samples(), 16_000, _controls(), SEED, "rgb")
    assert [f.frame_index for f in rgb] == list(range(60)) and all(f.kind == 3 for f in rgb)
    encoder = H264Encoder()
    video = [encoder.encode(f.rgb(), f.frame_index) for f in rgb]
    assert digest(video) == json.loads(GOLDEN.read_text())["astronaut"]["video"]


@pytest.mark.parametrize("portrait", PORTRAITS)
def test_websocket_frames_are_unchanged(bundled_server, portrait):
    golden = json.loads(GOLDEN.read_text())[portrait]
    response = httpx.post(f"{bundled_server.http_url}/v1/avatars", content=portrait_bytes(portrait))
    avatar_id = response.json()["avatar_id"]
    for output in ("video", "keypoints"):
        result = asyncio.run(
            stream_audio(
                bundled_server.ws_url,
                Uplink.pcm(_samples(), 16_000),
                avatar_id=avatar_id,
                controls=CONTROLS,
                seed=SEED,
                output=output,
            )
        )
        assert len(result.frames) == golden["frames"]
        assert digest(result.frames) == golden[output], output


if __name__ == "__main__":  # rewrite the digests (say why in the commit)
    engine = Engine()
    digests = {name: offline_digests(engine, name) for name in PORTRAITS}
    GOLDEN.write_text(json.dumps(digests, indent=2) + "\n")
    print(json.dumps(digests, indent=2), file=sys.stderr)
