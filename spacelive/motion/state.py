"""The motion loop's state: what each stream carries from one frame to the next.

``RecurrentState`` holds it for B streams as one batch of arrays (the shape of TGI's
``Batch``): ``concatenate`` joins streams' states, ``filter`` keeps some rows, ``split`` gives
each row back. Rows never mix, so stepping a batch is stepping each stream alone, bit for bit
(``tests/test_state.py``). ``MotionState`` is one stream: its row, and what does not change
or is not an array (the portrait, its controls, its idleness).
"""

from dataclasses import dataclass, fields
from typing import Any, Self

import numpy as np

from spacelive.face.analysis import Avatar
from spacelive.motion.controls import FaceControls
from spacelive.motion.idle import IdleMouth
from spacelive.motion.transfer import DenseTransfer

OPEN_ENDED = np.int64(1 << 60)
"""frame_count of a stream whose end is not known yet."""

_LSTM_STATE = ("s2l_h", "s2l_c", "pose_h", "pose_c")
"""Fields in ONNX's LSTM layout (layers, batch, hidden): their batch axis is 1."""


@dataclass(slots=True)
class RecurrentState:
    """B streams' recurrent state; every array's batch axis (1 for LSTM state, 0 otherwise)
    has B rows, row b being stream b's."""

    z: np.ndarray  # (B, pose_latent) float32: PoseGen's latent, drawn from the seed
    caches: tuple[np.ndarray, ...]  # 12 x (B, C_in, kernel - 1) float32: the encoder's windows
    s2l_h: np.ndarray  # (2, B, H) float32
    s2l_c: np.ndarray  # (2, B, H) float32
    landmarks: np.ndarray  # (B, 110, 3) float32: S2L's previous output (around the closed rest)
    pose_h: np.ndarray  # (2, B, P) float32
    pose_c: np.ndarray  # (2, B, P) float32
    pose: np.ndarray  # (B, 6) float32: PoseGen's previous output
    mfcc_index: np.ndarray  # (B,) int64: the next MFCC frame each stream's encoder consumes
    frame_count: np.ndarray  # (B,) int64: each stream's frames, OPEN_ENDED until it ends

    def __len__(self) -> int:
        return self.z.shape[0]

    @classmethod
    def concatenate(cls, states: "list[RecurrentState]") -> Self:
        """One batch of ``states``' rows, in order."""
        if not states:
            raise ValueError("no states to concatenate")
        if len(states) == 1:
            return states[0]  # type: ignore[return-value]
        joined: dict[str, Any] = {}
        for f in fields(cls):
            parts = [getattr(s, f.name) for s in states]
            if f.name == "caches":
                joined[f.name] = tuple(np.concatenate(c) for c in zip(*parts, strict=True))
            else:
                joined[f.name] = np.concatenate(parts, axis=_axis(f.name))
        return cls(**joined)

    def filter(self, keep: list[int] | np.ndarray) -> Self:
        """The rows ``keep`` (indices, in that order), as a batch (this one if it is all)."""
        keep = np.asarray(keep, np.int64)
        if np.array_equal(keep, np.arange(len(self))):
            return self
        kept: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "caches":
                kept[f.name] = tuple(c[keep] for c in value)
            else:
                kept[f.name] = np.take(value, keep, axis=_axis(f.name))
        return type(self)(**kept)

    def split(self) -> "list[RecurrentState]":
        """Each row as a batch of one (views: a state's arrays are replaced, never written)."""
        rows = []
        for b in range(len(self)):
            row: dict[str, Any] = {}
            for f in fields(self):
                value = getattr(self, f.name)
                if f.name == "caches":
                    row[f.name] = tuple(c[b : b + 1] for c in value)
                elif _axis(f.name) == 1:
                    row[f.name] = value[:, b : b + 1]
                else:
                    row[f.name] = value[b : b + 1]
            rows.append(type(self)(**row))
        return rows


def _axis(name: str) -> int:
    return 1 if name in _LSTM_STATE else 0


@dataclass(slots=True)
class MotionState:
    """One stream's state: its ``RecurrentState`` row and what is not batched."""

    avatar: Avatar
    controls: FaceControls  # emotion, blinks, gaze, mouth scale, pose mode
    recurrent: RecurrentState  # a batch of one
    speech_rest: np.ndarray  # (1, 110, 3) the portrait with its lips closed: S2L speaks around it
    parting: np.ndarray  # (1, 110, 3) the portrait's rest minus speech_rest (zero if closed)
    idle: IdleMouth  # whether the portrait is idle, from the audio heard
    frontal_source: np.ndarray  # (478, 3) the portrait's mesh in its frontal frame
    transfer: DenseTransfer  # sparse landmarks -> the mesh, in the frontal frame

    @property
    def mfcc_index(self) -> int:
        """The next MFCC frame the encoder consumes."""
        return int(self.recurrent.mfcc_index[0])

    @property
    def frame_count(self) -> int:
        """The stream's frame count (OPEN_ENDED until it ends)."""
        return int(self.recurrent.frame_count[0])

    def end_at(self, frame_count: int) -> None:
        """The stream ends after ``frame_count`` frames (known once its audio ends)."""
        self.recurrent.frame_count = np.array([frame_count], np.int64)
