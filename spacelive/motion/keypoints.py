"""Keypoint output: each frame's motion, small enough for a bad link, for a receiver that
renders the portrait itself (docs/protocol.md, "Keypoint output").

A frame is the renderer's keypoints (478, 3) split in two: the head's pose offset (6 values)
and the expression, the keypoints in the face's frontal frame minus the portrait's own
(``FrameMotion.expression``; speech, emotion, blinks and gaze are all in it). The expression is
sent as its coordinates in a fixed linear basis fitted to the model's own output
(``MotionBasis``, 40 components), plus, for the few
values the basis misses by more than ``TOLERANCE``, a correction: whatever the model does, no
frontal keypoint coordinate is off by more than TOLERANCE. A receiver poses
``frontal mesh + expression`` with the pose and renders.

Every value is quantized to a fixed unit and sent as the difference from the previous
frame's (closed loop: from what the receiver holds, so errors never add up), zigzag-LEB128
varints. Every ``ABSOLUTE_EVERY`` frames differences start again from zero (flag bit 0), as
video restarts at an IDR.
"""

import base64
import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from spacelive.face.analysis import Avatar, HeadPose
from spacelive.face.landmarks import MESH_POINTS, SPARSE_POINTS

BASIS_FILE = "motion_basis.npz"
EXPRESSION_VALUES = MESH_POINTS * 3
POSE_VALUES = 6
POSE_UNIT = 1e-4  # radians; crop units for translation
COEFFICIENT_UNIT = 3e-4  # normalized units (ears 2 apart): basis coefficients and corrections
TOLERANCE = 2.5e-3  # normalized units: about 0.3 px of the 512 frame for a typical face
ABSOLUTE_EVERY = 60
FLAG_ABSOLUTE = 1


@dataclass(frozen=True)
class MotionBasis:
    """expression (478, 3) ~ mean + coefficients @ components."""

    mean: np.ndarray  # (1434,) float32
    components: np.ndarray  # (K, 1434) float32, orthonormal rows

    @classmethod
    def fit(cls, expressions: np.ndarray, components: int = 40) -> "MotionBasis":
        """Principal components of expressions (N, 478, 3)."""
        flat = expressions.reshape(len(expressions), EXPRESSION_VALUES).astype(np.float64)
        mean = flat.mean(axis=0)
        _, _, vt = np.linalg.svd(flat - mean, full_matrices=False)
        return cls(mean.astype(np.float32), vt[:components].astype(np.float32))

    @classmethod
    def load(cls, path: Path) -> "MotionBasis":
        with np.load(path) as stored:
            return cls(stored["mean"], stored["components"])

    def save(self, path: Path) -> None:
        np.savez(path, mean=self.mean, components=self.components)

    def to_json(self) -> dict:
        """The ``ready`` event's basis (about 300 KB of base64), encoded once per basis: every
        keypoint session of a server sends the same one."""
        return dict(self._json)

    @functools.cached_property
    def _json(self) -> dict:
        return {
            "components": len(self.components),
            "mean": _b64(self.mean),
            "basis": _b64(self.components),
        }

    @classmethod
    def from_json(cls, fields: dict) -> "MotionBasis":
        k = int(fields["components"])
        return cls(_unb64(fields["mean"], (EXPRESSION_VALUES,)), _unb64(fields["basis"], (k, -1)))


@dataclass(frozen=True)
class KeypointFrame:
    """One frame as a receiver holds it (quantized)."""

    frame_index: int
    pose: np.ndarray  # (6,) float32, offsets (rad, crop units) from the portrait's pose
    expression: np.ndarray  # (478, 3) float32, frontal frame


def rig_json(avatar: Avatar) -> dict:
    """What a receiver needs of the portrait besides its image (GET /v1/avatars/{id}/image)."""
    return {
        "avatar_id": avatar.avatar_id,
        "mesh_px": _b64(avatar.mesh_px),
        "landmarks0": _b64(avatar.landmarks0),
        "rotation": _b64(avatar.pose.rotation),
        "translation": _b64(avatar.pose.translation),
        "scale": float(avatar.pose.scale),
    }


def avatar_from_rig(rig: dict, image: np.ndarray) -> Avatar:
    pose = HeadPose(
        _unb64(rig["rotation"], (3, 3)),
        _unb64(rig["translation"], (3,)),
        float(rig["scale"]),
    )
    return Avatar(
        rig["avatar_id"],
        image,
        _unb64(rig["mesh_px"], (-1, 3)),
        pose,
        _unb64(rig["landmarks0"], (SPARSE_POINTS, 3)),
    )


