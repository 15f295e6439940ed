"""The /v1/stream websocket: translates the protocol to and from a ``Stream``
(``spacelive.stream.runner``).

Per connection, one task reads the client's messages in order (``start``, then audio,
``control`` and ``end``) and feeds the stream; another sends the stream's frames as they come,
``stats`` every 30 frames, and ``done``. Whichever fails first ends both, with the specific
error.

Flow control is the stream's: ``push_audio`` waits while the engine holds 5 s of this client's
audio, so the reader stops reading the socket (TCP backpressure), and a stream whose frames
are not taken is not stepped. Frames are never dropped. A client that takes no frame for
``STALL_SECONDS`` is ended with ``client_too_slow``.
"""

import asyncio
import logging
import time
import uuid

from fastapi import WebSocket, WebSocketDisconnect
from starlette.websockets import WebSocketState

from spacelive.face.analysis import PortraitError
from spacelive.media.audio_input import OPUS_RATE, InputError
from spacelive.media.opus_out import PACKET_MS as OPUS_PACKET_MS
from spacelive.media.opus_out import OpusEncoder
from spacelive.server.avatars import AvatarStore
from spacelive.server.protocol import (
    MAX_AUDIO_MESSAGE_BYTES,
    Clear,
    Control,
    End,
    ProtocolError,
    Start,
    audio_message,
    error_event,
    frame_message,
    opus_message,
    parse_client_text,
    ready_event,
)
from spacelive.stream.runner import (
    ConsumerTooSlow,
    ControlError,
    Done,
    FrameAudio,
    Stream,
    StreamEvent,
    StreamRunner,
)

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
OUTPUTS = {"video": "h264", "keypoints": "keypoints"}
"""The protocol's outputs, as the stream runner names them."""


class _Refusal(Exception):
    def __init__(self, code: str, message: str, close_code: int):
        super().__init__(message)
        self.code, self.message, self.close_code = code, message, close_code


