"""Objective checks of the renderer with an independent detector (`spacelive eval render`).

Each check drives the renderer through the face rig, re-detects the face mesh with MediaPipe on
the rendered frames, and compares what it finds with what was commanded:

* rest: silence with the pose fixed, through the motion stages -> PSNR against the crop;
* mouth: an opening sweep closed -> wide -> closed -> inner-lip gap correlation and MAE;
* blink: a commanded blink -> eye aspect ratio at the closed frame over the open one;
* gaze: iris offsets left, right, up, down -> re-detected iris shift over the commanded one;
* pose: yaw, pitch and roll sweeps within +-15 degrees -> RMS error of the re-fitted pose;
* speech_mouth: speech through the motion stages -> the mouth's believability on every frame
  (``mouth_checks``: opening range, seam between closed lips, teeth colour against the sclera,
  cavity darkness, an outline ring), with mouth crops at rest, slight, medium and wide openings.
"""

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from spacelive.checks import mouth_checks
from spacelive.checks.sheet import contact_sheet
from spacelive.face.analysis import (
    Avatar,
    FaceAnalyzer,
    crop_to_pixels,
    fit_head_pose,
    pixels_to_crop,
)
from spacelive.face.landmarks import LEFT_IRIS, MOUTH_CORNERS, RIGHT_IRIS
from spacelive.face.rig import FaceCommand, FaceRig, inner_lip_gap
from spacelive.render.mouth_look import sclera_lab
from spacelive.render.renderer import WarpRenderer

log = logging.getLogger(__name__)

THRESHOLDS = {
    "rest_psnr_db": 40.0,
    "mouth_corr": 0.95,
    "mouth_mae_fraction": 0.10,
    "blink_ear_fraction": 0.30,
    "gaze_fraction": 0.50,
    "pose_rms_deg": 3.0,
}

# Eye aspect ratio points: (corner, top, top, corner, bottom, bottom) per eye.
_EAR_POINTS = ((33, 160, 158, 133, 153, 144), (362, 385, 387, 263, 373, 380))


class Undetected(RuntimeError):
    """The detector found no face in a rendered frame: the check that rendered it fails."""


@dataclass
class CheckResult:
    name: str
    passed: bool
    figures: dict[str, float]
    detail: dict = field(default_factory=dict)


def eye_aspect_ratio(mesh: np.ndarray) -> float:
    """Mean over both eyes of (|p2-p6| + |p3-p5|) / (2 |p1-p4|)."""
    ratios = []
    for p1, p2, p3, p4, p5, p6 in _EAR_POINTS:
        d = lambda a, b: np.linalg.norm(mesh[a, :2] - mesh[b, :2])  # noqa: E731
        ratios.append((d(p2, p6) + d(p3, p5)) / (2 * d(p1, p4)))
    return float(np.mean(ratios))


def iris_centres(mesh: np.ndarray) -> np.ndarray:
    """(2, 2) iris centres (right, left) in pixels."""
    return np.stack([mesh[RIGHT_IRIS[0], :2], mesh[LEFT_IRIS[0], :2]])


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


