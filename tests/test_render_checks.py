"""The renderer's objective checks, re-detected with MediaPipe on rendered frames.

These pin what the renderer achieves today on the portraits where it holds; the full targets
(issue #3) are reported by `spacelive eval render`, which a test below runs end to end.
"""

import json

import numpy as np
import pytest

from spacelive.checks.render_checks import RenderChecker
from spacelive.face.landmarks import LOWER_INNER_LIP, UPPER_INNER_LIP
from spacelive.face.portraits import standard_portraits
from spacelive.face.rig import FaceCommand, FaceRig, inner_lip_gap, mouth_width


@pytest.fixture(scope="module")
def checkers(analyzer):
    portraits = standard_portraits()
    return {
        name: RenderChecker(analyzer, analyzer.analyze(portraits[name]))
        for name in ("astronaut", "grace_hopper", "barack_obama")
    }


def test_rest_is_exact_through_the_bundled_models(checkers):
    from spacelive.stream.engine import Engine

    result = checkers["astronaut"].rest(Engine().motion, seconds=1.0)
    assert result.passed and result.figures["frames"] == 30


def test_mouth_opening_follows_the_command(checkers):
    result = checkers["astronaut"].mouth()
    assert result.passed, result.figures
    # Grace Hopper's sits at the 10 % MAE threshold (0.09999 on 2026-12-02; 0.174 before the
    # lips parted like a lens): pinned with a margin, not as a pass.
    grace = checkers["grace_hopper"].mouth().figures
    assert grace["corr"] >= 0.95 and grace["mae_fraction_of_widest"] <= 0.12, grace
    # A portrait speaking with its teeth showing closes and opens wide again.
    result = checkers["barack_obama"].mouth()
    assert result.passed, result.figures


@pytest.mark.parametrize("name", ["astronaut", "grace_hopper"])
def test_gaze_moves_the_irises_that_way(checkers, name):
    result = checkers[name].gaze()
    assert result.passed, result.figures


def test_blink_closes_the_eyes(checkers):
    result = checkers["astronaut"].blink()
    assert result.passed, result.figures
    assert checkers["grace_hopper"].blink().figures["closed_fraction"] < 0.8


@pytest.mark.parametrize("name", ["astronaut", "grace_hopper"])
def test_yaw_and_roll_track_the_command(checkers, name):
    figures = checkers[name].pose().figures
    assert figures["yaw_rms_deg"] <= 3.0 and figures["roll_rms_deg"] <= 3.0, figures


def test_rig_commands_mean_what_they_say(avatar):
    rig = FaceRig(avatar.mesh_px, avatar.pose)
    wide = rig.apply(FaceCommand(mouth_open=0.4))
    assert inner_lip_gap(wide) == pytest.approx(0.4 * mouth_width(avatar.mesh_px), rel=0.1)
    assert inner_lip_gap(rig.apply(FaceCommand(mouth_open=0.0))) < 1.0
    # The lips part like a lens: the gap narrows from the centre to the corners.
    pairs = list(zip(UPPER_INNER_LIP[1:-1], LOWER_INNER_LIP[1:-1], strict=True))
    gaps = [np.linalg.norm(wide[lo, :2] - wide[up, :2]) for up, lo in pairs]
    centre = len(gaps) // 2
    assert np.all(np.diff(gaps[: centre + 1]) > 0) and np.all(np.diff(gaps[centre:]) < 0), gaps
    assert max(gaps[0], gaps[-1]) < 0.75 * gaps[centre], gaps
    closed = rig.apply(FaceCommand(blink=1.0))
    assert abs(closed[159, 1] - closed[145, 1]) < 1.0  # upper lid on the lower one
    np.testing.assert_allclose(rig.apply(FaceCommand()), avatar.mesh_px, atol=1e-3)


def test_eval_render_writes_figures_and_fails_loudly(tmp_path, tiny_models):
    from spacelive.cli import main

    out = tmp_path / "checks.json"
    code = main(
        [
            "eval",
            "render",
            "--portrait",
            "astronaut",
            "--json",
            str(out),
            "--sheets",
            str(tmp_path),
            "--models",
            str(tiny_models),
        ]
    )
    report = json.loads(out.read_text())
    checks = report["portraits"]["astronaut"]
    assert set(checks) == {"rest", "mouth", "blink", "gaze", "pose", "speech_mouth"}
    assert checks["speech_mouth"]["figures"]["frames"] == 240  # 8 s of held-out speech
    assert code == (0 if report["passed"] else 1)
    assert (tmp_path / "render_checks_astronaut.png").stat().st_size > 100_000
    assert (tmp_path / "mouth_astronaut.jpg").stat().st_size > 20_000


def test_a_frame_the_detector_cannot_find_fails_its_check_with_the_reason(checkers):
    checker = checkers["grace_hopper"]

    class Blind:
        def mesh(self, frame):
            return None

    seeing = checker.analyzer
    checker.analyzer = Blind()
    try:
        results = {r.name: r for r in checker.run_all()}
    finally:
        checker.analyzer = seeing
    assert results["rest"].passed  # needs no detector
    for name in ("mouth", "blink", "gaze", "pose"):
        assert not results[name].passed
        assert "found no face in the frame of" in results[name].detail["error"]
