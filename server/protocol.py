"""The wire format of /v1/stream: every message the client and the server exchange.

docs/protocol.md is the prose version of this module; keep them in step.
"""

import base64
import binascii
import json
import struct
from typing import Annotated, Literal

import numpy as np
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from spacelive import FRAME_RATE, FRAME_SIZE
from spacelive.face.analysis import Avatar
from spacelive.face.landmarks import EMOTIONS
from spacelive.media.audio import SUPPORTED_SAMPLE_RATES, pcm_s16le
from spacelive.media.audio_input import OPUS_RATE, AudioSpec
from spacelive.media.video import EncodedFrame
from spacelive.motion.controls import (
    DEFAULT_BLINKS_PER_MINUTE,
    MAX_BLINKS_PER_MINUTE,
    MAX_MOUTH_SCALE,
    ControlUpdate,
)
from spacelive.motion.gaze import MAX_GAZE, MAX_TRAJECTORY_POINTS, GazeTrajectory
from spacelive.motion.keypoints import MotionBasis, rig_json
from spacelive.motion.pose import (
    MAX_TRACK_FRAMES,
    MAX_TRANSLATION,
    POSE_MODES,
    PoseTrack,
    PoseTrackError,
)

PROTOCOL_VERSION: Literal[1] = 1
MAX_AUDIO_MESSAGE_BYTES = 1 << 20
MAX_TEXT_MESSAGE_BYTES = 15 << 20  # room for a base64 portrait inline in `start`
MAX_INLINE_PORTRAIT_BYTES = 10 << 20
WEBSOCKET_MAX_BYTES = 16 << 20  # larger frames are refused by the websocket layer (close 1009)

FRAME_HEADER = struct.Struct("<BBHI")
"""Binary server message header: kind (1 video, 2 keypoints, 3 the frame's audio as PCM, 4 an
Opus packet of the audio), flags (bit 0: keyframe), reserved, frame index (kind 4: packet
number)."""
KINDS = (1, 2)  # frames
KIND_AUDIO = 3
KIND_OPUS = 4
FLAG_KEYFRAME = 1


