"""Shared fixtures: tiny random-weight models, portraits, an engine, a live server."""

import io
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from spacelive.face.analysis import FaceAnalyzer
from spacelive.stream.engine import Engine, EngineConfig


def pytest_collection_modifyitems(config, items):
    """``gpu`` tests run only where ONNX Runtime has its CUDA provider (a GPU host)."""
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        return
    skip = pytest.mark.skip(reason="needs an NVIDIA GPU and onnxruntime-gpu")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


def frames_of(stream) -> list:
    """The frames a ``LocalStream`` has made since last asked (its ``Done`` left out)."""
    from spacelive.media.video import EncodedFrame

    return [item for item in stream if isinstance(item, EncodedFrame)]


def stream_alone(
    engine, avatar, chunks, controls=None, seed=0, rate=16_000, output="h264", control_at=None
):
    """A stream in its synchronous form, fed ``chunks`` (with ``control_at`` = (i, update)
    sent before chunk i): (its frames, its Done)."""
    from spacelive.media.audio_input import AudioSpec

    stream = engine.open_stream(avatar, AudioSpec(sample_rate=rate), controls, seed, output)
    frames = []
    for i, chunk in enumerate(chunks):
        if control_at is not None and i == control_at[0]:
            stream.control(control_at[1])
        stream.push_audio(chunk)
        frames += frames_of(stream)
    stream.end()
    items = list(stream)
    stream.close()
    return frames + items[:-1], items[-1]


def portrait_bytes(name: str) -> bytes:
    """A standard public-domain portrait (``portraits.standard_portraits``) as bytes."""
    from spacelive.face.portraits import standard_portraits

    return standard_portraits()[name]


def png_bytes(rgb: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> Path:
    """Tiny-width stages with random weights (heads included), so outputs move."""
    pytest.importorskip("torch")
    from spacelive.checks.bench import speech_like
    from spacelive.export.stages import build_stages, export_stages, randomize
    from spacelive.media.audio import offline_mfcc
    from spacelive.training.motion_basis import fit_basis

    out = tmp_path_factory.mktemp("tiny_models")
    export_stages(randomize(build_stages("tiny", seed=11), seed=12, head_scale=0.2), out)
    # The keypoint stream's basis, fitted to this S2L (few components: corrections carry
    # the rest, as they would for any model the basis fits badly).
    motion = Engine(EngineConfig(models=out)).motion
    mfccs = [offline_mfcc(speech_like(3.0, seed=s)) for s in range(4)]
    face = FaceAnalyzer().analyze(portrait_bytes("astronaut"))
    fit_basis(motion, [face], mfccs, out, components=8)
    return out


@pytest.fixture(scope="session")
def analyzer() -> FaceAnalyzer:
    return FaceAnalyzer()


@pytest.fixture(scope="session")
def avatar(analyzer):
    return analyzer.analyze(portrait_bytes("astronaut"))


@pytest.fixture(scope="session")
def engine(tiny_models) -> Engine:
    return Engine(EngineConfig(models=tiny_models))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    def __init__(self, models: Path, max_sessions: int = 8):
        import uvicorn

        from spacelive.server.app import ServerConfig, create_app
        from spacelive.server.protocol import WEBSOCKET_MAX_BYTES

        self.port = _free_port()
        app = create_app(
            ServerConfig(engine=EngineConfig(models=models), max_sessions=max_sessions)
        )
        self.server = uvicorn.Server(
            uvicorn.Config(
                app,
                host="127.0.0.1",
                port=self.port,
                ws_max_size=WEBSOCKET_MAX_BYTES,
                log_config=None,
                lifespan="on",
            )
        )
        self.thread = threading.Thread(target=self.server.run, name="uvicorn", daemon=True)

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/v1/stream"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> "LiveServer":
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


@pytest.fixture(scope="session")
def live_server(tiny_models):
    """A real uvicorn on a free loopback port, serving the tiny models."""
    with LiveServer(tiny_models, max_sessions=6) as server:
        yield server
