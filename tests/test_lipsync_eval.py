"""Lip-sync metrics and the evaluation command."""

import json

import numpy as np
import pytest

from spacelive.checks.bench import speech_like
from spacelive.media.audio import write_wav
from spacelive.training.lipsync_eval import _similarity_normalize, energy_baseline, metrics
from spacelive.training.teacher import landmarks_from_tracks


def test_normalization_puts_the_reference_points_at_plus_minus_one():
    rng = np.random.default_rng(0)
    points = rng.normal(size=(5, 20, 2))
    normalized = _similarity_normalize(points, 0, 6)
    np.testing.assert_allclose(normalized[:, 0], [[-1, 0]] * 5, atol=1e-12)
    np.testing.assert_allclose(normalized[:, 6], [[1, 0]] * 5, atol=1e-12)


def test_metrics_are_zero_against_itself_and_grow_with_error(avatar):
    rng = np.random.default_rng(1)
    tracks = np.clip(rng.normal(0.3, 0.3, size=(60, 5)), 0, 1)
    target = landmarks_from_tracks(tracks, avatar.landmarks0)
    same = metrics(target, target)
    assert same["M-P"] == same["M-V"] == same["F-P"] == same["F-V"] == 0.0
    assert same["mouth_open_corr"] == pytest.approx(1.0)
    noisy = metrics(target + rng.normal(0, 0.01, target.shape).astype(np.float32), target)
    worse = metrics(target + rng.normal(0, 0.03, target.shape).astype(np.float32), target)
    assert 0 < noisy["M-P"] < worse["M-P"] and 0 < noisy["M-V"] < worse["M-V"]


def test_energy_baseline_opens_with_loudness(avatar):
    from spacelive.media.audio import offline_mfcc

    audio = np.concatenate(
        [
            np.zeros(8000),
            speech_like(1.0, seed=2) * 0 + 0.3 * np.sin(np.arange(16000) / 16000 * 2 * np.pi * 150),
        ]
    ).astype(np.float32)
    mfcc = offline_mfcc(audio)
    fit = {"slope": 0.05, "intercept": 0.0}
    baseline = energy_baseline(mfcc, avatar.landmarks0, fit)
    gap = baseline[:, 66, 1] - baseline[:, 62, 1]
    assert gap[-10:].mean() > gap[:5].mean() + 0.05


def test_eval_lipsync_command(tmp_path, tiny_models):
    from spacelive.cli import main

    wav, alignment, out = tmp_path / "a.wav", tmp_path / "a.tsv", tmp_path / "m.json"
    write_wav(wav, speech_like(1.0, seed=4), 16_000)
    alignment.write_text("sil\t0\t0.2\nB\t0.2\t0.3\nAA\t0.3\t0.6\nM\t0.6\t0.7\nsil\t0.7\t1.0\n")
    assert (
        main(
            [
                "eval",
                "lipsync",
                "--audio",
                str(wav),
                "--alignment",
                str(alignment),
                "--format",
                "tsv",
                "--json",
                str(out),
                "--models",
                str(tiny_models),
            ]
        )
        == 0
    )
    result = json.loads(out.read_text())
    assert result["frames"] == 30
    for side in ("model", "energy_baseline"):
        assert set(result[side]) == {"M-P", "M-V", "F-P", "F-V", "mouth_open_corr"}


def test_parted_lips_close_to_speak_and_part_again_when_idle(avatar):
    """The astronaut smiles with parted lips. Before her first word they are her own; they
    close before the voice starts, stay closed through a short pause between words, and part
    again after a second of silence, as the teacher's targets do for the same audio."""
    from spacelive.face.landmarks import inner_lip_gap
    from spacelive.media.audio import offline_mfcc
    from spacelive.motion.idle import audio_relaxation
    from spacelive.stream.engine import DEFAULT_MODELS, Engine, EngineConfig
    from spacelive.training.lipsync_eval import stream_landmarks

    motion = Engine(EngineConfig(models=DEFAULT_MODELS)).motion
    rate = 16_000
    quiet = lambda s: np.zeros(int(rate * s))  # noqa: E731
    audio = np.concatenate(
        [quiet(0.5), speech_like(0.6, seed=5), quiet(0.3), speech_like(0.6, seed=6), quiet(2.0)]
    ).astype(np.float32)
    mfcc = offline_mfcc(audio)
    landmarks = stream_landmarks(motion, avatar, mfcc)
    gap = inner_lip_gap(landmarks) - inner_lip_gap(avatar.landmarks0[None])[0]
    idle = audio_relaxation(mfcc[:, 0], motion.lookahead)
    own = float(inner_lip_gap(avatar.landmarks0[None])[0])
    assert abs(gap[:10]).max() < 0.01  # her own mouth before the voice (0.5 s = 15 frames)
    assert idle[:10].min() == 1 and idle[15:24].min() == 0  # closed within its first syllable
    pause = slice(int(30 * 1.15), int(30 * 1.35))  # between the words
    assert idle[pause].max() == 0
    assert abs(gap[-5:]).max() < 0.01 and idle[-5:].min() == 1  # idle again at the end
    assert (gap[pause] < -0.5 * own).all()  # the pause is closed, not her smile


def test_the_bundled_s2l_keeps_every_standard_portrait_at_rest_in_silence(analyzer):
    from spacelive.face.portraits import standard_portraits
    from spacelive.stream.engine import DEFAULT_MODELS, Engine, EngineConfig
    from spacelive.training.lipsync_eval import silence_drift

    motion = Engine(EngineConfig(models=DEFAULT_MODELS)).motion
    assert not motion.stages.manifest["stages"]["s2l"].get("placeholder", False)
    for name, data in standard_portraits().items():
        assert abs(silence_drift(motion, analyzer.analyze(data))) < 0.01, name
