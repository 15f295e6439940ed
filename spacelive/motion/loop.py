"""The causal motion loop: MFCC frame -> audio encoder -> S2L -> PoseGen -> posing -> keypoints.

S2L speaks around the portrait's rest with its lips closed, as the teacher does: the lips
shut on p, b and m and between words. A portrait whose lips are parted at rest gets its own
mouth back while idle (``spacelive.motion.idle``: before the first word and after a second of
silence, judged from the audio with the encoder's lookahead).

Posed landmarks reach the renderer's keypoints through the geometric transfer
(``spacelive.motion.transfer``), not the paper's Landmarks2Latents network: no trained L2L beats it.

A stream owns its ``MotionState`` (``spacelive.motion.state``); ``MotionModel.step``
advances any number of streams together: it concatenates their recurrent state into one
batch, runs each stage once, and splits it back.
"""

import time
from dataclasses import dataclass, replace

import numpy as np

from spacelive.face.analysis import Avatar, normalize_landmarks, pose_landmarks
from spacelive.face.eyes import pose_eyes
from spacelive.face.head_model import rotation_from_angles
from spacelive.face.landmarks import JAW, MOUTH, POSE_DIMS, closed_mouth, inner_lip_gap
from spacelive.media.timing import StageTimes
from spacelive.motion.closure import close_lips, closure_amount
from spacelive.motion.controls import ControlUpdate, FaceControls, FrameControls
from spacelive.motion.idle import IdleMouth, mouth_parting
from spacelive.motion.runners import StageSet
from spacelive.motion.state import OPEN_ENDED, MotionState, RecurrentState
from spacelive.motion.transfer import DenseTransfer

MOUTH_AND_JAW = np.r_[JAW, np.arange(MOUTH.start, MOUTH.stop)]
"""Sparse landmarks whose motion the mouth-scale control multiplies."""


@dataclass(slots=True)
class FrameMotion:
    """Everything the renderer (or a keypoint receiver) needs for one frame."""

    frame_index: int
    landmarks: np.ndarray  # (110, 3) float32, normalized: the closed-lipped rest + speech + the
    # idle share of the portrait's own parting, eyes posed
    pose: np.ndarray  # (6,) float32: yaw, pitch, roll (rad), tx, ty, tz; offset from portrait
    # (the pose mode's: PoseGen's in mode generated)
    keypoints: np.ndarray  # (478, 3) float32, crop coordinates [-1, 1]
    expression: np.ndarray  # (478, 3) float32: the keypoints unposed to the face's frontal
    # frame (normalized), minus the portrait's own: all but the head's pose


