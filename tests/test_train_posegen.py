"""PoseGen: the head-motion teacher's properties, training mechanics on a tiny model
(checkpoints, resume, log, held-out refusal), decode parity, and export into a model folder."""

import csv
import json
import shutil

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from spacelive.training.alignment import Phone  # noqa: E402
from spacelive.training.corpus import write_shard  # noqa: E402
from spacelive.training.head_motion import activity, head_motion  # noqa: E402
from spacelive.training.teacher import PARAMETERS  # noqa: E402

RATE = 16_000


def talk(seconds_speaking: float, seconds_silent: float):
    """Alternating vowel/consonant phones, then silence: (phones, audio, frames). Every third
    vowel is long and loud (stressed)."""
    phones, t, audio = [], 0.2, [np.zeros(int(0.2 * RATE))]
    phones.append(Phone("SIL", 0.0, 0.2))
    k = 0
    while t < 0.2 + seconds_speaking:
        stressed = k % 3 == 0
        length = 0.22 if stressed else 0.09
        phones.append(Phone("AA", t, t + length))
        audio.append((0.5 if stressed else 0.15) * np.sin(np.arange(int(length * RATE)) / 5))
        t += length
        phones.append(Phone("T", t, t + 0.06))
        audio.append(0.02 * np.ones(int(0.06 * RATE)))
        t += 0.06
        k += 1
    phones.append(Phone("SIL", t, t + seconds_silent))
    audio.append(np.zeros(int(seconds_silent * RATE)))
    samples = np.concatenate(audio)
    return phones, samples, int(len(samples) / RATE * 30)


def test_the_teacher_starts_at_rest_and_moves_more_while_speaking():
    phones, audio, frames = talk(6.0, 5.0)
    speaking = activity(phones, frames) > 0.9
    silent = activity(phones, frames) < 0.2
    ratios, stds = [], []
    for seed in range(20):
        pose = head_motion(phones, audio, frames, np.random.default_rng(seed))
        assert pose.shape == (frames, 6) and np.all(pose[0] == 0)
        degrees = np.degrees(pose[:, :2])
        speed = np.linalg.norm(np.diff(degrees, axis=0), axis=1)
        ratios.append(speed[speaking[1:]].mean() / speed[silent[1:]].mean())
        stds.append(degrees[speaking].std(axis=0))
    assert np.median(ratios) > 1.5
    assert 1.5 < np.mean(stds) < 8  # degrees: a talker's range, not a stiff or a wild head


def test_the_teacher_nods_on_stressed_vowels_and_each_example_has_its_own_style():
    phones, audio, frames = talk(6.0, 1.0)
    stressed_onsets = [p.start_s for p in phones if p.phoneme == "AA" and p.end_s - p.start_s > 0.2]
    pitch_speed, other_speed = [], []
    poses = [head_motion(phones, audio, frames, np.random.default_rng(s)) for s in range(30)]
    for pose in poses:
        speed = np.abs(np.diff(np.degrees(pose[:, 1])))
        near = np.zeros(len(speed), bool)
        for onset in stressed_onsets:
            near[int(onset * 30) : int((onset + 0.3) * 30)] = True
        pitch_speed.append(speed[near].mean())
        other_speed.append(speed[~near & (np.arange(len(speed)) > 15)].mean())
    assert np.mean(pitch_speed) > 1.3 * np.mean(other_speed)
    assert np.abs(poses[0] - poses[1]).max() > np.radians(1)  # one audio, many motions


@pytest.fixture
def corpus(tmp_path):
    """A shard of speech-like phones and random features."""
    rng = np.random.default_rng(0)
    utterances = []
    for speaking in (2.0, 3.0, 1.0):
        phones, audio, frames = talk(speaking, 0.8)
        utterances.append(
            {
                "voice": "mbrola:us1",
                "audio": audio.astype(np.float32),
                "mfcc": rng.normal(0, 1, (frames, 40)).astype(np.float32),
                "tracks": np.zeros((frames, len(PARAMETERS)), np.float32),
                "phones": phones,
            }
        )
    (tmp_path / "corpus").mkdir()
    write_shard(tmp_path / "corpus" / "shard-0000.npz", utterances)
    return tmp_path / "corpus"