class ProtocolError(ValueError):
    """A message the server refuses; ``code`` is stable, the message says the fix."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AudioFormat(_Strict):
    encoding: Literal["pcm_s16le", "opus"] = "pcm_s16le"
    sample_rate: int | None = Field(default=None, description="PCM: 16000; Opus: 48000")
    channels: Literal[1, 2] = 1
    container: Literal["packets", "ogg"] | None = Field(
        default=None, description="Opus only: one packet per message, or an Ogg Opus stream"
    )
    pre_skip: int | None = Field(
        default=None, ge=0, le=OPUS_RATE, description="Opus packets only: encoder delay, 48 kHz"
    )

    @field_validator("sample_rate")
    @classmethod
    def _supported(cls, rate: int | None) -> int | None:
        if rate is not None and rate not in SUPPORTED_SAMPLE_RATES:
            raise ValueError(f"sample_rate {rate} is not supported")
        return rate

    @model_validator(mode="after")
    def _consistent(self) -> "AudioFormat":
        if self.encoding == "pcm_s16le":
            if self.channels != 1:
                raise ValueError("PCM audio must be mono (channels 1)")
            if self.container is not None or self.pre_skip is not None:
                raise ValueError("container and pre_skip are for Opus audio only")
        else:
            if self.sample_rate not in (None, OPUS_RATE):
                raise ValueError(
                    f"Opus is decoded at {OPUS_RATE} Hz: declare sample_rate {OPUS_RATE} or leave "
                    "it out (the rate the microphone recorded at does not matter)"
                )
            if self.container == "ogg" and self.pre_skip is not None:
                raise ValueError("an Ogg Opus stream gives its pre-skip in OpusHead; leave it out")
        return self

    def spec(self) -> AudioSpec:
        if self.encoding == "pcm_s16le":
            return AudioSpec("pcm_s16le", self.sample_rate or 16_000)
        return AudioSpec(
            "opus", OPUS_RATE, self.channels, self.container or "packets", self.pre_skip or 0
        )


_Angle = Annotated[float, Field(ge=-90.0, le=90.0, allow_inf_nan=False)]
_Shift = Annotated[float, Field(ge=-MAX_TRANSLATION, le=MAX_TRANSLATION, allow_inf_nan=False)]


_Gaze = Annotated[float, Field(ge=-MAX_GAZE, le=MAX_GAZE, allow_inf_nan=False)]


class GazePoint(_Strict):
    """A gaze trajectory point: at ``t`` seconds, the iris offset (x right, y down)."""

    t: float = Field(ge=0.0, le=3600.0)
    x: _Gaze = 0.0
    y: _Gaze = 0.0


class PoseFrame(_Strict):
    """One head pose: angles in degrees (positive yaw turns the face toward image right,
    positive pitch tilts the chin down, positive roll turns clockwise), translation in face
    units (half the ear-to-ear distance; x right, y down, z toward the viewer)."""

    yaw: _Angle = 0.0
    pitch: _Angle = 0.0
    roll: _Angle = 0.0
    x: _Shift = 0.0
    y: _Shift = 0.0
    z: _Shift = 0.0

    def vector(self) -> np.ndarray:
        """(6,) float32: radians and face units."""
        angles = np.radians([self.yaw, self.pitch, self.roll])
        return np.array([*angles, self.x, self.y, self.z], np.float32)


class PoseTrackMessage(_Strict):
    """A reference head motion: poses at ``fps``, transferred relative to the first."""

    fps: float = Field(default=FRAME_RATE, ge=1.0, le=240.0)
    frames: list[PoseFrame] = Field(min_length=1, max_length=MAX_TRACK_FRAMES)

    def track(self) -> PoseTrack:
        angles = np.array([(f.yaw, f.pitch, f.roll) for f in self.frames])
        translation = np.array([(f.x, f.y, f.z) for f in self.frames])
        return PoseTrack.from_poses(angles, self.fps, translation)


class PoseControl(_Strict):
    """Where the head pose comes from: ``mode`` switches (blending over 6 frames); ``track``
    (with mode reference) is the reference motion; ``live`` (with mode live) is this frame's
    pose, held until the next."""

    mode: Literal[POSE_MODES] | None = None  # type: ignore[valid-type]
    track: PoseTrackMessage | None = None
    live: PoseFrame | None = None

    def reference(self) -> PoseTrack | None:
        """The track, resampled to 30 fps and made relative (ProtocolError if unusable)."""
        if self.track is None:
            return None
        try:
            return self.track.track()
        except PoseTrackError as exc:
            raise ProtocolError("invalid_pose_track", str(exc)) from None

    @model_validator(mode="after")
    def _consistent(self) -> "PoseControl":
        if self.track is not None and self.mode != "reference":
            raise ValueError("a pose track goes with mode 'reference'")
        if self.live is not None and self.mode not in (None, "live"):
            raise ValueError("a live pose goes with mode 'live'")
        return self


class Controls(_Strict):
    """Animation controls; every field optional in `control` messages."""

    emotion: dict[str, Annotated[float, Field(ge=0.0, le=1.0)]] | None = Field(
        default=None, description="emotion name -> intensity in [0, 1], e.g. {'happy': 0.7}"
    )

    @field_validator("emotion")
    @classmethod
    def _known_emotions(cls, emotion):
        if emotion is not None:
            unknown = sorted(set(emotion) - set(EMOTIONS))
            if unknown:
                raise ValueError(f"unknown emotion {unknown}; use {', '.join(EMOTIONS)}")
        return emotion

    blinks_per_minute: float | None = Field(
        default=None,
        ge=0.0,
        le=MAX_BLINKS_PER_MINUTE,
        description=f"blink rate (a Poisson process); 0 disables; {DEFAULT_BLINKS_PER_MINUTE:g} "
        "if never set",
    )
    blink: bool = Field(default=False, description="blink now (4 frames)")
    gaze: (
        tuple[
            Annotated[float, Field(ge=-MAX_GAZE, le=MAX_GAZE)],
            Annotated[float, Field(ge=-MAX_GAZE, le=MAX_GAZE)],
        ]
        | None
    ) = Field(default=None, description="iris offset [x right, y down] in half eye widths")

    gaze_trajectory: list[GazePoint] | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_TRAJECTORY_POINTS,
        description="timed gaze points from the frame this applies to (ends a fixed gaze)",
    )
    saccades: bool | None = Field(
        default=None, description="natural mode: small random saccades on top of the gaze"
    )

    @field_validator("gaze_trajectory")
    @classmethod
    def _increasing(cls, points):
        if points is not None and any(b.t <= a.t for a, b in zip(points, points[1:], strict=False)):
            raise ValueError("gaze_trajectory times must increase")
        return points

    mouth_scale: float | None = Field(
        default=None,
        ge=1.0,
        le=MAX_MOUTH_SCALE,
        description="multiplies the mouth's motion (1: as predicted, up to 2); 1 if never set",
    )

    pose: PoseControl | None = Field(
        default=None, description="head pose mode (generated if never set), track, live pose"
    )

    def emotion_vector(self) -> list[float]:
        emotion = self.emotion or {}
        return [float(emotion.get(name, 0.0)) for name in EMOTIONS]

    def update(self) -> ControlUpdate:
        """What the session should change (fields left out change nothing)."""
        return ControlUpdate(
            emotion=None if self.emotion is None else np.array(self.emotion_vector(), np.float32),
            blinks_per_minute=self.blinks_per_minute,
            gaze=self.gaze,
            gaze_trajectory=None
            if self.gaze_trajectory is None
            else GazeTrajectory(
                np.array([p.t for p in self.gaze_trajectory]),
                np.array([(p.x, p.y) for p in self.gaze_trajectory]),
            ),
            saccades=self.saccades,
            blink=self.blink,
            mouth_scale=self.mouth_scale,
            pose_mode=None if self.pose is None else self.pose.mode,
            pose_track=None if self.pose is None else self.pose.reference(),
            live_pose=None
            if self.pose is None or self.pose.live is None
            else self.pose.live.vector(),
        )


class Start(_Strict):
    type: Literal["start"]
    version: Literal[1] = PROTOCOL_VERSION
    avatar_id: str | None = Field(default=None, description="from POST /v1/avatars, or 'default'")
    portrait: str | None = Field(default=None, description="base64 JPEG/PNG, instead of avatar_id")
    audio: AudioFormat = AudioFormat()
    controls: Controls = Controls()
    seed: int = Field(default=0, ge=0, lt=2**63)
    output: Literal["video", "keypoints"] = "video"
    audio_out: Literal["none", "pcm_s16le", "opus"] = Field(
        default="none",
        description="pcm_s16le: after each frame, the audio it shows (binary kind 3); opus: "
        "the same audio as 20 ms Opus packets (binary kind 4)",
    )
    pacing: Literal["asap", "realtime"] = Field(
        default="asap",
        description="asap: frames as fast as the audio arrives; realtime: on the 30 fps clock, "
        "the idle face between utterances",
    )

    def portrait_bytes(self) -> bytes | None:
        if self.portrait is None:
            return None
        try:
            data = base64.b64decode(self.portrait, validate=True)
        except (binascii.Error, ValueError):
            raise ProtocolError(
                "invalid_portrait_encoding", "start.portrait must be base64 (RFC 4648) image bytes"
            ) from None
        if len(data) > MAX_INLINE_PORTRAIT_BYTES:
            raise ProtocolError(
                "portrait_too_large",
                f"an inline portrait may be at most {MAX_INLINE_PORTRAIT_BYTES >> 20} MiB; "
                "upload larger ones with POST /v1/avatars",
            )
        return data


class Control(Controls):
    type: Literal["control"]


class End(_Strict):
    type: Literal["end"]


class Clear(_Strict):
    """Barge-in: drop the audio sent but not yet shown."""

    type: Literal["clear"]


ClientMessage = Annotated[Start | Control | Clear | End, Field(discriminator="type")]
_client_message = TypeAdapter(ClientMessage)
_CLIENT_TYPES = ("start", "control", "clear", "end")


def parse_client_text(text: str) -> Start | Control | Clear | End:
    """A client's JSON message, or ProtocolError saying exactly what is wrong."""
    if len(text.encode()) > MAX_TEXT_MESSAGE_BYTES:
        raise ProtocolError(
            "message_too_large",
            f"text message of {len(text.encode())} bytes exceeds {MAX_TEXT_MESSAGE_BYTES} bytes",
        )
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ProtocolError("invalid_json", f"message is not valid JSON: {exc}") from None
    if not isinstance(raw, dict) or raw.get("type") not in _CLIENT_TYPES:
        kind = raw.get("type") if isinstance(raw, dict) else type(raw).__name__
        raise ProtocolError(
            "unknown_message",
            f"unknown message type {kind!r}; send one of {', '.join(_CLIENT_TYPES)}",
        )
    try:
        return _client_message.validate_python(raw)
    except ValidationError as exc:
        if any(err["loc"][-1:] == ("sample_rate",) for err in exc.errors()):
            rate = raw.get("audio", {}).get("sample_rate")
            raise ProtocolError(
                "unsupported_sample_rate",
                f"audio.sample_rate {rate!r} is not supported; send PCM at one of "
                f"{', '.join(map(str, SUPPORTED_SAMPLE_RATES))} Hz",
            ) from None
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'][1:]) or raw['type']}: {err['msg']}"
            for err in exc.errors()
        )
        raise ProtocolError(
            "invalid_message", f"invalid {raw['type']} message: {problems}"
        ) from None


