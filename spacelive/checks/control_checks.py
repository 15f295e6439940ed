"""Objective checks of the face controls with an independent detector (`spacelive eval controls`).

Speech runs through the motion stages and the renderer as in a stream; MediaPipe re-detects the
face mesh on every rendered frame; each check compares what it finds with what was asked:

* emotion: happy raises the mouth corners against the lip centre, sad lowers them, surprised
  raises the brows, each by more than NOISE_MULTIPLE times the frame-to-frame noise, and
  intensity 0.5 lands between 0 and 1;
* blinks: the re-detected blink count at 20 per minute is within 30 % of the rate; at 0, none;
* mid-stream: a `control` changes the output from the next frame on, and no faster than its
  ramp allows;
* pose_reference: a head motion rendered on another portrait (the actor), written as an MP4,
  extracted from it (``pose.track_from_video``) and transferred: the re-detected pose tracks
  the extracted one within POSE_RMS_DEG on each axis;
* pose_generated: PoseGen's motion has a yaw and pitch standard deviation in GENERATED_STD_DEG
  and moves more while speaking than in silence;
* pose_seed: the same seed gives byte-identical frames, another seed other motion.

Signals are in inter-ocular distances (outer eye corners), y down: "raise" is negative.
"""

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from spacelive import FRAME_RATE, MODEL_SAMPLE_RATE
from spacelive.checks.render_checks import CheckResult, Undetected, eye_aspect_ratio, run_checks
from spacelive.face.analysis import (
    Avatar,
    FaceAnalyzer,
    crop_to_pixels,
    fit_head_pose,
    pixels_to_crop,
)
from spacelive.face.landmarks import EMOTIONS
from spacelive.face.rig import FaceCommand, FaceRig
from spacelive.media.audio import offline_mfcc
from spacelive.media.video import H264Encoder, write_mp4
from spacelive.motion.controls import EMOTION_RAMP_FRAMES, ControlUpdate
from spacelive.motion.loop import FrameMotion, MotionModel
from spacelive.motion.pose import track_from_video
from spacelive.render.renderer import Renderer, WarpRenderer

NOISE_MULTIPLE = 3.0
POSE_RMS_DEG = 3.0
GENERATED_STD_DEG = (2.0, 8.0)
BLINK_RATE, BLINK_TOLERANCE = 20.0, 0.30
BLINK_CLOSED_FRACTION = 0.6
"""A re-detected blink: the eye aspect ratio below this fraction of its median (open) value."""
_MOUTH_CORNERS, _LIP_CENTRE = (61, 291), (13, 14)
_BROWS = (70, 63, 105, 66, 107, 336, 296, 334, 293, 300)
_IRIS_CENTRES, _EYE_CORNERS = (468, 473), (33, 263)


@dataclass
class FaceSignals:
    """Per rendered frame, from the re-detected mesh."""

    corners: np.ndarray  # (T,) mouth corners' height over the lip centre's
    brows: np.ndarray  # (T,) brows' height over the irises'
    ear: np.ndarray  # (T,) eye aspect ratio
    frames: list = field(default_factory=list)  # the rendered frames, if kept

    @staticmethod
    def of(meshes: list[np.ndarray]) -> "FaceSignals":
        m = np.array(meshes)  # (T, 478, 3) pixels
        scale = np.linalg.norm(m[:, _EYE_CORNERS[1], :2] - m[:, _EYE_CORNERS[0], :2], axis=1)
        height = lambda points: m[:, list(points), 1].mean(axis=1)  # noqa: E731
        return FaceSignals(
            corners=(height(_MOUTH_CORNERS) - height(_LIP_CENTRE)) / scale,
            brows=(height(_BROWS) - height(_IRIS_CENTRES)) / scale,
            ear=np.array([eye_aspect_ratio(x) for x in m]),
        )


