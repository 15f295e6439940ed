"""`spacelive eval controls`: the report, its exit status, and one real figure."""

import json

from spacelive.checks.bench import speech_like
from spacelive.media.audio import write_wav


def test_eval_controls_reports_every_check(tmp_path, tiny_models):
    from spacelive.cli import main

    wav, out = tmp_path / "speech.wav", tmp_path / "controls.json"
    write_wav(wav, speech_like(2.0, seed=3), 16_000)
    command = ["eval", "controls", "--audio", str(wav), "--blink-minutes", "0.2"]
    code = main(command + ["--json", str(out), "--models", str(tiny_models)])
    report = json.loads(out.read_text())
    assert set(report["checks"]) == {
        "emotion",
        "blinks",
        "mid_stream",
        "pose_reference",
        "pose_generated",
        "pose_seed",
    }
    assert code == (0 if report["passed"] else 1)
    # A control changes nothing before its frame and something at it, whatever the weights.
    mid = report["checks"]["mid_stream"]["figures"]
    assert mid["frames_before_unchanged"] == 1 and mid["changes_at_the_next_frame"] == 1
    # The same seed renders the same frames, whatever the weights.
    assert report["checks"]["pose_seed"]["figures"]["same_seed_identical_frames"] == 1
    # The reference motion, extracted from its video, drives the head whatever the weights.
    reference = report["checks"]["pose_reference"]["figures"]
    assert reference["reference_yaw_range_deg"] > 18 and reference["commanded_rms_deg"] < 0.01
