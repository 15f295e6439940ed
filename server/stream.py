"""The /v1/stream websocket: moves bytes between a client and its lane of the BatchEngine.

Per connection, messages are handled in order: audio is decoded to MFCC rows on a worker
thread and queued on the session's lane, controls are queued behind it, and the engine steps
every session together (``spacelive.batch``). Frames are sent as they are rendered.

Flow control: a lane whose client has not taken ``max_unsent`` frames is not stepped, and a
connection whose lane holds ``max_pending`` rows of audio stops reading its socket until the
engine catches up, so a slow client is backpressured through TCP and never delays the
others. Frames are never dropped. A client that takes no frame for ``STALL_SECONDS`` is
ended with ``client_too_slow``.
"""

import asyncio
import logging
import time
import uuid
from concurrent.futures import Executor

from fastapi import WebSocket, WebSocketDisconnect
from starlette.websockets import WebSocketState

from spacelive.audio_input import InputError
from spacelive.batch import BatchEngine, ControlError, Lane
from spacelive.engine import Engine
from spacelive.face import PortraitError
from spacelive.server.avatars import AvatarStore
from spacelive.server.protocol import (
    MAX_AUDIO_MESSAGE_BYTES,
    Control,
    End,
    ProtocolError,
    Start,
    error_event,
    frame_message,
    parse_client_text,
    ready_event,
)
from spacelive.session import StreamSession

log = logging.getLogger(__name__)

STATS_EVERY_FRAMES = 30
STALL_SECONDS = 10.0  # a client that takes no frame for this long is ended
CLOSE_NORMAL, CLOSE_POLICY, CLOSE_TOO_BIG, CLOSE_INTERNAL, CLOSE_TRY_LATER = (
    1000,
    1008,
    1009,
    1011,
    1013,
)


class _Refusal(Exception):
    def __init__(self, code: str, message: str, close_code: int):
        super().__init__(message)
        self.code, self.message, self.close_code = code, message, close_code


class StreamHandler:
    """Runs every /v1/stream connection of the process."""

    def __init__(
        self,
        engine: Engine,
        batch: BatchEngine,
        avatars: AvatarStore,
        executor: Executor,
        max_sessions: int,
    ):
        self.engine = engine
        self.batch = batch
        self.avatars = avatars
        self.executor = executor
        self.max_sessions = max_sessions
        self.active = 0

    async def handle(self, websocket: WebSocket) -> None:
        await websocket.accept()
        connection = _Connection(self, websocket)
        try:
            await connection.run()
        except WebSocketDisconnect:
            log.info("session %s: client disconnected", connection.session_id)
        except (ProtocolError, InputError, PortraitError) as exc:
            close = CLOSE_TOO_BIG if exc.code == "message_too_large" else CLOSE_POLICY
            await connection.fail(exc.code, exc.message, close)
        except _Refusal as exc:
            await connection.fail(exc.code, exc.message, exc.close_code)
        except Exception:
            log.exception("session %s failed", connection.session_id)
            await connection.fail(
                "internal_error", "the server failed while processing this stream", CLOSE_INTERNAL
            )
        finally:
            connection.release()