class ControlChecker:
    """Renders one portrait speaking one audio under different controls."""

    def __init__(
        self,
        motion: MotionModel,
        analyzer: FaceAnalyzer,
        avatar: Avatar,
        speech16k: np.ndarray,
        renderer: Renderer | None = None,
        seed: int = 0,
    ):
        self.motion, self.analyzer, self.avatar, self.seed = motion, analyzer, avatar, seed
        self.renderer = renderer or WarpRenderer()
        self.source = self.renderer.prepare(avatar.image, avatar.mesh_px)
        self.speech = speech16k
        self.mfcc = offline_mfcc(speech16k)

    def motions(
        self,
        update: ControlUpdate,
        changes: dict[int, ControlUpdate] | None = None,
        mfcc=None,
        seed: int | None = None,
    ) -> list[FrameMotion]:
        """The stream's frame motions; ``changes`` applies a control before frame k."""
        mfcc = self.mfcc if mfcc is None else mfcc
        seed = self.seed if seed is None else seed
        state = self.motion.new_state(self.avatar, update, seed)
        state.end_at(len(mfcc))
        pad = np.zeros((self.motion.lookahead, mfcc.shape[1]), np.float32)
        out: list[FrameMotion] = []
        for row in np.concatenate([mfcc, pad]):
            if changes and len(out) in changes:
                state.controls.apply(changes.pop(len(out)))
            (frame,) = self.motion.step([state], row[None])
            if frame is not None:
                out.append(frame)
        return out

    def render(self, motions: list[FrameMotion]) -> list[np.ndarray]:
        return [self.renderer.render(self.source, crop_to_pixels(m.keypoints)) for m in motions]

    def meshes(self, frames: list[np.ndarray]) -> list[np.ndarray]:
        """The re-detected mesh of each frame (pixels)."""
        meshes = []
        for k, frame in enumerate(frames):
            mesh = self.analyzer.mesh(frame)
            if mesh is None:
                raise Undetected(f"the detector found no face in frame {k}")
            meshes.append(mesh)
        return meshes

    def signals(self, motions: list[FrameMotion], keep: bool = False) -> FaceSignals:
        frames = self.render(motions)
        out = FaceSignals.of(self.meshes(frames))
        out.frames = frames if keep else []
        return out

    def head_angles(self, frames: list[np.ndarray]) -> np.ndarray:
        """(T, 3) re-detected yaw, pitch, roll in degrees, minus the first frame's."""
        angles = np.array(
            [fit_head_pose(pixels_to_crop(m)).angles_deg() for m in self.meshes(frames)]
        )
        return angles - angles[0]

    # -- checks --------------------------------------------------------------------------------

    def emotion(self) -> CheckResult:
        quiet = ControlUpdate(blinks_per_minute=0)
        neutral = self.signals(self.motions(quiet))
        figures: dict[str, float] = {}
        passed = True
        for name, signal, direction in (
            ("happy", "corners", -1),
            ("sad", "corners", 1),
            ("surprised", "brows", -1),
        ):
            base = getattr(neutral, signal)
            noise = float(np.std(np.diff(base)))
            effects = {}
            for intensity in (0.5, 1.0):
                emotion = np.zeros(len(EMOTIONS), np.float32)
                emotion[EMOTIONS.index(name)] = intensity
                found = self.signals(
                    self.motions(ControlUpdate(emotion=emotion, blinks_per_minute=0))
                )
                effects[intensity] = float(np.mean(getattr(found, signal) - base))
            full, half = effects[1.0], effects[0.5]
            figures[f"{name}_{signal}_effect"] = full
            figures[f"{name}_half_effect"] = half
            figures[f"{name}_noise"] = noise
            passed &= direction * full > NOISE_MULTIPLE * noise
            passed &= 0 < half / full < 1 if full else False
        return CheckResult("emotion", bool(passed), figures)

    def blinks(self, minutes: float = 2.0) -> CheckResult:
        speech = _repeat(self.mfcc, int(minutes * 60 * 30))
        figures: dict[str, float] = {}
        counts = {}
        for rate in (BLINK_RATE, 0.0):
            motions = self.motions(ControlUpdate(blinks_per_minute=rate), mfcc=speech)
            ear = self.signals(motions).ear
            closed = ear < BLINK_CLOSED_FRACTION * np.median(ear)
            counts[rate] = int(np.sum(closed[1:] & ~closed[:-1]) + closed[0])
        expected = BLINK_RATE * minutes
        figures = {
            "minutes": minutes,
            "expected_at_20_per_minute": expected,
            "detected_at_20_per_minute": counts[BLINK_RATE],
            "detected_at_0": counts[0.0],
        }
        error = abs(counts[BLINK_RATE] - expected) / expected
        figures["count_error"] = error
        return CheckResult("blinks", error <= BLINK_TOLERANCE and counts[0.0] == 0, figures)

    def mid_stream(self, at: int = 30) -> CheckResult:
        """Happy at full intensity from frame ``at``: the frames before it are unchanged, the
        frame at it differs, and the corners move no faster than the ramp allows."""
        quiet = ControlUpdate(blinks_per_minute=0)
        happy = np.zeros(len(EMOTIONS), np.float32)
        happy[EMOTIONS.index("happy")] = 1.0
        plain = self.motions(quiet)
        changed = self.motions(quiet, {at: ControlUpdate(emotion=happy)})
        same_before = all(
            np.array_equal(a.keypoints, b.keypoints)
            for a, b in zip(plain[:at], changed[:at], strict=True)
        )
        differs_at = not np.array_equal(plain[at].keypoints, changed[at].keypoints)
        window = slice(at - 5, at + 3 * EMOTION_RAMP_FRAMES)
        a = self.signals(plain[window]).corners
        b = self.signals(changed[window]).corners
        difference = b - a
        settled = float(np.mean(difference[-EMOTION_RAMP_FRAMES:]))
        noise = float(np.std(np.diff(a)))
        largest_step = float(np.max(np.abs(np.diff(difference))))
        allowed = abs(settled) / EMOTION_RAMP_FRAMES + NOISE_MULTIPLE * noise
        figures = {
            "frames_before_unchanged": float(same_before),
            "changes_at_the_next_frame": float(differs_at),
            "largest_step": largest_step,
            "ramp_allows": allowed,
            "settled_effect": settled,
        }
        return CheckResult(
            "mid_stream", same_before and differs_at and largest_step <= allowed, figures
        )

    def pose_reference(self, actor: Avatar, seconds: float = 4.0) -> CheckResult:
        """The actor's head motion (rendered, as an MP4) transferred to the portrait."""
        t = np.arange(int(seconds * FRAME_RATE)) / FRAME_RATE
        commanded = np.column_stack(
            [
                12 * np.sin(2 * np.pi * t / 4.0),
                6 * np.sin(2 * np.pi * t / 2.7),
                5 * np.sin(2 * np.pi * t / 3.3),
            ]
        )  # degrees, starting at the actor's own pose: a lively talker's range
        rig = FaceRig(actor.mesh_px, actor.pose)
        source = self.renderer.prepare(actor.image, actor.mesh_px)
        encoder = H264Encoder()
        encoded = [
            encoder.encode(self.renderer.render(source, rig.apply(_turn(a))), k)
            for k, a in enumerate(commanded)
        ]
        encoder.close()
        with tempfile.TemporaryDirectory() as folder:
            video = Path(folder) / "reference.mp4"
            write_mp4(video, encoded, None, 16_000)
            track = track_from_video(video, self.analyzer)
        reference = np.degrees(track.offsets[:, :3])
        update = ControlUpdate(blinks_per_minute=0, pose_mode="reference", pose_track=track)
        motions = self.motions(update, mfcc=_repeat(self.mfcc, len(reference)))
        found = self.head_angles(self.render(motions))
        errors = found - reference
        rms = np.sqrt(np.mean(errors**2, axis=0))
        shown = np.degrees(np.array([m.pose[:3] for m in motions]))
        figures = {
            f"{axis}_rms_deg": float(r)
            for axis, r in zip(("yaw", "pitch", "roll"), rms, strict=True)
        }
        figures.update(
            {
                f"reference_{axis}_range_deg": float(np.ptp(reference[:, i]))
                for i, axis in enumerate(("yaw", "pitch", "roll"))
            }
        )
        figures["commanded_rms_deg"] = float(np.sqrt(np.mean((shown - reference) ** 2)))
        return CheckResult("pose_reference", bool(np.all(rms <= POSE_RMS_DEG)), figures)

    def pose_generated(self) -> CheckResult:
        """Speech, 4 s of silence, speech again, with PoseGen's motion."""
        rate = MODEL_SAMPLE_RATE
        audio = np.concatenate([self.speech, np.zeros(4 * rate), self.speech[: 4 * rate]])
        mfcc = offline_mfcc(audio.astype(np.float32))
        talk, pause = len(self.mfcc), 4 * FRAME_RATE  # frames of the first talk, the pause
        motions = self.motions(ControlUpdate(blinks_per_minute=0), mfcc=mfcc)
        found = self.head_angles(self.render(motions))
        commanded = np.degrees(np.array([m.pose[:3] for m in motions]))
        settle = FRAME_RATE // 2  # motion settles for half a second after each change
        speaking = np.zeros(len(mfcc), bool)
        speaking[settle:talk] = True
        speaking[talk + pause + settle :] = True
        quiet = np.zeros(len(mfcc), bool)
        quiet[talk + settle : talk + pause] = True
        figures: dict[str, float] = {}
        for name, angles in (("", found), ("commanded_", commanded)):
            smooth = _moving_average(angles[:, :2], 3)
            # deg per frame; speed[i] spans frames i .. i + 3
            speed = np.linalg.norm(np.diff(smooth, axis=0), axis=1)
            figures[f"{name}yaw_std_deg"] = float(np.std(angles[:, 0]))
            figures[f"{name}pitch_std_deg"] = float(np.std(angles[:, 1]))
            figures[f"{name}speed_speaking_deg_per_s"] = float(
                FRAME_RATE * speed[speaking[3:]].mean()
            )
            figures[f"{name}speed_silent_deg_per_s"] = float(FRAME_RATE * speed[quiet[3:]].mean())
        low, high = GENERATED_STD_DEG
        passed = (
            low <= figures["yaw_std_deg"] <= high
            and low <= figures["pitch_std_deg"] <= high
            and figures["speed_speaking_deg_per_s"] > figures["speed_silent_deg_per_s"]
        )
        return CheckResult("pose_generated", passed, figures)

    def pose_seed(self, frames: int = 90) -> CheckResult:
        """Seed 1 twice (byte-identical frames?) and seed 2 (other motion?)."""
        update = ControlUpdate(blinks_per_minute=0)
        mfcc = self.mfcc[:frames]
        runs = [self.motions(update, mfcc=mfcc, seed=seed) for seed in (1, 1, 2)]
        rendered = [self.render(r) for r in runs]
        identical = all(np.array_equal(a, b) for a, b in zip(rendered[0], rendered[1], strict=True))
        poses = [np.degrees(np.array([m.pose[:3] for m in r])) for r in runs]
        other = float(np.sqrt(np.mean((poses[2] - poses[0]) ** 2)))
        found = float(
            np.sqrt(np.mean((self.head_angles(rendered[2]) - self.head_angles(rendered[0])) ** 2))
        )
        figures = {
            "same_seed_identical_frames": float(identical),
            "other_seed_commanded_rms_deg": other,
            "other_seed_detected_rms_deg": found,
        }
        return CheckResult("pose_seed", identical and other > 0.5 and found > 0.5, figures)

    def run_all(self, actor: Avatar, blink_minutes: float = 2.0) -> list[CheckResult]:
        """Every check; ``actor`` is the portrait whose rendered head motion is transferred."""
        return run_checks(
            {
                "emotion": self.emotion,
                "blinks": lambda: self.blinks(blink_minutes),
                "mid_stream": self.mid_stream,
                "pose_reference": lambda: self.pose_reference(actor),
                "pose_generated": self.pose_generated,
                "pose_seed": self.pose_seed,
            }
        )


