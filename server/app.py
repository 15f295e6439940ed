"""The FastAPI application: REST for avatars and health, the /v1/stream websocket."""

import asyncio
import io
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from fastapi import FastAPI, Request, WebSocket
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles

from spacelive import __version__
from spacelive.face.analysis import MAX_PORTRAIT_BYTES, FaceAnalyzer, PortraitError
from spacelive.server.avatars import AvatarStore
from spacelive.server.stream import StreamHandler
from spacelive.stream.engine import DEFAULT_PORTRAIT, Engine, EngineConfig
from spacelive.stream.runner import StreamRunner

log = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent / "static"
"""The web page (no build step: plain HTML, CSS and ES modules)."""


@dataclass(frozen=True, slots=True)
class ServerConfig:
    engine: EngineConfig = field(default_factory=EngineConfig)
    default_portrait: Path = DEFAULT_PORTRAIT
    max_sessions: int = 8
    workers: int = os.cpu_count() or 2  # render processes (never more than max_sessions)


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


def create_app(config: ServerConfig = ServerConfig()) -> FastAPI:
    """Build the app; the engine and the default avatar load at startup."""

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        executor = ThreadPoolExecutor(config.workers, thread_name_prefix="spacelive-worker")
        runner = StreamRunner(
            Engine(config.engine),
            workers=max(1, min(config.workers, config.max_sessions)),  # one session each at most
            executor=executor,
        )
        engine = runner.engine
        avatars = AvatarStore(FaceAnalyzer(), config.default_portrait)
        app.state.executor = executor
        app.state.avatars = avatars
        app.state.streams = StreamHandler(runner, avatars, config.max_sessions)
        log.info("spacelive %s ready (%s models)", __version__, engine.stages.manifest["width"])
        try:
            yield
        finally:
            runner.close()
            executor.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(
        title="spacelive",
        version=__version__,
        summary="Real-time speech-driven portrait animation. Stream audio, receive 512x512 H.264.",
        lifespan=lifespan,
    )

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", response_class=FileResponse, include_in_schema=False)
    async def page() -> FileResponse:
        """The web page: microphone in, the portrait speaking out."""
        return FileResponse(STATIC / "index.html")

    @app.get("/v1")
    async def index() -> dict:
        """Where things are, for a program that opens the server's address."""
        return {
            "page": "/",
            "service": "spacelive",
            "version": __version__,
            "stream": "/v1/stream (websocket; protocol in docs/protocol.md)",
            "avatars": "/v1/avatars",
            "health": "/healthz",
            "api": "/docs",
        }

    @app.get("/healthz")
    async def healthz(request: Request) -> dict:
        """Liveness and what is loaded."""
        streams: StreamHandler = request.app.state.streams
        return {
            "status": "ok",
            "version": __version__,
            "models": streams.runner.engine.stages.manifest["width"],
            "sessions": streams.active,
            "max_sessions": streams.max_sessions,
        }

    @app.post(
        "/v1/avatars",
        responses={
            400: {"description": "not a usable portrait"},
            413: {"description": "too large"},
        },
    )
    async def create_avatar(request: Request) -> JSONResponse:
        """Upload a portrait (the raw JPEG/PNG/WebP bytes as the request body).

        Returns the avatar id to use in `start`. The same image always gets the same id and is
        analysed once.
        """
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > MAX_PORTRAIT_BYTES:
            return _error(
                413, "portrait_too_large", f"portrait exceeds {MAX_PORTRAIT_BYTES >> 20} MiB"
            )
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_PORTRAIT_BYTES:
                return _error(
                    413, "portrait_too_large", f"portrait exceeds {MAX_PORTRAIT_BYTES >> 20} MiB"
                )
        avatars: AvatarStore = request.app.state.avatars
        loop = asyncio.get_running_loop()
        try:
            avatar, cached = await loop.run_in_executor(
                request.app.state.executor, avatars.add, bytes(body)
            )
        except PortraitError as exc:
            status = 413 if exc.code == "portrait_too_large" else 400
            return _error(status, exc.code, exc.message)
        yaw, pitch, roll = avatar.pose.angles_deg()
        return JSONResponse(
            {
                "avatar_id": avatar.avatar_id,
                "cached": cached,
                "pose_deg": {"yaw": yaw, "pitch": pitch, "roll": roll},
            },
            status_code=200 if cached else 201,
        )

    @app.get("/v1/avatars/{avatar_id}/image", response_class=Response)
    async def avatar_image(avatar_id: str, request: Request) -> Response:
        """The avatar's 512x512 crop as PNG (what frames are rendered from)."""
        avatar = request.app.state.avatars.get(avatar_id)
        if avatar is None:
            return _error(404, "unknown_avatar", f"no avatar {avatar_id!r}; upload it first")
        from PIL import Image

        buffer = io.BytesIO()
        Image.fromarray(avatar.image).save(buffer, "PNG")
        return Response(buffer.getvalue(), media_type="image/png")

    @app.websocket("/v1/stream")
    async def stream(websocket: WebSocket) -> None:
        await websocket.app.state.streams.handle(websocket)

    return app
