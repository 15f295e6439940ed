"""S2L training mechanics on a tiny model: checkpoints, resume, CSV log, loss curve."""

import csv
from dataclasses import replace

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from spacelive.training.alignment import Phone  # noqa: E402
from spacelive.training.corpus import write_shard  # noqa: E402
from spacelive.training.teacher import PARAMETERS  # noqa: E402
from spacelive.training.train_s2l import TrainConfig, train  # noqa: E402


@pytest.fixture
def corpus(tmp_path):
    """A shard of random features and smooth random tracks: enough to exercise training."""
    rng = np.random.default_rng(0)
    utterances = []
    for frames in (50, 80, 20):  # one shorter than the window: padded with its last frame
        tracks = np.clip(np.cumsum(rng.normal(0, 0.05, (frames, len(PARAMETERS))), 0), 0, 1)
        utterances.append(
            {
                "voice": "mbrola:us1",
                "audio": np.zeros(frames * 533, np.float32),
                "mfcc": rng.normal(0, 1, (frames, 40)).astype(np.float32),
                "tracks": tracks.astype(np.float32),
                "phones": [Phone("SIL", 0.0, frames / 30)],
            }
        )
    (tmp_path / "corpus").mkdir()
    write_shard(tmp_path / "corpus" / "shard-0000.npz", utterances)
    return tmp_path / "corpus"


def config(steps: int) -> TrainConfig:
    return TrainConfig(
        width="tiny", steps=steps, batch=2, window=30, checkpoint_every=2, self_feed=0.5, seed=1
    )


def test_training_checkpoints_logs_and_resumes(corpus, tmp_path):
    out = tmp_path / "run"
    first = train(corpus, out, config(4))
    assert first["steps"] == 4 and np.isfinite(first["final_loss"])
    assert (out / "checkpoint.pt").exists() and (out / "loss.png").stat().st_size > 0
    assert torch.load(out / "checkpoint.pt", weights_only=False)["step"] == 4

    resumed = train(corpus, out, config(6))  # picks up at step 4, runs 2 more
    assert resumed["steps"] == 6
    rows = list(csv.DictReader((out / "log.csv").open()))
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4, 5, 6]
    assert all(np.isfinite(float(r["loss"])) for r in rows)


def test_fine_tuning_starts_from_another_run(corpus, tmp_path):
    train(corpus, tmp_path / "base", config(2))
    base = torch.load(tmp_path / "base" / "checkpoint.pt", weights_only=False)["model"]
    summary = train(
        corpus, tmp_path / "tuned", config(2), init_from=tmp_path / "base" / "checkpoint.pt"
    )
    assert summary["steps"] == 2
    tuned = torch.load(tmp_path / "tuned" / "checkpoint.pt", weights_only=False)["model"]
    assert tuned.keys() == base.keys()


def test_held_out_voices_are_refused(corpus, tmp_path):
    data = dict(np.load(corpus / "shard-0000.npz"))
    data["voices"] = np.array(["flite:slt"] * len(data["voices"]))
    np.savez(corpus / "shard-0000.npz", **data)
    with pytest.raises(ValueError, match="held-out voice"):
        train(corpus, tmp_path / "run", config(2))


def test_the_loss_weighs_the_mouth():
    from spacelive.face.landmarks import MOUTH
    from spacelive.training.train_s2l import loss_terms

    target = torch.zeros(1, 3, 110, 3)
    off_mouth, on_mouth = target.clone(), target.clone()
    off_mouth[:, 1, 30, 0] = 1.0  # the nose
    on_mouth[:, 1, 50, 0] = 1.0  # the upper lip
    assert MOUTH.start == 48 and MOUTH.stop == 68
    nose = loss_terms(off_mouth, target, y_weight=2.0, mouth_weight=4.0)
    lip = loss_terms(on_mouth, target, y_weight=2.0, mouth_weight=4.0)
    assert lip[0] / nose[0] == pytest.approx(4.0) and lip[1] / nose[1] == pytest.approx(4.0)


def test_the_gap_weight_counts_a_missed_closure_on_its_own():
    from spacelive.training.train_s2l import loss_terms

    target = torch.zeros(1, 3, 110, 3)
    open_lips = target.clone()
    open_lips[:, 1, 66, 1] = 0.3  # the lower inner lip stays down through a closure
    nose = target.clone()
    nose[:, 1, 30, 1] = 0.3  # the same error where it does not open the lips
    plain = loss_terms(open_lips, target, y_weight=2.0, mouth_weight=4.0)
    gap = loss_terms(open_lips, target, y_weight=2.0, mouth_weight=4.0, gap_weight=2.0)
    # One frame of three is 0.3 off: 2.0 * 0.3 / 3 more; its velocity is off twice.
    assert gap[0] - plain[0] == pytest.approx(0.2, rel=1e-5)
    assert gap[1] - plain[1] == pytest.approx(2.0 * 0.6 / 2, rel=1e-5)
    nose_plain = loss_terms(nose, target, y_weight=2.0, mouth_weight=4.0)
    nose_gap = loss_terms(nose, target, y_weight=2.0, mouth_weight=4.0, gap_weight=2.0)
    assert nose_gap[0] == pytest.approx(nose_plain[0]) and nose_gap[1] == pytest.approx(
        nose_plain[1]
    )