class StreamHandler:
    """Runs every /v1/stream connection of the process."""

    def __init__(self, runner: StreamRunner, avatars: AvatarStore, max_sessions: int):
        self.runner = runner
        self.avatars = avatars
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
        self.stream: Stream | None = None
        self._opus: OpusEncoder | None = None  # audio_out "opus"
        self._packets = 0  # Opus packets sent
        self._counted = False
        self._started_at = time.monotonic()

    async def run(self) -> None:
        while self.stream is None:  # until `start`
            message = await self._receive()
            if isinstance(message, Start):
                await self._on_start(message)
            elif isinstance(message, bytes):
                raise ProtocolError(
                    "audio_before_start", "audio arrived before `start`; send `start` first"
                )
            elif isinstance(message, Control):
                raise ProtocolError("control_before_start", "`control` arrived before `start`")
            elif isinstance(message, Clear):
                raise ProtocolError("clear_before_start", "`clear` arrived before `start`")
            else:
                raise ProtocolError("end_before_start", "`end` arrived before `start`")
        reading = asyncio.ensure_future(self._read(self.stream))
        writing = asyncio.ensure_future(self._write(self.stream))
        try:
            done, _ = await asyncio.wait({reading, writing}, return_when=asyncio.FIRST_EXCEPTION)
            failures = [task.exception() for task in done]  # each retrieved
            first = next((exc for exc in failures if exc is not None), None)
            if first is not None:
                raise first  # the first failure, as the connection's
        finally:
            for task in (reading, writing):
                task.cancel()

    async def _receive(self) -> bytes | Start | Control | Clear | End:
        message = await self.ws.receive()
        if message["type"] == "websocket.disconnect":
            raise WebSocketDisconnect(message.get("code", 1000))
        if message.get("bytes") is not None:
            data = message["bytes"]
            if len(data) > MAX_AUDIO_MESSAGE_BYTES:
                raise ProtocolError(
                    "message_too_large",
                    f"audio message of {len(data)} bytes exceeds {MAX_AUDIO_MESSAGE_BYTES} "
                    "bytes; send audio in chunks of 20-100 ms",
                )
            return data
        return parse_client_text(message.get("text") or "")

    async def _on_start(self, start: Start) -> None:
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
        loop = asyncio.get_running_loop()
        if portrait is not None:
            avatar, _ = await loop.run_in_executor(
                handler.runner.executor, handler.avatars.add, portrait
            )
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
            self.stream = await handler.runner.open_stream(
                avatar,
                audio,
                start.controls.update(),
                start.seed,
                OUTPUTS[start.output],
                start.pacing,
                audio_out=start.audio_out != "none",
            )
        except ValueError as exc:  # controls the session refuses (a pose mode without track)
            if isinstance(exc, (ProtocolError, InputError)):
                raise
            raise ProtocolError("invalid_control", f"start.controls: {exc}") from None
        log.info("session %s: started on avatar %s", self.session_id, avatar.avatar_id)
        engine = handler.runner.engine
        audio_out = None
        if start.audio_out == "pcm_s16le":
            audio_out = {"encoding": "pcm_s16le", "sample_rate": audio.sample_rate}
        elif start.audio_out == "opus":
            self._opus = OpusEncoder(audio.sample_rate)
            audio_out = {
                "encoding": "opus",
                "sample_rate": OPUS_RATE,
                "packet_ms": OPUS_PACKET_MS,
                "pre_skip": self._opus.pre_skip,
            }
        await self.ws.send_json(
            ready_event(
                self.session_id,
                avatar,
                audio,
                engine.motion.lookahead,
                engine.motion.stages.motion_basis if start.output == "keypoints" else None,
                audio_out,
            )
        )

    async def _read(self, stream: Stream) -> None:
        """The client's messages after `start`, in order, until `end`."""
        while True:
            message = await self._receive()
            if isinstance(message, bytes):
                await stream.push_audio(message)
            elif isinstance(message, Control):
                try:
                    stream.control(message.update())
                except ValueError as exc:
                    if isinstance(exc, ProtocolError):
                        raise
                    raise ProtocolError("invalid_control", f"control: {exc}") from None
            elif isinstance(message, Clear):
                stream.clear()  # answered in order with the frames ("cleared")
            elif isinstance(message, End):
                await stream.end()
                return
            else:
                raise ProtocolError("already_started", "this stream has started; send `start` once")

    async def _write(self, stream: Stream) -> None:
        """The stream's frames as they come, `stats` every so often, then `done`."""
        last_stats = 0
        try:
            async for item in stream:
                if isinstance(item, StreamEvent):
                    await self._send(self.ws.send_json({"type": item.kind, "frame": item.frame}))
                elif isinstance(item, FrameAudio):
                    if self._opus is None:
                        message = audio_message(item.frame_index, item.samples)
                        await self._send(self.ws.send_bytes(message))
                    else:
                        await self._send_opus(self._opus.push(item.samples))
                elif isinstance(item, Done):
                    if self._opus is not None:
                        await self._send_opus(self._opus.finish())
                    done = {
                        "type": "done",
                        "frames": item.frames,
                        "audio_seconds": item.audio_seconds,
                        "stage_ms": item.stage_ms,
                    }
                    await self._send(self.ws.send_json(done))
                    await self._send(self.ws.close(CLOSE_NORMAL))
                    return
                else:
                    await self._send(self.ws.send_bytes(frame_message(item)))
                    if stream.frames_produced - last_stats >= STATS_EVERY_FRAMES:
                        last_stats = stream.frames_produced
                        await self._send(self.ws.send_json(self._stats(stream)))
        except ControlError as exc:
            raise ProtocolError("invalid_control", f"control: {exc}") from None
        except ConsumerTooSlow as exc:
            raise _Refusal("client_too_slow", str(exc), CLOSE_POLICY) from None

    async def _send_opus(self, packets: list[bytes]) -> None:
        for packet in packets:
            await self._send(self.ws.send_bytes(opus_message(self._packets, packet)))
            self._packets += 1

    async def _send(self, sending) -> None:
        """One send to the client, which must take it within ``STALL_SECONDS``."""
        try:
            await asyncio.wait_for(sending, STALL_SECONDS)
        except TimeoutError:
            raise _Refusal(
                "client_too_slow",
                f"the client took no message for {STALL_SECONDS:g} s; read frames as they come",
                CLOSE_POLICY,
            ) from None

    def _stats(self, stream: Stream) -> dict:
        elapsed = time.monotonic() - self._started_at
        return {
            "type": "stats",
            "frames": stream.frames_produced,
            "fps": stream.frames_produced / elapsed if elapsed > 0 else 0.0,
            "stage_ms": stream.session.times.per_frame_ms(),
        }

    async def fail(self, code: str, message: str, close_code: int) -> None:
        """Tell the client what went wrong, once, and close."""
        log.warning("session %s: %s: %s", self.session_id, code, message)
        if self.ws.application_state != WebSocketState.CONNECTED:
            return
        try:  # a client that does not read cannot hold the connection open
            await asyncio.wait_for(self.ws.send_json(error_event(code, message)), STALL_SECONDS)
            await asyncio.wait_for(self.ws.close(close_code), STALL_SECONDS)
        except (WebSocketDisconnect, RuntimeError, TimeoutError):
            pass

    def release(self) -> None:
        stream, self.stream = self.stream, None
        if stream is not None:
            stream.close()
        if self._counted:
            self.handler.active -= 1
            self._counted = False