def _turn(degrees: np.ndarray) -> FaceCommand:
    """A head turn (yaw, pitch, roll in degrees) as a rig command."""
    yaw, pitch, roll = np.radians(degrees)
    return FaceCommand(yaw=float(yaw), pitch=float(pitch), roll=float(roll))


def _moving_average(values: np.ndarray, width: int) -> np.ndarray:
    """(T, D) -> (T - width + 1, D)."""
    kernel = np.ones(width) / width
    return np.column_stack([np.convolve(v, kernel, "valid") for v in values.T])


def _repeat(mfcc: np.ndarray, frames: int) -> np.ndarray:
    """``frames`` MFCC rows: the speech over and over."""
    return np.resize(mfcc, (frames, mfcc.shape[1])).astype(np.float32)


def held_out_speech(seconds: float = 8.0, seed: int = 0) -> np.ndarray:
    """16 kHz speech from the voices training never used (mbrola us3, flite slt), to drive the
    checks: needs espeak-ng, mbrola-us3 and flite (./dev.sh installs them)."""
    from spacelive.training.corpus import HELD_OUT, SentenceMaker, synthesize

    sentences, total = SentenceMaker(), 0
    pieces: list[np.ndarray] = []
    rng = np.random.default_rng([seed, 0x5EE])
    while total < seconds * 16_000:
        voice = HELD_OUT[len(pieces) % len(HELD_OUT)]
        samples, _ = synthesize(voice, sentences.sentence("en", rng), rng)
        pieces.append(samples)
        total += len(samples)
    return np.concatenate(pieces)[: int(seconds * 16_000)].astype(np.float32)


def evaluate(
    motion: MotionModel,
    avatar: Avatar,
    actor: Avatar,
    speech16k: np.ndarray,
    blink_minutes: float = 2.0,
    analyzer: FaceAnalyzer | None = None,
) -> dict:
    """Every check: {checks: {name: {passed, figures, detail}}, passed}. ``actor``: the
    portrait whose head motion the reference check transfers to ``avatar``."""
    checker = ControlChecker(motion, analyzer or FaceAnalyzer(), avatar, speech16k)
    results = checker.run_all(actor, blink_minutes)
    checks = {
        r.name: {"passed": r.passed, "figures": r.figures, "detail": r.detail} for r in results
    }
    return {
        "thresholds": {
            "noise_multiple": NOISE_MULTIPLE,
            "blink_rate_per_minute": BLINK_RATE,
            "blink_count_tolerance": BLINK_TOLERANCE,
            "pose_rms_deg": POSE_RMS_DEG,
            "generated_std_deg": list(GENERATED_STD_DEG),
        },
        "checks": checks,
        "passed": all(c["passed"] for c in checks.values()),
    }