class _Connection:
    def __init__(self, handler: StreamHandler, websocket: WebSocket):
        self.handler = handler
        self.ws = websocket
        self.session_id = uuid.uuid4().hex[:12]
        self.session: StreamSession | None = None
        self.lane: Lane | None = None
        self._changed = asyncio.Event()  # the engine touched the lane
        self._counted = False
        self._pending: asyncio.Future | None = None  # work on a worker thread, if any
        self._last_stats = 0
        self._started_at = time.monotonic()

    async def run(self) -> None:
        receiving: asyncio.Future | None = None
        try:
            while True:
                if receiving is None and (self.lane is None or self.lane.has_room):
                    receiving = asyncio.ensure_future(self.ws.receive())
                waits = {receiving} if receiving is not None else set()
                if self.lane is not None:
                    waits.add(asyncio.ensure_future(self._changed.wait()))
                done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                for task in waits - {receiving}:
                    task.cancel()
                await self._pump()
                if receiving is None or receiving not in done:
                    continue
                message, receiving = receiving.result(), None
                if message["type"] == "websocket.disconnect":
                    raise WebSocketDisconnect(message.get("code", 1000))
                if message.get("bytes") is not None:
                    await self._on_audio(message["bytes"])
                elif message.get("text") is not None:
                    parsed = parse_client_text(message["text"])
                    if isinstance(parsed, Start):
                        await self._on_start(parsed)
                    elif isinstance(parsed, Control):
                        self._on_control(parsed)
                    elif isinstance(parsed, End):
                        await self._on_end()
                        return
        finally:
            if receiving is not None:
                receiving.cancel()

    async def _work(self, fn, *args):
        loop = asyncio.get_running_loop()
        self._pending = loop.run_in_executor(self.handler.executor, fn, *args)
        return await self._pending

    async def _on_start(self, start: Start) -> None:
        if self.session is not None:
            raise ProtocolError("already_started", "this stream has started; send `start` once")
        handler = self.handler
        if handler.active >= handler.max_sessions:
            raise _Refusal(
                "server_busy",
                f"the server is at its limit of {handler.max_sessions} concurrent sessions; "
                "retry later",
                CLOSE_TRY_LATER,
            )
        handler.active += 1
        self._counted = True
        portrait = start.portrait_bytes()
        if portrait is not None:
            avatar, _ = await self._work(handler.avatars.add, portrait)
        else:
            avatar = handler.avatars.get(start.avatar_id or "default")
            if avatar is None:
                raise ProtocolError(
                    "unknown_avatar",
                    f"no avatar {start.avatar_id!r}; upload the portrait with POST /v1/avatars "
                    "or send it inline as start.portrait",
                )
        audio = start.audio.spec()
        try:
            self.session = await self._work(
                handler.engine.open_session,
                avatar,
                audio,
                start.controls.update(),
                start.seed,
                start.output,
            )
        except ValueError as exc:  # controls the session refuses (a pose mode without track)
            if isinstance(exc, (ProtocolError, InputError)):
                raise
            raise ProtocolError("invalid_control", f"start.controls: {exc}") from None
        loop = asyncio.get_running_loop()
        self.lane = handler.batch.attach(
            self.session, lambda: loop.call_soon_threadsafe(self._changed.set)
        )
        log.info("session %s: started on avatar %s", self.session_id, avatar.avatar_id)
        await self.ws.send_json(
            ready_event(
                self.session_id,
                avatar,
                audio,
                handler.engine.motion.lookahead,
                handler.engine.motion.stages.motion_basis if start.output == "keypoints" else None,
            )
        )

    async def _on_audio(self, pcm: bytes) -> None:
        if len(pcm) > MAX_AUDIO_MESSAGE_BYTES:
            raise ProtocolError(
                "message_too_large",
                f"audio message of {len(pcm)} bytes exceeds {MAX_AUDIO_MESSAGE_BYTES} bytes; "
                "send audio in chunks of 20-100 ms",
            )
        if self.session is None or self.lane is None:
            raise ProtocolError(
                "audio_before_start", "audio arrived before `start`; send `start` first"
            )
        self.handler.batch.submit(self.lane, await self._work(self.session.decode, pcm))

    def _on_control(self, control: Control) -> None:
        if self.lane is None:
            raise ProtocolError("control_before_start", "`control` arrived before `start`")
        try:
            self.handler.batch.control(self.lane, control.update())
        except ValueError as exc:
            if isinstance(exc, ProtocolError):
                raise
            raise ProtocolError("invalid_control", f"control: {exc}") from None

    async def _on_end(self) -> None:
        if self.session is None or self.lane is None:
            raise ProtocolError("end_before_start", "`end` arrived before `start`")
        session, lane = self.session, self.lane
        rows, total = await self._work(session.finish)
        self.handler.batch.submit(lane, rows, total)
        while not lane.idle:
            await self._changed.wait()
            await self._pump()
        await self._pump()
        if session.frames_produced != total:
            raise RuntimeError(f"stream produced {session.frames_produced} frames, not {total}")
        await self.ws.send_json(
            {
                "type": "done",
                "frames": session.frames_produced,
                "audio_seconds": session.samples_received / session.sample_rate,
                "stage_ms": session.times.per_frame_ms(),
            }
        )
        await self.ws.close(CLOSE_NORMAL)

    async def _pump(self) -> None:
        """Send the lane's rendered frames (and, every so often, stats); raise its failure."""
        self._changed.clear()
        lane = self.lane
        if lane is None:
            return
        if lane.error is not None:
            if isinstance(lane.error, ControlError):
                raise ProtocolError("invalid_control", f"control: {lane.error}")
            raise RuntimeError("the session failed") from lane.error
        frames = lane.take_frames()
        for frame in frames:
            try:
                await asyncio.wait_for(self.ws.send_bytes(frame_message(frame)), STALL_SECONDS)
            except TimeoutError:
                raise _Refusal(
                    "client_too_slow",
                    f"the client took no frame for {STALL_SECONDS:g} s; read frames as they come",
                    CLOSE_POLICY,
                ) from None
        if frames:
            lane.sent(len(frames))
        session = lane.session
        if session.frames_produced - self._last_stats >= STATS_EVERY_FRAMES:
            self._last_stats = session.frames_produced
            elapsed = time.monotonic() - self._started_at
            await self.ws.send_json(
                {
                    "type": "stats",
                    "frames": session.frames_produced,
                    "fps": session.frames_produced / elapsed if elapsed > 0 else 0.0,
                    "stage_ms": session.times.per_frame_ms(),
                }
            )

    async def fail(self, code: str, message: str, close_code: int) -> None:
        """Tell the client what went wrong, once, and close."""
        log.warning("session %s: %s: %s", self.session_id, code, message)
        if self.ws.application_state != WebSocketState.CONNECTED:
            return
        try:
            await self.ws.send_json(error_event(code, message))
            await self.ws.close(close_code)
        except (WebSocketDisconnect, RuntimeError):
            pass

    def release(self) -> None:
        lane, self.lane, self.session = self.lane, None, None
        if lane is not None:
            if self._pending is not None and not self._pending.done():
                # Cancelled mid-decode: the worker thread still holds the session.
                self._pending.add_done_callback(lambda _: self.handler.batch.detach(lane))
            else:
                self.handler.batch.detach(lane)
        if self._counted:
            self.handler.active -= 1
            self._counted = False
