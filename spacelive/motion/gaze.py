"""Where the eyes look, frame by frame: a fixed iris offset, a timed trajectory, and an optional
natural mode that adds small saccades.

Gaze is an iris offset (x right, y down) in half eye widths, each in [-MAX_GAZE, MAX_GAZE];
the rig keeps the iris inside the eye opening whatever it is asked. A jump (a new fixed gaze,
a trajectory's start, a saccade) is reached in GAZE_RAMP_FRAMES frames, as eyes do in a
saccade (30-80 ms); a trajectory is followed exactly between its points (linearly) and holds
its last point after its end. Saccades are seeded, so a seed gives the same eyes.
"""

from dataclasses import dataclass

import numpy as np

from spacelive import FRAME_RATE

GAZE_RAMP_FRAMES = 2
MAX_GAZE = 1.0
SACCADE_RADIUS = 0.15
"""Natural mode: each saccade looks up to this far (half eye widths) from the asked gaze."""
SACCADE_GAP_S = (0.3, 0.9)
"""Natural mode: a saccade comes at least the first, on average the sum, seconds after the last."""
MAX_TRAJECTORY_POINTS = 10_000


@dataclass(frozen=True)
class GazeTrajectory:
    """Timed gaze points: times (K,) seconds from when it is set, strictly increasing from
    >= 0; points (K, 2) iris offsets."""

    times: np.ndarray
    points: np.ndarray

    def __post_init__(self) -> None:
        times, points = np.asarray(self.times, float), np.asarray(self.points, float)
        if len(times) == 0 or len(times) > MAX_TRAJECTORY_POINTS:
            raise ValueError(f"a gaze trajectory has 1 to {MAX_TRAJECTORY_POINTS} points")
        if points.shape != (len(times), 2):
            raise ValueError("a gaze trajectory has one (x, y) point per time")
        if times[0] < 0 or np.any(np.diff(times) <= 0):
            raise ValueError("gaze trajectory times must start at >= 0 s and increase")
        if not (np.all(np.isfinite(points)) and np.all(np.abs(points) <= MAX_GAZE)):
            raise ValueError(f"gaze trajectory x and y must be in [-{MAX_GAZE}, {MAX_GAZE}]")

    def at(self, seconds: float) -> np.ndarray:
        return np.array(
            [np.interp(seconds, self.times, self.points[:, axis]) for axis in (0, 1)],
            np.float32,
        )


class GazeControl:
    """One session's gaze. ``advance`` once per frame, in frame order."""

    def __init__(self, seed: int = 0) -> None:
        self._rng = np.random.default_rng([seed, 0x5ACC])
        self._fixed = np.zeros(2, np.float32)
        self._trajectory: GazeTrajectory | None = None
        self._trajectory_start = 0
        self._saccades = False
        self._saccade = np.zeros(2, np.float32)  # the current saccade's offset
        self._next_saccade = 0
        self._current = np.zeros(2, np.float32)
        self._remaining = 1  # frames left to reach the target
        self._frame = 0

    @staticmethod
    def check(gaze) -> None:
        """ValueError for a fixed gaze ``apply`` would refuse."""
        if gaze is not None and not np.all(np.abs(np.asarray(gaze, float)) <= MAX_GAZE):
            raise ValueError(f"gaze x and y must be in [-{MAX_GAZE}, {MAX_GAZE}]")

    def apply(
        self,
        gaze=None,
        trajectory: GazeTrajectory | None = None,
        saccades: bool | None = None,
    ) -> None:
        """From the next frame on: a fixed gaze (x, y) (ends a trajectory), a trajectory (from
        its time 0), natural saccades on or off."""
        self.check(gaze)
        if gaze is not None:
            self._fixed = np.asarray(gaze, np.float32).reshape(2)
            self._trajectory = None
            self._remaining = GAZE_RAMP_FRAMES
        if trajectory is not None:
            self._trajectory, self._trajectory_start = trajectory, self._frame
            self._remaining = GAZE_RAMP_FRAMES
        if saccades is not None and saccades != self._saccades:
            self._saccades = saccades
            self._saccade[:] = 0.0
            self._next_saccade = self._frame + self._gap()
            self._remaining = GAZE_RAMP_FRAMES

    def settle(self) -> None:
        """The asked gaze holds from the next frame (a stream's start: nothing to ramp from)."""
        self._current = self._target()
        self._remaining = 1

    def advance(self) -> np.ndarray:
        """This frame's gaze (2,); then on to the next frame."""
        if self._saccades and self._frame >= self._next_saccade:
            angle, radius = (
                self._rng.uniform(0, 2 * np.pi),
                SACCADE_RADIUS * np.sqrt(self._rng.uniform()),
            )
            self._saccade = np.array([np.cos(angle), np.sin(angle)], np.float32) * radius
            self._next_saccade = self._frame + self._gap()
            self._remaining = GAZE_RAMP_FRAMES
        self._current = self._current + (self._target() - self._current) / self._remaining
        self._remaining = max(1, self._remaining - 1)
        self._frame += 1
        return self._current.copy()

    def _target(self) -> np.ndarray:
        base = self._fixed
        if self._trajectory is not None:
            base = self._trajectory.at((self._frame - self._trajectory_start) / FRAME_RATE)
        return np.clip(base + self._saccade, -MAX_GAZE, MAX_GAZE).astype(np.float32)

    def _gap(self) -> int:
        low, mean = SACCADE_GAP_S
        return max(1, round((low + self._rng.exponential(mean)) * FRAME_RATE))
