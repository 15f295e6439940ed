"""Landmarks2Latents training: its teacher is the renderer's geometry, the training mechanics
run on a tiny model (checkpoints, resume), and teacher-forced equals free-running."""

import csv

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from spacelive.face import normalize_landmarks  # noqa: E402
from spacelive.landmarks import MESH_TO_SPARSE  # noqa: E402
from tests.test_train_posegen import corpus  # noqa: E402, F401  (a fixture)


def test_the_teacher_is_the_rigid_pose_of_the_frontal_transfer(corpus, tiny_models):  # noqa: F811
    from spacelive.face_model import face_model
    from spacelive.runners import load_stages
    from spacelive.training.train_l2l import load_corpus, teacher_example

    utterance = load_corpus(corpus, load_stages(tiny_models))[0]
    face = face_model().astype(np.float32)
    emotion = np.zeros(8, np.float32)
    posed, kp_source, target = teacher_example(
        face, utterance, 0, 30, emotion, np.random.default_rng(0)
    )
    assert posed.shape == (30, 110, 3) and target.shape == (30, 478, 3)
    # The sparse landmarks are mesh points: the teacher's mesh carries them where the posed
    # landmarks say, frame by frame, whatever the head and the mouth do.
    np.testing.assert_allclose(target[:, MESH_TO_SPARSE], posed, atol=2e-4)
    assert np.abs(target[0] - kp_source).max() < 0.05  # the stream starts near the portrait
    assert np.abs(target[-1] - target[0]).max() > 1e-3  # and moves


def test_training_checkpoints_logs_and_resumes(corpus, tmp_path, tiny_models):  # noqa: F811
    from spacelive.runners import load_stages
    from spacelive.training.train_l2l import L2LTrainConfig, train

    stages, out = load_stages(tiny_models), tmp_path / "run"

    def config(steps):
        return L2LTrainConfig(width="tiny", steps=steps, batch=2, window=12, checkpoint_every=2)

    first = train(corpus, stages, out, config(3))
    assert first["steps"] == 3 and np.isfinite(first["final_loss"])
    assert train(corpus, stages, out, config(4))["steps"] == 4
    rows = list(csv.DictReader((out / "log.csv").open()))
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4]


def test_teacher_forcing_with_its_own_keypoints_equals_free_running():
    from spacelive.export.stages import build_stages, randomize

    model = randomize(build_stages("tiny"), seed=3).l2l.eval()
    g = torch.Generator().manual_seed(1)
    audio = torch.randn(2, 20, 32, generator=g)
    landmarks = torch.randn(2, 20, 110, 3, generator=g) * 0.5
    source = torch.randn(2, 478, 3, generator=g) * 0.5
    emotion = torch.rand(2, 20, 8, generator=g)
    with torch.no_grad():
        free = model(audio, landmarks, source, emotion)
        forced = model(audio, landmarks, source, emotion, teacher=free)
    assert float((free - source[:, None]).abs().max()) > 1e-3
    torch.testing.assert_close(forced, free, atol=1e-5, rtol=1e-4)


def test_frontal_meshes_hold_their_sparse_landmarks(avatar):
    frontal = normalize_landmarks(avatar.kp_source, avatar.pose)
    np.testing.assert_allclose(frontal[MESH_TO_SPARSE], avatar.landmarks0, atol=1e-5)