def frame_message(frame: EncodedFrame) -> bytes:
    """Binary server message: 8-byte header + an H.264 Annex B access unit (kind 1) or a
    keypoint frame (kind 2)."""
    flags = FLAG_KEYFRAME if frame.keyframe else 0
    return FRAME_HEADER.pack(frame.kind, flags, 0, frame.frame_index) + frame.data


def audio_message(frame_index: int, samples: np.ndarray) -> bytes:
    """Binary server message kind 3: the audio frame ``frame_index`` shows, PCM s16le mono."""
    return FRAME_HEADER.pack(KIND_AUDIO, 0, 0, frame_index) + pcm_s16le(samples)


def opus_message(number: int, packet: bytes) -> bytes:
    """Binary server message kind 4: Opus packet ``number`` of the stream's audio out."""
    return FRAME_HEADER.pack(KIND_OPUS, 0, 0, number) + packet


def parse_audio_message(message: bytes) -> tuple[int, np.ndarray]:
    """Inverse of audio_message: (frame index, samples (n,) int16)."""
    kind, _, _, frame_index = FRAME_HEADER.unpack_from(message)
    if kind != KIND_AUDIO:
        raise ProtocolError("unknown_binary_kind", f"binary message kind {kind} is not audio")
    return frame_index, np.frombuffer(message[FRAME_HEADER.size :], "<i2")