class RenderChecker:
    """Runs the checks for one portrait."""

    def __init__(
        self, analyzer: FaceAnalyzer, avatar: Avatar, renderer: WarpRenderer | None = None
    ):
        self.analyzer = analyzer
        self.avatar = avatar
        self.renderer = renderer or WarpRenderer()
        self.source = self.renderer.prepare(avatar.image, avatar.mesh_px)
        self.rig = FaceRig(avatar.mesh_px, avatar.pose)
        self.reference = self._detect(avatar.image, "the portrait")
        self.frames: dict[str, np.ndarray] = {"source": avatar.image}
        self.mouth_frames: dict[str, np.ndarray] = {}

    def _detect(self, frame: np.ndarray, what: str) -> np.ndarray:
        mesh = self.analyzer.mesh(frame)
        if mesh is None:
            raise Undetected(f"the detector found no face in the frame of {what}")
        return mesh

    def _render(self, command: FaceCommand, label: str | None = None):
        """(frame, driving keypoints); labelled frames are kept for the contact sheet."""
        driving = self.rig.apply(command)
        frame = self.renderer.render(self.source, driving)
        if label is not None:
            self.frames[label] = frame
        return frame, driving

    def rest(self, motion=None, seconds: float = 2.0) -> CheckResult:
        """Silence through the motion stages (pose fixed, no blinks), rendered: PSNR against
        the crop."""
        frames = []
        if motion is not None:
            from spacelive.media.audio import offline_mfcc
            from spacelive.motion.controls import ControlUpdate

            quiet = ControlUpdate(blinks_per_minute=0, pose_mode="fixed")
            state = motion.new_state(self.avatar, quiet)
            mfcc = offline_mfcc(np.zeros(int(16_000 * seconds)))
            frames = [
                self.renderer.render(self.source, crop_to_pixels(m.keypoints))
                for m in motion.run(state, mfcc)
            ]
        else:
            frames = [self._render(FaceCommand())[0]]
        values = [psnr(f, self.avatar.image) for f in frames]
        worst = min(values)
        return CheckResult(
            "rest",
            bool(worst >= THRESHOLDS["rest_psnr_db"]),
            {"psnr_db_min": worst, "frames": len(frames)},
        )

    def mouth(self, widest: float = 0.5, steps: int = 21) -> CheckResult:
        openings = np.concatenate(
            [np.linspace(0, widest, steps), np.linspace(widest, 0, steps)[1:]]
        )
        commanded_gaps, detected_gaps = [], []
        for i, opening in enumerate(openings):
            label = "mouth wide" if i == steps - 1 else ("mouth closed" if i == 0 else None)
            frame, driving = self._render(FaceCommand(mouth_open=float(opening)), label)
            commanded_gaps.append(inner_lip_gap(driving))
            detected_gaps.append(inner_lip_gap(self._detect(frame, f"mouth opening {opening:.3f}")))
        commanded, detected = np.array(commanded_gaps), np.array(detected_gaps)
        corr = float(np.corrcoef(commanded, detected)[0, 1])
        mae = float(np.abs(commanded - detected).mean())
        fraction = mae / float(commanded.max())
        passed = corr >= THRESHOLDS["mouth_corr"] and fraction <= THRESHOLDS["mouth_mae_fraction"]
        return CheckResult(
            "mouth",
            passed,
            {
                "corr": corr,
                "mae_px": mae,
                "mae_fraction_of_widest": fraction,
                "widest_px": float(commanded.max()),
            },
            {
                "commanded_px": commanded.round(2).tolist(),
                "detected_px": detected.round(2).tolist(),
            },
        )

    def blink(self) -> CheckResult:
        closure = [0.0, 0.5, 1.0, 0.5, 0.0]  # 4 frames down and up again, as in the paper
        ears = [
            eye_aspect_ratio(
                self._detect(self._render(FaceCommand(blink=c), f"blink {c}")[0], f"blink {c}")
            )
            for c in closure
        ]
        fraction = min(ears) / ears[0]
        return CheckResult(
            "blink",
            fraction <= THRESHOLDS["blink_ear_fraction"],
            {"ear_open": ears[0], "ear_closed": min(ears), "closed_fraction": fraction},
            {"ear": [round(e, 4) for e in ears]},
        )

    def gaze(self, x: float = 0.45, y: float = 0.3) -> CheckResult:
        base = iris_centres(self.reference)
        rest_driving = self.rig.apply(FaceCommand())
        figures, detail, passed = {}, {}, True
        for name, offset in {
            "left": (-x, 0.0),
            "right": (x, 0.0),
            "up": (0.0, -y),
            "down": (0.0, y),
        }.items():
            frame, driving = self._render(FaceCommand(gaze=offset), f"gaze {name}")
            command = iris_centres(driving) - iris_centres(rest_driving)
            moved = iris_centres(self._detect(frame, f"gaze {name}")) - base
            axis = 0 if offset[0] else 1
            # The detected shift projected on the commanded one, both eyes together.
            wanted = command[:, axis]
            ratio = float(moved[:, axis] @ wanted / max(float(wanted @ wanted), 1e-9))
            figures[f"{name}_fraction"] = ratio
            detail[name] = {
                "commanded_px": command[:, axis].round(2).tolist(),
                "detected_px": moved[:, axis].round(2).tolist(),
            }
            passed &= ratio >= THRESHOLDS["gaze_fraction"]
        return CheckResult("gaze", passed, figures, detail)

    def pose(self, limit_deg: float = 15.0, step_deg: float = 5.0) -> CheckResult:
        base = np.array(fit_head_pose(pixels_to_crop(self.reference)).angles_deg())
        angles = np.arange(-limit_deg, limit_deg + 1e-6, step_deg)
        figures, detail, passed = {}, {}, True
        for axis, name in enumerate(("yaw", "pitch", "roll")):
            errors = []
            for angle in angles:
                values = [0.0, 0.0, 0.0]
                values[axis] = float(np.radians(angle))
                label = f"{name} {angle:+.0f}" if abs(angle) == limit_deg else None
                command = FaceCommand(yaw=values[0], pitch=values[1], roll=values[2])
                frame, _ = self._render(command, label)
                found = np.array(
                    fit_head_pose(
                        pixels_to_crop(self._detect(frame, f"{name} {angle:+.0f}"))
                    ).angles_deg()
                )
                errors.append(float(found[axis] - base[axis] - angle))
            rms = float(np.sqrt(np.mean(np.square(errors))))
            figures[f"{name}_rms_deg"] = rms
            detail[name] = {
                "commanded_deg": angles.tolist(),
                "error_deg": np.round(errors, 2).tolist(),
            }
            passed &= rms <= THRESHOLDS["pose_rms_deg"]
        return CheckResult("pose", passed, figures, detail)

    def speech_mouth(self, motion, speech16k: np.ndarray) -> CheckResult:
        """Speech through the motion stages, every frame rendered and re-detected: the
        ``mouth_checks`` figures against their targets. Keeps mouth crops at rest and at
        slight, medium and wide re-detected openings for ``mouth_sheet``."""
        from spacelive.media.audio import offline_mfcc
        from spacelive.motion.controls import ControlUpdate

        state = motion.new_state(self.avatar, ControlUpdate())
        sclera = sclera_lab(self.avatar.image, self.reference)
        corners = self.avatar.mesh_px[list(MOUTH_CORNERS), :2]
        side = int(np.clip(1.6 * np.linalg.norm(corners[1] - corners[0]), 48, 512))
        x0, y0 = np.clip(np.round(corners.mean(axis=0) - side / 2), 0, 512 - side).astype(int)
        measured, crops = [], []
        for m in motion.run(state, offline_mfcc(speech16k)):
            frame = self.renderer.render(self.source, crop_to_pixels(m.keypoints))
            mesh = self.analyzer.mesh(frame)
            measured.append(None if mesh is None else mouth_checks.measure(frame, mesh, sclera))
            crops.append(frame[y0 : y0 + side, x0 : x0 + side].copy())
        figures = mouth_checks.summarize(measured)
        self._keep_mouth_crops(crops, measured)
        return CheckResult(
            "speech_mouth",
            mouth_checks.verdict(figures),
            figures,
            {
                "targets": mouth_checks.TARGETS,
                "sclera_lab": None if sclera is None else [round(float(c), 2) for c in sclera],
            },
        )

    def _keep_mouth_crops(self, crops: list[np.ndarray], measured) -> None:
        found = [i for i, m in enumerate(measured) if m is not None]
        if not found:
            return
        opening = np.array([measured[i].opening_ew for i in found])
        picks = {"rest": found[0]}
        for label, target in (("slight", 0.05), ("medium", 0.15)):
            picks[label] = found[int(np.argmin(np.abs(opening - target)))]
        picks["wide"] = found[int(np.argmax(opening))]
        for label, i in picks.items():
            self.mouth_frames[f"{label} {measured[i].opening_ew:.3f} ew"] = crops[i]

    def run_all(self, motion=None, speech16k: np.ndarray | None = None) -> list[CheckResult]:
        checks = {
            "rest": lambda: self.rest(motion),
            "mouth": self.mouth,
            "blink": self.blink,
            "gaze": self.gaze,
            "pose": self.pose,
        }
        if motion is not None and speech16k is not None:
            checks["speech_mouth"] = lambda: self.speech_mouth(motion, speech16k)
        return run_checks(checks)