class MotionModel:
    """Steps the stages of a ``StageSet`` for a batch of sessions."""

    def __init__(self, stages: StageSet):
        self.stages = stages
        self.lookahead = int(stages.manifest["stages"]["audio_encoder"]["lookahead"])
        self._cache_names = [n for n in stages.audio_encoder.input_names if n.startswith("cache_")]
        self.pose_latent = stages.input_shape("posegen", "z", 1)[1]
        self._idle_start = IdleMouth.start(self.lookahead)  # refuses too little lookahead

    def new_state(
        self, avatar: Avatar, controls: ControlUpdate | None = None, seed: int = 0
    ) -> MotionState:
        """Fresh state for a stream: zero caches and LSTM state, previous = the portrait."""
        st = self.stages
        rng = np.random.default_rng(seed)
        speech_rest = closed_mouth(avatar.landmarks0)[None].astype(np.float32)
        recurrent = RecurrentState(
            z=rng.standard_normal((1, self.pose_latent)).astype(np.float32),
            caches=tuple(
                np.zeros(st.input_shape("audio_encoder", n, 1), np.float32)
                for n in self._cache_names
            ),
            s2l_h=np.zeros(st.input_shape("s2l", "h", 1), np.float32),
            s2l_c=np.zeros(st.input_shape("s2l", "c", 1), np.float32),
            landmarks=speech_rest.copy(),
            pose_h=np.zeros(st.input_shape("posegen", "h", 1), np.float32),
            pose_c=np.zeros(st.input_shape("posegen", "c", 1), np.float32),
            pose=np.zeros((1, POSE_DIMS), np.float32),
            mfcc_index=np.zeros(1, np.int64),
            frame_count=np.full(1, OPEN_ENDED, np.int64),
        )
        return MotionState(
            avatar=avatar,
            controls=FaceControls(controls, seed, face_scale=avatar.pose.scale),
            recurrent=recurrent,
            speech_rest=speech_rest,
            parting=mouth_parting(avatar.landmarks0)[None],
            idle=self._idle_start,  # immutable: every stream starts from it
            frontal_source=frontal_mesh(avatar),
            transfer=frontal_transfer(avatar),
        )

    def run(self, state: MotionState, mfcc: np.ndarray) -> list[FrameMotion]:
        """A whole known stream at once: every frame of mfcc (T, 40), lookahead flushed."""
        state.end_at(len(mfcc))
        pad = np.zeros((self.lookahead, mfcc.shape[1]), np.float32)
        out = []
        for row in np.concatenate([mfcc, pad]):
            (frame,) = self.step([state], row[None])
            if frame is not None:
                out.append(frame)
        return out

    def step(
        self,
        states: list[MotionState],
        mfcc: np.ndarray,
        times: StageTimes | None = None,
        errors: dict[int, Exception] | None = None,
    ) -> list[FrameMotion | None]:
        """Feed one MFCC frame (row i of mfcc (B, 40)) to each of B sessions.

        Returns, per session, the motion of the frame that became due (frame
        mfcc_index - lookahead), or None while the lookahead is filling or past the end.
        ``times``, if given, accumulates seconds per stage.

        Rows never mix: each session's result is exactly what stepping it alone gives. A
        session whose step fails is left out, its state as it was: with ``errors`` given, its
        exception lands in ``errors[i]`` and the others go on; without, it is raised. The
        stages run on the whole batch and nothing is written to a state until every stage has
        run, so a failing batch is simply stepped again row by row.
        """
        clock = _Clock(times)
        idle = [
            s.idle.heard(float(mfcc[i, 0]) if s.mfcc_index < s.frame_count else None)
            for i, s in enumerate(states)
        ]
        try:
            batch = RecurrentState.concatenate([s.recurrent for s in states])
            encoded = self._encode(batch, mfcc)
            clock.lap("audio_encoder")
            positions = batch.mfcc_index - self.lookahead
            due = [i for i in range(len(batch)) if 0 <= positions[i] < batch.frame_count[i]]
            audio = encoded["audio"][due]
            pose = self._posegen(batch.filter(due), audio) if due else {}
            clock.lap("posegen")
        except Exception as exc:
            if len(states) > 1:
                return self._row_by_row(states, mfcc, times, errors)
            self._failed(0, errors, exc)
            return [None]

        # Each session's pose mode picks this frame's pose (PoseGen's, its own, a track's...).
        # This moves the controls on (ramps, blinks): from here a session is stepped at most
        # once more, alone if the batch fails.
        now: list[FrameControls] = []
        advanced = []
        for j, i in enumerate(due):
            try:
                now.append(states[i].controls.advance(pose["pose"][j]))
                advanced.append(j)
            except Exception as exc:
                self._failed(i, errors, exc)
        face: dict[int, tuple[dict, np.ndarray, np.ndarray, np.ndarray]] = {}
        keep = [due[j] for j in advanced]
        if keep:
            try:
                rows_out = self._face(
                    [states[i] for i in keep],
                    batch.filter(keep),
                    audio[advanced],
                    now,
                    [idle[i].relaxation for i in keep],
                    clock,
                )
                face.update(zip(keep, rows_out, strict=True))
            except Exception as exc:
                if len(keep) == 1:
                    self._failed(keep[0], errors, exc)
                else:
                    for k, i in enumerate(keep):
                        try:
                            (face[i],) = self._face(
                                [states[i]],
                                batch.filter([i]),
                                audio[advanced[k] : advanced[k] + 1],
                                now[k : k + 1],
                                [idle[i].relaxation],
                                clock,
                            )
                        except Exception as single:
                            self._failed(i, errors, single)

        # The next state: every row's encoder has moved on, and the due rows' S2L and PoseGen.
        moved = replace(
            batch,
            caches=tuple(encoded[f"new_{n}"] for n in self._cache_names),
            mfcc_index=batch.mfcc_index + 1,
        ).split()
        results: list[FrameMotion | None] = [None] * len(states)
        for j, controls in zip(advanced, now, strict=True):
            i = due[j]
            if i not in face:
                continue
            s2l, keypoints, spoken, frontal = face[i]
            moved[i] = replace(
                moved[i],
                landmarks=s2l["landmarks"],
                s2l_h=s2l["new_h"],
                s2l_c=s2l["new_c"],
                pose=pose["pose"][j : j + 1],
                pose_h=pose["new_h"][:, j : j + 1],
                pose_c=pose["new_c"][:, j : j + 1],
            )
            results[i] = FrameMotion(
                frame_index=int(positions[i]),
                landmarks=spoken,
                pose=controls.pose,
                keypoints=keypoints,
                expression=frontal - states[i].frontal_source,
            )
        failed_due = {i for i in due if i not in face}
        for i, s in enumerate(states):
            if i not in failed_due:  # a failed row keeps its state as it was
                s.recurrent, s.idle = moved[i], idle[i]
        return results

    def _row_by_row(self, states, mfcc, times, errors) -> list[FrameMotion | None]:
        results: list[FrameMotion | None] = []
        for i, s in enumerate(states):
            alone: dict[int, Exception] = {}
            (frame,) = self.step([s], mfcc[i : i + 1], times, alone)
            if alone:
                self._failed(i, errors, alone[0])
            results.append(frame)
        return results

    @staticmethod
    def _failed(i: int, errors: dict[int, Exception] | None, exc: Exception) -> None:
        """Record session i's failure in ``errors``, or raise it when there is none."""
        if errors is None:
            raise exc
        errors[i] = exc

    def _encode(self, batch: RecurrentState, mfcc: np.ndarray) -> dict[str, np.ndarray]:
        return self.stages.audio_encoder.run(
            {
                "mfcc": np.ascontiguousarray(mfcc, dtype=np.float32),
                "frame_index": batch.mfcc_index,
                "frame_count": batch.frame_count,
                **dict(zip(self._cache_names, batch.caches, strict=True)),
            }
        )

    def _posegen(self, rows: RecurrentState, audio: np.ndarray) -> dict[str, np.ndarray]:
        return self.stages.posegen.run(
            {"audio": audio, "z": rows.z, "previous": rows.pose, "h": rows.pose_h, "c": rows.pose_c}
        )

    def _face(
        self,
        rows: list[MotionState],
        recurrent: RecurrentState,
        audio: np.ndarray,
        now: list[FrameControls],
        relaxation: list[float],
        clock: "_Clock",
    ) -> list[tuple[dict, np.ndarray, np.ndarray, np.ndarray]]:
        """S2L, the face controls, posing and the keypoint transfer for the due rows, whose
        portraits show ``relaxation`` of their own lips' parting (``recurrent``: their
        recurrent state, one row each); writes no state. Per row:
        (S2L outputs (batch axes of 1), keypoints (478, 3) in crop coordinates, spoken landmarks
        (110, 3), frontal keypoints (478, 3))."""
        st = self.stages
        head = np.stack([c.pose for c in now])
        emotion = np.stack([c.emotion for c in now])
        first = (recurrent.mfcc_index == self.lookahead).astype(np.float32)
        rest = np.concatenate([s.speech_rest for s in rows])
        s2l = st.s2l.run(
            {
                "audio": audio,
                "previous": recurrent.landmarks,
                "landmarks0": rest,
                "emotion": emotion,
                "h": recurrent.s2l_h,
                "c": recurrent.s2l_c,
                "first": first,
            }
        )
        clock.lap("s2l")
        speech = s2l["landmarks"] - rest
        mouth_scale = np.array([c.mouth_scale for c in now], np.float32)[:, None, None]
        speech[:, MOUTH_AND_JAW] *= mouth_scale  # the mouth-scale control; 1 keeps S2L's
        idle = np.array(relaxation, np.float32)[:, None, None]
        spoken = rest + speech
        if st.closure is not None:  # where the lips seal, they meet (spacelive.motion.closure)
            sealed = st.closure.run({"audio": audio})["sealed"]
            amount = closure_amount(sealed, inner_lip_gap(spoken), mouth_scale[:, 0, 0])
            spoken = close_lips(spoken, amount)
        spoken = spoken + idle * np.concatenate([s.parting for s in rows])
        for j, c in enumerate(now):  # blinks and gaze, on the face before it is posed
            if c.closure > 0 or c.gaze.any():
                spoken[j] = pose_eyes(spoken[j], c.closure, c.gaze)
        head_pose = head_poses([s.avatar for s in rows], head)
        frontal = np.concatenate([s.transfer.apply(spoken[j : j + 1]) for j, s in enumerate(rows)])
        keypoints = pose_landmarks(frontal, *head_pose)
        clock.lap("transfer")
        return [
            (
                {
                    k: s2l[k][j : j + 1] if k == "landmarks" else s2l[k][:, j : j + 1]
                    for k in ("landmarks", "new_h", "new_c")
                },
                keypoints[j],
                spoken[j],
                frontal[j],
            )
            for j in range(len(rows))
        ]