def parse_frame_message(message: bytes) -> EncodedFrame:
    """Inverse of frame_message."""
    if len(message) < FRAME_HEADER.size:
        raise ProtocolError(
            "short_message", f"binary message of {len(message)} bytes has no header"
        )
    kind, flags, _, frame_index = FRAME_HEADER.unpack_from(message)
    if kind not in KINDS:
        raise ProtocolError("unknown_binary_kind", f"unknown binary message kind {kind}")
    return EncodedFrame(
        frame_index, bool(flags & FLAG_KEYFRAME), message[FRAME_HEADER.size :], kind=kind
    )


def ready_event(
    session_id: str,
    avatar: Avatar,
    audio: AudioSpec,
    lookahead_frames: int,
    basis: MotionBasis | None = None,
    audio_out: dict | None = None,
) -> dict:
    """``basis``: the keypoint stream's (output "keypoints"); None for video. ``audio_out``:
    how the audio comes back, if asked for."""
    event = {
        "type": "ready",
        "version": PROTOCOL_VERSION,
        "session_id": session_id,
        "avatar_id": avatar.avatar_id,
        "video": {
            "codec": "h264",
            "codec_string": "avc1.42E01F",
            "format": "annexb",
            "width": FRAME_SIZE,
            "height": FRAME_SIZE,
            "frame_rate": FRAME_RATE,
        },
        "audio": _audio_fields(audio),
        "lookahead_frames": lookahead_frames,
        "output": "video" if basis is None else "keypoints",
    }
    if basis is not None:
        event["keypoints"] = {"rig": rig_json(avatar), "basis": basis.to_json()}
    if audio_out is not None:
        event["audio_out"] = audio_out
    return event


def _audio_fields(audio: AudioSpec) -> dict:
    fields: dict[str, str | int] = {
        "encoding": audio.encoding,
        "sample_rate": audio.sample_rate,
        "channels": audio.channels,
    }
    if audio.encoding == "opus":
        fields["container"] = audio.container
        if audio.container == "packets":
            fields["pre_skip"] = audio.pre_skip
    return fields


def error_event(code: str, message: str) -> dict:
    return {"type": "error", "code": code, "message": message}