def run_checks(checks: dict[str, Callable[[], CheckResult]]) -> list[CheckResult]:
    """Each check in turn; one whose rendered frame the detector cannot find fails with the
    reason, and the others still run."""
    results = []
    for name, check in checks.items():
        try:
            results.append(check())
        except Undetected as error:
            results.append(CheckResult(name, False, {}, {"error": str(error)}))
    return results


def evaluate(portraits: dict[str, bytes], motion=None, speech16k: np.ndarray | None = None) -> dict:
    """Every check on every portrait: {portrait: {check: {passed, figures, detail}}} plus
    thresholds and an overall verdict; also the contact sheets per portrait (``sheets``: the
    checks' frames, ``mouth_sheets``: the mouth crops of the speech check)."""
    analyzer = FaceAnalyzer()
    report: dict = {"thresholds": THRESHOLDS, "portraits": {}}
    sheets, mouth_sheets = {}, {}
    for name, data in portraits.items():
        checker = RenderChecker(analyzer, analyzer.analyze(data))
        results = checker.run_all(motion, speech16k)
        report["portraits"][name] = {
            r.name: {"passed": r.passed, "figures": r.figures, "detail": r.detail} for r in results
        }
        sheets[name] = contact_sheet(checker.frames)
        if checker.mouth_frames:
            mouth_sheets[name] = contact_sheet(checker.mouth_frames, columns=4, size=320)
    report["passed"] = all(
        check["passed"] for checks in report["portraits"].values() for check in checks.values()
    )
    return {"report": report, "sheets": sheets, "mouth_sheets": mouth_sheets}
