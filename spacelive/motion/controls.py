"""A session's live face controls, frame by frame: emotion (ramped), blinks, gaze, mouth scale
and the head pose mode (``spacelive.motion.pose``).

Clients set them at `start` and change them mid-stream (`ControlUpdate`); the motion loop asks
``FaceControls.advance`` for each frame's values. Changes ramp, so nothing pops: an emotion
change takes EMOTION_RAMP_FRAMES, a gaze jump GAZE_RAMP_FRAMES (``spacelive.motion.gaze``), a pose
mode change POSE_BLEND_FRAMES (``spacelive.motion.pose``). Blinks follow a Poisson process (seeded,
so a seed gives the same blinks) and each closes and reopens the lids over the four frames of
BLINK_CLOSURE (133 ms, as in the paper).
"""

from dataclasses import dataclass

import numpy as np

from spacelive import FRAME_RATE
from spacelive.face.landmarks import EMOTIONS, POSE_DIMS
from spacelive.motion.gaze import GazeControl, GazeTrajectory
from spacelive.motion.pose import HeadPoseControl, PoseTrack

DEFAULT_BLINKS_PER_MINUTE = 15.0
MAX_BLINKS_PER_MINUTE = 60.0
BLINK_CLOSURE = (0.5, 1.0, 0.6, 0.2)
"""Lid closure over a blink's four frames: down fast, up a little slower, as eyes do."""
BLINK_GAP_S = 0.6
"""Shortest time from one blink's start to the next (a Poisson process otherwise)."""
FIRST_BLINK_S = (0.5, 2.5)
"""The first blink comes at a uniform time in this window, so short clips blink too."""
EMOTION_RAMP_FRAMES = 6
MAX_MOUTH_SCALE = 2.0
"""Mouth motion can be exaggerated up to this factor (like Maxine's mouth expression
multiplier), for a portrait whose lips move too little to read."""


@dataclass(frozen=True, slots=True)
class ControlUpdate:
    """What a client asks for; None (or False) leaves a control as it is."""

    emotion: np.ndarray | None = None  # (8,) intensities in [0, 1], EMOTIONS order
    blinks_per_minute: float | None = None
    gaze: tuple[float, float] | None = None  # x right, y down, in half eye widths
    gaze_trajectory: GazeTrajectory | None = None  # timed gaze points (ends a fixed gaze)
    saccades: bool | None = None  # natural mode: small random saccades on top
    blink: bool = False  # blink now
    mouth_scale: float | None = None  # 1 .. MAX_MOUTH_SCALE: mouth motion exaggerated
    pose_mode: str | None = None  # one of spacelive.motion.pose.POSE_MODES
    pose_track: PoseTrack | None = None  # the reference motion (with pose_mode "reference")
    live_pose: np.ndarray | None = None  # (6,) radians and face units (with pose_mode "live")


@dataclass(frozen=True, slots=True)
class FrameControls:
    """One frame's values."""

    emotion: np.ndarray  # (8,) float32
    closure: float  # 0 open .. 1 closed
    gaze: np.ndarray  # (2,) float32
    mouth_scale: float
    pose: np.ndarray  # (6,) float32: yaw, pitch, roll (rad), x, y, z (crop units); an offset


class FaceControls:
    """One session's controls. ``advance`` once per frame, in frame order."""

    def __init__(self, update: ControlUpdate | None = None, seed: int = 0, face_scale: float = 1.0):
        """face_scale: the portrait's ``HeadPose.scale`` (for pose tracks and live poses)."""
        self._rng = np.random.default_rng([seed, 0xB1])
        self._frame = 0
        self._emotion = np.zeros(len(EMOTIONS), np.float32)
        self._emotion_target = self._emotion.copy()
        self.gaze = GazeControl(seed)
        self._rate = DEFAULT_BLINKS_PER_MINUTE
        self._mouth_scale = 1.0
        self._blink_start: int | None = None  # frame of the current or next blink
        self.head = HeadPoseControl(face_scale)
        update = update or ControlUpdate()
        self.apply(update)
        # Values given at the start hold from the first frame: nothing to ramp from.
        self._emotion = self._emotion_target.copy()
        self.gaze.settle()
        self.head.settle()
        if not update.blink:
            self._schedule(first=True)

    @property
    def blinks_per_minute(self) -> float:
        return self._rate

    def apply(self, update: ControlUpdate) -> None:
        """Take effect from the next frame on (ramped where a jump would pop). A value out of
        range raises ValueError and changes nothing."""
        self.check(update)
        self.head.apply(update.pose_mode, update.pose_track, update.live_pose)
        if update.emotion is not None:
            self._emotion_target = np.asarray(update.emotion, np.float32).reshape(len(EMOTIONS))
        self.gaze.apply(update.gaze, update.gaze_trajectory, update.saccades)
        if update.mouth_scale is not None:
            self._mouth_scale = float(update.mouth_scale)
        if update.blinks_per_minute is not None:
            self._rate = float(update.blinks_per_minute)
            if not self._blinking():
                self._schedule(first=False)
        if update.blink and not self._blinking():
            self._blink_start = self._frame

    def check(self, update: ControlUpdate) -> None:
        """ValueError for anything out of range, before anything changes."""
        if update.emotion is not None:
            emotion = np.asarray(update.emotion, np.float32).reshape(len(EMOTIONS))
            if not np.all((emotion >= 0) & (emotion <= 1)):
                raise ValueError("emotion intensities must be in [0, 1]")
        self.gaze.check(update.gaze)
        if update.mouth_scale is not None and not 1.0 <= update.mouth_scale <= MAX_MOUTH_SCALE:
            raise ValueError(f"mouth_scale must be in [1, {MAX_MOUTH_SCALE:g}]")
        if update.blinks_per_minute is not None and not (
            0 <= update.blinks_per_minute <= MAX_BLINKS_PER_MINUTE
        ):
            raise ValueError(f"blinks_per_minute must be in [0, {MAX_BLINKS_PER_MINUTE:g}]")
        self.head.check(update.pose_mode, update.pose_track)

    def advance(self, generated_pose: np.ndarray | None = None) -> FrameControls:
        """This frame's values, given PoseGen's pose for it (6,) (None: zero); then on to the
        next frame."""
        self._emotion += np.clip(
            self._emotion_target - self._emotion,
            -1.0 / EMOTION_RAMP_FRAMES,
            1.0 / EMOTION_RAMP_FRAMES,
        )
        closure = 0.0
        if self._blink_start is not None and self._frame >= self._blink_start:
            k = self._frame - self._blink_start
            closure = BLINK_CLOSURE[k]
            if k == len(BLINK_CLOSURE) - 1:
                self._schedule(first=False)
        self._frame += 1
        generated = np.zeros(POSE_DIMS, np.float32) if generated_pose is None else generated_pose
        return FrameControls(
            self._emotion.copy(),
            float(closure),
            self.gaze.advance(),
            self._mouth_scale,
            self.head.advance(generated),
        )

    def _blinking(self) -> bool:
        start = self._blink_start
        return start is not None and start <= self._frame < start + len(BLINK_CLOSURE)

    def _schedule(self, first: bool) -> None:
        """The next blink's start frame, or none at rate 0."""
        if self._rate <= 0:
            self._blink_start = None
            return
        if first:
            wait_s = self._rng.uniform(*FIRST_BLINK_S)
        else:
            mean_s = 60.0 / self._rate
            wait_s = BLINK_GAP_S + self._rng.exponential(max(mean_s - BLINK_GAP_S, 1e-3))
        self._blink_start = self._frame + max(1, round(wait_s * FRAME_RATE))