class Motion(Protocol):
    frame_index: int
    pose: np.ndarray
    expression: np.ndarray


class _Coder:
    """What both ends hold: the basis (in float64, cast once) and the last frame's values."""

    def __init__(self, basis: MotionBasis):
        self.basis = basis
        self._mean = basis.mean.astype(np.float64)
        self._components = basis.components.astype(np.float64)
        self._previous = np.zeros(POSE_VALUES + len(basis.components), np.int64)

    def _expand(self, quantized: np.ndarray) -> np.ndarray:
        """(1434,) float64 expression from quantized coefficients, as both ends compute it."""
        return self._mean + (quantized * COEFFICIENT_UNIT) @ self._components


class KeypointEncoder(_Coder):
    """One session's frames -> keypoint message payloads."""

    def encode(self, frame: "Motion") -> tuple[int, bytes]:
        """One frame's motion (a ``spacelive.motion.loop.FrameMotion``) -> (flags, payload)."""
        expression = np.asarray(frame.expression, np.float64).reshape(-1)
        coefficients = self._components @ (expression - self._mean)
        values = np.concatenate(
            [
                np.round(np.asarray(frame.pose, np.float64) / POSE_UNIT),
                np.round(coefficients / COEFFICIENT_UNIT),
            ]
        ).astype(np.int64)
        flags = FLAG_ABSOLUTE if frame.frame_index % ABSOLUTE_EVERY == 0 else 0
        if flags:
            self._previous[:] = 0
        out = bytearray()
        for v in values - self._previous:
            _put_varint(out, _zigzag(int(v)))
        self._previous = values
        # Corrections where the (quantized) basis misses by more than the tolerance.
        held = self._expand(values[POSE_VALUES:])
        residual = expression - held
        where = np.flatnonzero(np.abs(residual) > TOLERANCE)
        _put_varint(out, len(where))
        last = -1
        for i in where:
            _put_varint(out, int(i) - last - 1)
            _put_varint(out, _zigzag(int(round(residual[i] / COEFFICIENT_UNIT))))
            last = int(i)
        return flags, bytes(out)


class KeypointDecoder(_Coder):
    """Keypoint message payloads -> KeypointFrame, in order."""

    def decode(self, frame_index: int, flags: int, payload: bytes) -> KeypointFrame:
        if flags & FLAG_ABSOLUTE:
            self._previous[:] = 0
        reader = _Reader(payload)
        values = self._previous + np.array(
            [_unzigzag(reader.varint()) for _ in range(len(self._previous))], np.int64
        )
        self._previous = values
        expression = self._expand(values[POSE_VALUES:])
        last = -1
        for _ in range(reader.varint()):
            last += reader.varint() + 1
            if last >= EXPRESSION_VALUES:
                raise ValueError(f"keypoint frame {frame_index}: correction index {last}")
            expression[last] += _unzigzag(reader.varint()) * COEFFICIENT_UNIT
        if not reader.done:
            raise ValueError(f"keypoint frame {frame_index}: {reader.left} bytes left over")
        return KeypointFrame(
            frame_index,
            (values[:POSE_VALUES] * POSE_UNIT).astype(np.float32),
            expression.reshape(MESH_POINTS, 3).astype(np.float32),
        )


def _zigzag(v: int) -> int:
    return 2 * v if v >= 0 else -2 * v - 1


def _unzigzag(u: int) -> int:
    return u // 2 if u % 2 == 0 else -(u + 1) // 2


def _put_varint(out: bytearray, u: int) -> None:
    while u >= 0x80:
        out.append((u & 0x7F) | 0x80)
        u >>= 7
    out.append(u)


class _Reader:
    def __init__(self, data: bytes):
        self.data, self.position = data, 0

    def varint(self) -> int:
        shift = result = 0
        while True:
            if self.position >= len(self.data):
                raise ValueError("keypoint frame truncated")
            byte = self.data[self.position]
            self.position += 1
            result |= (byte & 0x7F) << shift
            if byte < 0x80:
                return result
            shift += 7

    @property
    def left(self) -> int:
        return len(self.data) - self.position

    @property
    def done(self) -> bool:
        return self.left == 0


def _b64(array: np.ndarray) -> str:
    """float32 little-endian, base64."""
    return base64.b64encode(np.ascontiguousarray(array, "<f4").tobytes()).decode()


def _unb64(text: str, shape: tuple[int, ...]) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text), "<f4").reshape(shape).astype(np.float32)
