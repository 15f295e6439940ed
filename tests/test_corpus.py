"""The synthetic corpus (needs espeak-ng, mbrola voices and flite, which ./dev.sh installs)."""

import json
import shutil

import numpy as np
import pytest

from spacelive.training.corpus import (
    HELD_OUT_VOICES,
    SentenceMaker,
    synthesize,
    training_voices,
    utterance,
)

pytestmark = pytest.mark.skipif(
    not (shutil.which("espeak-ng") and shutil.which("mbrola") and shutil.which("flite")),
    reason="speech synthesizers not installed",
)


def test_training_voices_exclude_the_held_out_ones():
    keys = {v.key for v in training_voices()}
    assert not keys & HELD_OUT_VOICES
    assert {"mbrola:us1", "flite:kal16", "flite:awb", "flite:rms", "espeak:en-us"} <= keys


@pytest.mark.parametrize(
    "key", ["mbrola:us1", "mbrola:de1", "flite:kal16", "espeak:en-us", "espeak:fr"]
)
def test_an_utterance_has_exact_timing_and_matching_frames(key):
    voice = next(v for v in training_voices() if v.key == key)
    u = utterance(voice, SentenceMaker(), np.random.default_rng(4))
    seconds = len(u["audio"]) / 16_000
    assert u["phones"][0].start_s == 0.0
    assert u["phones"][-1].end_s == pytest.approx(seconds, abs=0.03)
    assert len(u["mfcc"]) == len(u["tracks"]) == int(np.ceil(seconds * 30))
    assert np.abs(u["audio"]).max() <= 1.0
    speech = [p for p in u["phones"] if p.phoneme != "SIL"]
    assert len(speech) > 10


def test_synth_is_reproducible_from_the_seed(tmp_path):
    from spacelive.cli import main

    for name in ("a", "b"):
        assert (
            main(
                [
                    "data",
                    "synth",
                    "--hours",
                    "0.003",
                    "--out",
                    str(tmp_path / name),
                    "--seed",
                    "7",
                    "--shard-minutes",
                    "1",
                ]
            )
            == 0
        )
    a, b = (np.load(tmp_path / n / "shard-0000.npz") for n in ("a", "b"))
    assert np.array_equal(a["audio"], b["audio"]) and np.array_equal(a["tracks"], b["tracks"])
    summary = json.loads((tmp_path / "a" / "corpus.json").read_text())
    assert summary["hours"] >= 0.003 and summary["seed"] == 7


def test_some_utterances_pause_for_seconds_and_rest_through_it():
    """Long silences teach S2L to come back to rest and stay there."""
    from spacelive.training.corpus import LONG_PAUSE_S
    from spacelive.training.teacher import PARAMETERS

    voice = next(v for v in training_voices() if v.key == "mbrola:us1")
    sentences = SentenceMaker()
    for seed in range(40):
        u = utterance(voice, sentences, np.random.default_rng([9, seed]))
        long = [p for p in u["phones"] if p.phoneme == "SIL" and p.end_s - p.start_s >= 2.0]
        if long:
            break
    else:
        pytest.fail("no utterance with a long pause in 40 draws (expected about 30 %)")
    pause = long[0]
    assert pause.end_s - pause.start_s <= LONG_PAUSE_S[1] + 1.1  # plus the sentences' own ends
    inside = slice(int(pause.start_s * 30) + 8, int(pause.end_s * 30) - 8)
    assert np.abs(u["tracks"][inside]).max() < 0.01, PARAMETERS  # the teacher rests


def test_every_installed_mbrola_voice_is_aligned():
    """Each voice's own phoneme symbols are all known (an unknown one raises)."""
    rng = np.random.default_rng(5)
    sentences = SentenceMaker()
    for voice in (v for v in training_voices() if v.engine == "mbrola"):
        samples, phones = synthesize(voice, sentences.sentence(voice.language, rng), rng)
        assert phones[-1].end_s == pytest.approx(len(samples) / 16_000, abs=0.02), voice.key
