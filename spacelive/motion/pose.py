"""Head pose modes: where each frame's head pose comes from, and how a change of mode blends.

* ``generated``: PoseGen's output (z ~ N(0, 1) drawn from the session's seed): the default;
* ``fixed``: the portrait's own pose;
* ``reference``: a pose track (from a video or a JSON file) transferred relative to its first
  frame, from the frame the mode was set on; a track shorter than the stream plays back and
  forth;
* ``live``: the client sends the pose, and each frame holds the latest.

A pose is (6,) float32: yaw, pitch, roll (radians, ``face_model.rotation_from_angles`` conventions)
and x, y, z translation in crop units, an offset from the portrait's own pose. Tracks and
live poses give translation in face units (half the ear-to-ear distance, the normalized
landmarks' unit) so that they mean the same on any portrait; the session scales them.

Switching mode blends from the last pose shown to the new source over POSE_BLEND_FRAMES
frames, so nothing pops. Every pose is held inside POSE_LIMITS_DEG, the range
the renderer turns a head convincingly.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from spacelive import FRAME_RATE
from spacelive.face.landmarks import POSE_DIMS

POSE_MODES = ("generated", "fixed", "reference", "live")
POSE_BLEND_FRAMES = 6
POSE_LIMITS_DEG = (20.0, 15.0, 10.0)
"""Yaw, pitch and roll are held within +- these (the renderer's convincing range)."""
MAX_TRANSLATION = 0.5
"""A live pose or track frame may move the head by at most +- this many face units."""
MAX_TRACK_FRAMES = 30 * 60 * 30
"""A reference track may hold up to 30 minutes at 30 fps."""

_LIMITS = np.concatenate([np.radians(POSE_LIMITS_DEG), [np.inf] * 3]).astype(np.float32)


class PoseTrackError(ValueError):
    """A pose track that cannot be used; the message says why."""


def clamp_pose(pose: np.ndarray) -> np.ndarray:
    """(..., 6) poses with the angles held inside POSE_LIMITS_DEG."""
    return np.clip(pose, -_LIMITS, _LIMITS).astype(np.float32)


@dataclass(frozen=True)
class PoseTrack:
    """A reference head motion at 30 fps, relative to its first frame.

    offsets: (N, 6) float32: yaw, pitch, roll (radians) and x, y, z (face units), each frame's
    pose minus the first frame's.
    """

    offsets: np.ndarray

    @staticmethod
    def from_poses(
        angles_deg: np.ndarray, fps: float, translation: np.ndarray | None = None
    ) -> "PoseTrack":
        """Absolute poses at ``fps``: angles (N, 3) degrees, translation (N, 3) face units
        (or none) -> the track, resampled to 30 fps (linearly) and made relative."""
        angles = np.asarray(angles_deg, np.float64).reshape(-1, 3)
        if len(angles) == 0:
            raise PoseTrackError("the pose track has no frames")
        if not np.all(np.isfinite(angles)):
            raise PoseTrackError("the pose track has angles that are not finite numbers")
        if not 1.0 <= fps <= 240.0:
            raise PoseTrackError(f"pose track fps {fps:g} is outside 1-240")
        moved = np.zeros((len(angles), 3))
        if translation is not None:
            moved = np.asarray(translation, np.float64).reshape(-1, 3)
            if len(moved) != len(angles) or not np.all(np.isfinite(moved)):
                raise PoseTrackError("pose track translation must be finite, one per frame")
        poses = np.column_stack([np.radians(angles), moved])
        duration = (len(poses) - 1) / fps
        frames = int(round(duration * FRAME_RATE)) + 1
        if frames > MAX_TRACK_FRAMES:
            raise PoseTrackError(
                f"the pose track lasts {duration / 60:.1f} min; at most "
                f"{MAX_TRACK_FRAMES / FRAME_RATE / 60:g} min are accepted"
            )
        source_t = np.arange(len(poses)) / fps
        t = np.arange(frames) / FRAME_RATE
        resampled = np.column_stack([np.interp(t, source_t, poses[:, d]) for d in range(6)])
        return PoseTrack((resampled - resampled[0]).astype(np.float32))

    def at(self, k: int) -> np.ndarray:
        """The offset for frame k after the track started; back and forth past its end."""
        n = len(self.offsets)
        if n == 1:
            return self.offsets[0]
        period = 2 * (n - 1)
        k = k % period
        return self.offsets[k if k < n else period - k]

    def to_json(self) -> dict:
        """The track as protocol JSON (30 fps, relative)."""
        degrees = np.degrees(self.offsets[:, :3])
        return {
            "fps": FRAME_RATE,
            "frames": [
                {
                    "yaw": round(float(a[0]), 3),
                    "pitch": round(float(a[1]), 3),
                    "roll": round(float(a[2]), 3),
                    "x": round(float(t[0]), 5),
                    "y": round(float(t[1]), 5),
                    "z": round(float(t[2]), 5),
                }
                for a, t in zip(degrees, self.offsets[:, 3:], strict=True)
            ],
        }


def track_from_video(path: Path, analyzer=None) -> PoseTrack:
    """The head pose of every frame of a video (MediaPipe mesh + the 3D face model fit);
    a frame whose face is not found holds the last pose. Translation in face units."""
    import av

    from spacelive.face.analysis import FaceAnalyzer, fit_head_pose, pixels_to_crop

    analyzer = analyzer or FaceAnalyzer()
    angles: list[tuple[float, float, float]] = []
    centres: list[np.ndarray] = []
    scales: list[float] = []
    missing = 0
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise PoseTrackError(f"{path} has no video stream")
            stream = container.streams.video[0]
            fps = float(stream.average_rate or FRAME_RATE)
            for frame in container.decode(stream):
                mesh = analyzer.mesh(frame.to_ndarray(format="rgb24"))
                if mesh is None:
                    missing += 1
                    if angles:
                        angles.append(angles[-1])
                        centres.append(centres[-1])
                        scales.append(scales[-1])
                    continue
                pose = fit_head_pose(pixels_to_crop(mesh))
                angles.append(pose.angles_deg())
                centres.append(pose.translation)
                scales.append(pose.scale)
    except av.error.FFmpegError as exc:
        raise PoseTrackError(f"{path} could not be read as a video: {exc}") from None
    if not angles:
        raise PoseTrackError(f"no face was found in any frame of {path}")
    if missing > len(angles) // 2:
        raise PoseTrackError(f"no face was found in {missing} of the frames of {path}")
    translation = (np.array(centres) - centres[0]) / np.median(scales)
    translation[:, 2] = 0.0  # depth from one view is a guess
    return PoseTrack.from_poses(np.array(angles), fps, translation)


class HeadPoseControl:
    """One session's head pose mode. ``advance`` once per frame, in frame order."""

    def __init__(self, face_scale: float) -> None:
        """face_scale: the portrait's half ear-to-ear distance in crop units (``HeadPose``'s
        scale), to put face-unit translations into crop units."""
        self._units = np.array([1, 1, 1] + [face_scale] * 3, np.float32)
        self._mode = "generated"
        self._track: PoseTrack | None = None
        self._track_start = 0
        self._live = np.zeros(POSE_DIMS, np.float32)
        self._last = np.zeros(POSE_DIMS, np.float32)  # the pose of the latest frame
        self._blend_from = self._last
        self._blend = 1.0
        self._frame = 0

    @property
    def mode(self) -> str:
        return self._mode

    def apply(
        self,
        mode: str | None = None,
        track: PoseTrack | None = None,
        live: np.ndarray | None = None,
    ) -> None:
        """Take effect from the next frame on: a new mode blends in; a track (with mode
        ``reference``) starts from its first frame; a live pose (6,) (radians, face units)
        holds until the next one."""
        self.check(mode, track)
        if track is not None:
            self._track = track
            self._track_start = self._frame
        if live is not None:
            self._live = np.asarray(live, np.float32).reshape(POSE_DIMS) * self._units
        if mode is not None and mode != self._mode:
            # Blend from the pose last shown (even mid-blend), so no change of mode jumps.
            self._mode, self._blend_from, self._blend = mode, self._last, 0.0

    def settle(self) -> None:
        """The current mode holds fully from the next frame (a stream's start: no blend)."""
        self._blend = 1.0

    def advance(self, generated: np.ndarray) -> np.ndarray:
        """This frame's pose (6,) given PoseGen's for it; then on to the next frame."""
        self._blend = min(1.0, self._blend + 1.0 / POSE_BLEND_FRAMES)
        pose = self._source(self._mode, generated)
        if self._blend < 1.0:
            pose = self._blend_from + self._blend * (pose - self._blend_from)
        self._frame += 1
        self._last = clamp_pose(pose)
        return self._last

    def _source(self, mode: str, generated: np.ndarray) -> np.ndarray:
        if mode == "generated":
            return np.asarray(generated, np.float32)
        if mode == "reference" and self._track is not None:
            return self._track.at(self._frame - self._track_start) * self._units
        if mode == "live":
            return self._live
        return np.zeros(POSE_DIMS, np.float32)

    def check(self, mode: str | None, track: PoseTrack | None = None) -> None:
        """ValueError for a change ``apply`` would refuse."""
        if mode is None:
            return
        if mode not in POSE_MODES:
            raise ValueError(f"unknown pose mode {mode!r}; use one of {', '.join(POSE_MODES)}")
        if mode == "reference" and track is None and self._track is None:
            raise ValueError("pose mode 'reference' needs a pose track")