def frontal_mesh(avatar: Avatar) -> np.ndarray:
    """(478, 3) the portrait's mesh in its face's frontal frame (normalized, ears 2 apart)."""
    return normalize_landmarks(avatar.kp_source, avatar.pose)


def frontal_transfer(avatar: Avatar) -> DenseTransfer:
    """Expression transfer in the face's frontal frame: the head's pose is then applied to
    all 478 points rigidly, as the rig does, not carried by the sparse landmarks."""
    frontal = frontal_mesh(avatar)
    return DenseTransfer(frontal, avatar.landmarks0, frontal[:, :2])


def head_poses(avatars: list[Avatar], head: np.ndarray):
    """Per row, (rotation (B, 3, 3), translation (B, 3), scale (B, 1, 1)) of the portraits'
    poses moved by ``head`` (B, 6) offsets: yaw, pitch, roll (rad), x, y, z (crop units)."""
    angles = head[:, :3].astype(np.float64)
    rotation = rotation_from_angles(angles[:, 0], angles[:, 1], angles[:, 2]) @ np.stack(
        [a.pose.rotation for a in avatars]
    )
    translation = np.stack([a.pose.translation for a in avatars]) + head[:, 3:]
    scale = np.array([a.pose.scale for a in avatars])[:, None, None]
    return rotation, translation, scale


class _Clock:
    """Laps into a StageTimes (or nowhere)."""

    def __init__(self, times: StageTimes | None) -> None:
        self._times = times
        self._last = time.perf_counter()

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        if self._times is not None:
            self._times.add(stage, now - self._last)
        self._last = now
