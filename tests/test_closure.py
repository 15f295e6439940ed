"""Lips that meet on p, b and m: the phonetic score, the closure head and its constraint."""

import json
import shutil

import numpy as np
import pytest

from spacelive.face.landmarks import IBUG_LOWER_INNER_LIP, IBUG_UPPER_INNER_LIP, inner_lip_gap
from spacelive.motion.closure import NEAR, close_lips, closure_amount
from spacelive.training.alignment import Phone
from spacelive.training.phonetic_eval import best_lag, pool, score


def _utterance(close_bilabials: bool, shut_vowels: bool = False):
    """A clip of 'ma pa ba' x 10 at 30 fps: gap (T,), phones, envelope (T,)."""
    phones, gap, t = [], [], 0.0
    for _ in range(10):
        for consonant in ("M", "P", "B"):
            phones.append(Phone(consonant, t, t + 0.1))
            gap += [0.0 if close_bilabials else 0.5] * 3
            phones.append(Phone("AA", t + 0.1, t + 0.3))
            gap += [0.1 if shut_vowels else 1.0] * 6
            t += 0.3
    loudness = np.asarray(gap, float)
    return np.asarray(gap), phones, loudness


@pytest.mark.parametrize("closed", [True, False])
def test_bilabial_closure_counts_the_phones_whose_lips_meet(closed):
    figures = pool(score(*_utterance(close_bilabials=closed)))
    assert figures["bilabials"] == 30 and figures["open_vowels"] == 30
    assert figures["bilabial_closure"] == (1.0 if closed else 0.0)
    assert figures["vowel_shut"] == 0.0
    assert figures["open_vs_bilabial_auc"] == 1.0


def test_a_shut_vowel_is_a_false_closure():
    gap, phones, loudness = _utterance(close_bilabials=True, shut_vowels=True)
    gap[-30:] = 1.0  # so that the clip's p95 is an open mouth
    figures = pool(score(gap, phones, loudness))
    assert figures["vowel_shut"] > 0.8 and figures["open_vs_bilabial_auc"] < 1.0


def test_the_lag_is_found_either_way():
    rng = np.random.default_rng(0)
    loudness = np.convolve(rng.normal(size=300), np.ones(5) / 5, mode="same")
    assert best_lag(np.roll(loudness, 2), loudness) == 2
    assert best_lag(np.roll(loudness, -3), loudness) == -3


def test_the_lips_close_where_the_head_fires_and_the_lips_are_near(avatar):
    rest = np.repeat(avatar.landmarks0[None], 3, axis=0).astype(np.float32)
    rest[:, IBUG_LOWER_INNER_LIP, 1] = rest[:, IBUG_UPPER_INNER_LIP, 1] + 0.05  # parted a little
    rest[2, IBUG_LOWER_INNER_LIP, 1] += 0.3  # wide open
    amount = closure_amount(np.array([1.0, 0.0, 1.0]), inner_lip_gap(rest), np.ones(3))
    assert amount[0] == 1.0 and amount[1] == 0.0 and amount[2] == 0.0
    closed = close_lips(rest, amount)
    gaps = closed[:, IBUG_LOWER_INNER_LIP, 1] - closed[:, IBUG_UPPER_INNER_LIP, 1]
    np.testing.assert_allclose(gaps[0], 0.0, atol=1e-6)
    np.testing.assert_array_equal(closed[1:], rest[1:])
    # the lower lip rises whole: its outer edge with it, the upper lip stays
    assert closed[0, 57, 1] < rest[0, 57, 1] and closed[0, 51, 1] == rest[0, 51, 1]


def test_a_model_directory_with_a_closure_head_closes_the_lips(tiny_models, tmp_path, avatar):
    """An always-firing head (a bias only) shuts every near gap; a directory without the head
    streams as before."""
    torch = pytest.importorskip("torch")
    from spacelive.checks.bench import speech_like
    from spacelive.media.audio import offline_mfcc
    from spacelive.stream.engine import Engine, EngineConfig
    from spacelive.training.lipsync_eval import stream_landmarks
    from spacelive.training.train_closure import ClosureHead, export_head

    models = tmp_path / "models"
    shutil.copytree(tiny_models, models)
    channels = json.loads((models / "manifest.json").read_text())["stages"]["s2l"]["inputs"][0]
    head = ClosureHead(int(channels["shape"][1]), 8)
    with torch.no_grad():
        for p in head.parameters():
            p.zero_()
        head.net[-1].bias.fill_(10.0)
    export_head(head, int(channels["shape"][1]), models, {"trained": False})
    mfcc = offline_mfcc(speech_like(2.0, seed=4))
    plain = stream_landmarks(Engine(EngineConfig(models=tiny_models)).motion, avatar, mfcc)
    sealed = stream_landmarks(Engine(EngineConfig(models=models)).motion, avatar, mfcc)
    gap_plain, gap_sealed = inner_lip_gap(plain), inner_lip_gap(sealed)
    near = gap_plain < NEAR[0]
    assert near.any()
    np.testing.assert_allclose(gap_sealed[near], 0.0, atol=1e-5)
    assert np.all(gap_sealed <= gap_plain + 1e-6)