def test_training_identities_smile_and_keep_the_ears_two_apart(monkeypatch):
    from spacelive.face.landmarks import LEFT_EAR, RIGHT_EAR
    from spacelive.training import identities

    base = _closed_identity()

    def corner_lift(smile_share: float) -> np.ndarray:
        """Mouth corners (48, 54) above the lip centre (51), over 300 random faces."""
        monkeypatch.setattr(identities, "REST_SMILE_SHARE", smile_share)
        rng = np.random.default_rng(0)
        faces = np.array([identities.perturb(base, rng) for _ in range(300)])
        ears = np.linalg.norm(faces[:, LEFT_EAR, :2] - faces[:, RIGHT_EAR, :2], axis=1)
        np.testing.assert_allclose(ears, 2.0, rtol=1e-5)
        return faces[:, 51, 1] - (faces[:, 48, 1] + faces[:, 54, 1]) / 2

    # A smile lifts the corners by 0.05 x intensity (0.2-0.8): about 0.025 on average.
    assert float(np.mean(corner_lift(1.0) - corner_lift(0.0))) == pytest.approx(0.025, abs=0.008)


def test_training_samples_speak_around_closed_lips(corpus):
    """A parted rest in the bank is heard with its lips closed, as the server gives it."""
    from spacelive.face.landmarks import inner_lip_gap
    from spacelive.training.teacher import landmarks_from_tracks
    from spacelive.training.train_s2l import Corpus, sample_batch

    tracks = np.zeros((1, len(PARAMETERS)))
    tracks[0, PARAMETERS.index("open")] = 0.3
    parted = landmarks_from_tracks(tracks, _closed_identity())[0]  # lips apart at rest
    assert inner_lip_gap(parted[None])[0] > 0.05
    bank = np.stack([_closed_identity(), parted])
    batch = sample_batch(
        Corpus(corpus), bank, np.random.default_rng(3), replace(config(1), batch=16)
    )
    # closed_mouth meets the lips on average along the contour; the centres within 0.02
    assert float(np.abs(inner_lip_gap(batch[1].numpy())).max()) < 0.02


def _closed_identity() -> np.ndarray:
    from spacelive.face.head_model import face_model
    from spacelive.face.landmarks import MESH_TO_SPARSE, closed_mouth

    return closed_mouth(face_model()[MESH_TO_SPARSE]).astype(np.float32)


def test_s2l_trains_on_a_frozen_encoder_and_exports_beside_it(
    corpus, tiny_models, tmp_path, capsys
):
    """S2L alone, on the features of a model directory's encoder: the checkpoint holds no
    encoder, and export puts S2L into a directory only if it holds that very encoder."""
    import json
    import shutil

    from spacelive.cli import main
    from spacelive.stream.engine import Engine, EngineConfig

    out = tmp_path / "run"
    summary = train(corpus, out, config(2), encoder_models=tiny_models)
    assert summary["steps"] == 2
    weights = torch.load(out / "checkpoint.pt", weights_only=False)["model"]
    assert weights and all(k.startswith("s2l.") for k in weights)
    assert (out / "features.npz").exists()
    assert train(corpus, out, config(3), encoder_models=tiny_models)["steps"] == 3  # cached

    models = tmp_path / "models"
    shutil.copytree(tiny_models, models)
    before = json.loads((models / "manifest.json").read_text())["stages"]
    argv = ["export", "--width", "tiny", "--s2l-checkpoint", str(out / "checkpoint.pt")]
    assert main([*argv, "-o", str(models)]) == 0
    after = json.loads((models / "manifest.json").read_text())["stages"]
    assert after["audio_encoder"] == before["audio_encoder"]
    assert after["s2l"]["sha256"] != before["s2l"]["sha256"]
    assert after["s2l"]["training"]["step"] == 3
    Engine(EngineConfig(models=models))  # loads

    capsys.readouterr()  # with PoseGen into a new directory it would need an encoder: refused
    assert main([*argv, "--posegen-checkpoint", "pose.pt", "-o", str(tmp_path / "new")]) == 2
    assert "trained on a frozen audio encoder" in capsys.readouterr().err
    assert not (tmp_path / "new").exists()

    manifest = json.loads((models / "manifest.json").read_text())
    manifest["stages"]["audio_encoder"]["sha256"] = "0" * 64  # another encoder
    (models / "manifest.json").write_text(json.dumps(manifest))
    capsys.readouterr()
    assert main([*argv, "-o", str(models)]) == 2
    assert "is not the one this S2L was trained on" in capsys.readouterr().err
    assert main([*argv, "-o", str(tmp_path / "empty")]) == 2
    assert "has no manifest.json" in capsys.readouterr().err