def config(steps: int):
    from spacelive.training.train_posegen import PoseTrainConfig

    return PoseTrainConfig(width="tiny", steps=steps, batch=2, window=60, checkpoint_every=2)


def test_training_checkpoints_logs_resumes_and_refuses_held_out_voices(
    corpus, tmp_path, tiny_models
):
    from spacelive.motion.runners import load_stages
    from spacelive.training.train_posegen import train

    stages, out = load_stages(tiny_models), tmp_path / "run"
    first = train(corpus, stages, out, config(4))
    assert first["steps"] == 4 and np.isfinite(first["final_loss"])
    assert (out / "loss.png").stat().st_size > 0 and (out / "features.npz").exists()
    assert train(corpus, stages, out, config(6))["steps"] == 6  # resumes at 4
    rows = list(csv.DictReader((out / "log.csv").open()))
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4, 5, 6]
    data = dict(np.load(corpus / "shard-0000.npz"))
    data["voices"] = np.array(["mbrola:us3"] * len(data["voices"]))
    np.savez(corpus / "shard-0000.npz", **data)
    with pytest.raises(ValueError, match="held-out voice"):
        train(corpus, stages, tmp_path / "other", config(2))


def test_encoder_features_are_what_a_stream_hears(tiny_models):
    """Batched, padded encoding equals stepping each utterance alone."""
    from spacelive.motion.runners import load_stages
    from spacelive.training.encoder_features import encode_audio

    stages = load_stages(tiny_models)
    rng = np.random.default_rng(1)
    mfccs = [rng.normal(0, 1, (n, 40)).astype(np.float32) for n in (12, 30, 7)]
    batched = encode_audio(stages, mfccs, batch=3)
    alone = [encode_audio(stages, [m])[0] for m in mfccs]
    for a, b, m in zip(batched, alone, mfccs, strict=True):
        assert a.shape == (len(m), stages.input_shape("s2l", "audio", 1)[1])
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_decoding_with_its_own_previous_poses_equals_free_running():
    from spacelive.export.stages import build_stages, randomize

    model = randomize(build_stages("tiny"), seed=3).posegen
    audio, z = torch.randn(2, 25, 32), torch.randn(2, 8)
    with torch.no_grad():
        free = model.decode(audio, z)
        previous = torch.cat([torch.zeros_like(free[:, :1]), free[:, :-1]], dim=1)
        given = model.decode_given(audio, z, previous)
    assert float(free.abs().max()) > 1e-3
    torch.testing.assert_close(given, free, atol=1e-5, rtol=1e-4)


def test_export_replaces_posegen_in_a_model_folder(corpus, tmp_path, tiny_models):
    from spacelive.cli import main
    from spacelive.motion.runners import load_stages
    from spacelive.training.train_posegen import train

    models = tmp_path / "models"
    shutil.copytree(tiny_models, models)
    before = json.loads((models / "manifest.json").read_text())["stages"]
    train(corpus, load_stages(models), tmp_path / "run", config(2))
    checkpoint = str(tmp_path / "run" / "checkpoint.pt")
    command = ["export", "--width", "tiny", "--posegen-checkpoint", checkpoint, "-o"]
    assert main([*command, str(models)]) == 0
    after = json.loads((models / "manifest.json").read_text())["stages"]
    assert after["posegen"]["training"]["trained"] is True
    assert after["posegen"]["sha256"] != before["posegen"]["sha256"]
    assert {k: after[k] for k in ("audio_encoder", "s2l")} == {
        k: before[k] for k in ("audio_encoder", "s2l")
    }
    load_stages(models)  # still a loadable model folder
    assert main([*command, str(tmp_path / "empty")]) == 2  # no model folder there