def test_fine_tuning_starts_from_a_model_directory(corpus, tiny_models, tmp_path):
    """Where the run that trained a shipped S2L is gone, its weights come back out of the
    graph: training starts from them, on the encoder they were trained on, and nothing else."""
    from spacelive.export.recover import recover_stages
    from spacelive.export.stages import step_example, step_modules

    out = tmp_path / "tuned"
    assert train(corpus, out, config(2), init_from=tiny_models, encoder_models=tiny_models)
    start = torch.load(out / "init-from-models.pt", weights_only=False)["model"]
    recovered = recover_stages(tiny_models, ("s2l",))
    assert all(torch.equal(start[f"s2l.{k}"], v) for k, v in recovered.s2l.state_dict().items())

    # The recovered module computes what the graph does.
    import onnxruntime as ort

    names, args, _ = step_example(recovered)["s2l"]
    session = ort.InferenceSession(str(tiny_models / "s2l.onnx"))
    with torch.no_grad():
        expected = step_modules(recovered)["s2l"](*args)
    got = session.run(None, {n: a.numpy() for n, a in zip(names, args, strict=True)})
    for a, b in zip(got, expected, strict=True):
        np.testing.assert_allclose(a, b.numpy(), atol=1e-5)

    with pytest.raises(ValueError, match="frozen"):  # its encoder is not recovered
        train(corpus, tmp_path / "joint", config(2), init_from=tiny_models)
    with pytest.raises(ValueError, match="tiny-width"):
        train(
            corpus,
            tmp_path / "wide",
            replace(config(2), width="realtime"),
            init_from=tiny_models,
            encoder_models=tiny_models,
        )
    import json
    import shutil

    other = tmp_path / "other"  # an S2L that heard another encoder
    shutil.copytree(tiny_models, other)
    manifest = json.loads((other / "manifest.json").read_text())
    manifest["stages"]["audio_encoder"]["sha256"] = "0" * 64
    (other / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="another audio encoder"):
        train(corpus, tmp_path / "run2", config(2), init_from=other, encoder_models=tiny_models)


def test_the_shipped_s2l_comes_back_out_of_its_int8_graph():
    """The bundled S2L is int8 with its landmark encoder int8 at one use and fp32 at the
    other: recovered, it matches the served graph within the int8 activations' error."""
    from spacelive.export.recover import PARITY_ATOL, RecoveryError, recover_stages
    from spacelive.stream.engine import DEFAULT_MODELS

    recovered = recover_stages(DEFAULT_MODELS, ("s2l",))  # checks parity, raises beyond
    assert float(recovered.s2l.head.weight.detach().abs().max()) > 0
    assert PARITY_ATOL <= 0.02
    import onnx

    from spacelive.export.recover import recover_stage
    from spacelive.export.stages import build_stages

    graph = onnx.load(str(DEFAULT_MODELS / "s2l.int8.onnx"))
    with pytest.raises(RecoveryError):
        recover_stage(build_stages("tiny"), "s2l", graph)


def test_the_closure_hinge_counts_lips_left_open_where_the_teacher_closes():
    from spacelive.training.train_s2l import loss_terms

    target = torch.zeros(1, 4, 110, 3)
    target[:, 2:, 66, 1] = 0.3  # the teacher opens the lips in the last two frames
    late = target.clone()
    late[:, 1, 66, 1] = 0.3  # the model opens one frame early, where the teacher is closed
    shut = target.clone()
    shut[:, 2, 66, 1] = 0.0  # the model stays closed one frame too long, where it is open
    base = {"y_weight": 2.0, "mouth_weight": 4.0}
    for wrong, counted in ((late, True), (shut, False)):
        plain = loss_terms(wrong, target, **base)
        hinged = loss_terms(wrong, target, **base, closure_weight=4.0)
        extra = hinged[0] - plain[0]
        # one frame of four 0.3 open: 4.0 * 0.3 / 4; a gap too closed is no hinge's business
        assert extra == pytest.approx(0.3 if counted else 0.0, abs=1e-6)
        assert hinged[1] == pytest.approx(plain[1])
