"""Exported step graphs, stepped frame by frame in ONNX Runtime, equal the full-sequence
torch modules (random weights, so that a wrong graph cannot pass)."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from spacelive.export.stages import build_stages, export_stages, randomize  # noqa: E402
from spacelive.motion.runners import load_stages  # noqa: E402

FRAMES = 300
BATCH = 2
TOLERANCE = 1e-4


def _close(onnx_value: np.ndarray, torch_value: torch.Tensor, what: str) -> None:
    expected = torch_value.detach().numpy()
    error = float(np.abs(onnx_value - expected).max())
    assert error <= TOLERANCE, f"{what}: max |onnx - torch| = {error:.2e} > {TOLERANCE}"
    assert float(np.abs(expected).max()) > 1e-3, f"{what}: trivially small outputs"


@pytest.mark.parametrize("width", ["realtime", "paper"])
def test_step_graphs_match_full_sequence_torch(width, tmp_path):
    stages = randomize(build_stages(width, seed=3), seed=4)
    export_stages(stages, tmp_path)
    runners = load_stages(tmp_path, threads=2)
    g = torch.Generator().manual_seed(5)
    w = stages.width
    mfcc = torch.randn(BATCH, FRAMES, 40, generator=g) * 3
    landmarks0 = torch.randn(BATCH, 110, 3, generator=g) * 0.5
    emotion = torch.rand(BATCH, 8, generator=g)
    z = torch.randn(BATCH, w.pose_latent, generator=g)
    per_frame_emotion = emotion[:, None].expand(-1, FRAMES, -1)

    with torch.no_grad():
        audio = stages.audio_encoder(mfcc)
        landmarks = stages.s2l(audio, landmarks0, per_frame_emotion)
        pose = stages.posegen.decode(audio, z)

    # Audio encoder: 300 real frames then the lookahead flushed with zero MFCC.
    lookahead = runners.manifest["stages"]["audio_encoder"]["lookahead"]
    caches = {
        n: np.zeros(runners.input_shape("audio_encoder", n, BATCH), np.float32)
        for n in runners.audio_encoder.input_names
        if n.startswith("cache_")
    }
    features = []
    for n in range(FRAMES + lookahead):
        row = mfcc[:, n].numpy() if n < FRAMES else np.zeros((BATCH, 40), np.float32)
        out = runners.audio_encoder.run(
            {
                "mfcc": row,
                "frame_index": np.full(BATCH, n, np.int64),
                "frame_count": np.full(BATCH, FRAMES, np.int64),
                **caches,
            }
        )
        caches = {name: out[f"new_{name}"] for name in caches}
        if n >= lookahead:
            features.append(out["audio"])
    features = np.stack(features, axis=1)
    _close(features, audio, "audio encoder")

    emotion_np = emotion.numpy()
    h = np.zeros(runners.input_shape("s2l", "h", BATCH), np.float32)
    c = h.copy()
    previous = landmarks0.numpy()
    got = []
    for t in range(FRAMES):
        out = runners.s2l.run(
            {
                "audio": features[:, t],
                "previous": previous,
                "landmarks0": landmarks0.numpy(),
                "emotion": emotion_np,
                "h": h,
                "c": c,
                "first": np.full(BATCH, t == 0, np.float32),
            }
        )
        previous, h, c = out["landmarks"], out["new_h"], out["new_c"]
        got.append(previous)
    _close(np.stack(got, axis=1), landmarks, "speech2landmarks")

    h = np.zeros(runners.input_shape("posegen", "h", BATCH), np.float32)
    c = h.copy()
    previous = np.zeros((BATCH, 6), np.float32)
    got = []
    for t in range(FRAMES):
        out = runners.posegen.run(
            {"audio": features[:, t], "z": z.numpy(), "previous": previous, "h": h, "c": c}
        )
        previous, h, c = out["pose"], out["new_h"], out["new_c"]
        got.append(previous)
    _close(np.stack(got, axis=1), pose, "posegen")


def test_teacher_forced_s2l_matches_its_autoregressive_form():
    """The fused nn.LSTM path used in training equals the step path given the same inputs."""
    stages = randomize(build_stages("tiny", seed=1), seed=2)
    g = torch.Generator().manual_seed(0)
    audio = torch.randn(2, 20, stages.width.channels, generator=g)
    landmarks0 = torch.randn(2, 110, 3, generator=g)
    emotion = torch.rand(2, 20, 8, generator=g)
    with torch.no_grad():
        free = stages.s2l(audio, landmarks0, emotion)
        forced = stages.s2l(audio, landmarks0, emotion, teacher=free)
    assert torch.allclose(free, forced, atol=1e-5)


def test_int8_quantized_export_stays_close(tmp_path):
    from spacelive.export.stages import quantize_int8

    stages = randomize(build_stages("tiny", seed=8), seed=9)
    export_stages(stages, tmp_path / "fp32")
    export_stages(stages, tmp_path / "int8")
    quantize_int8(tmp_path / "int8", ("audio_encoder", "s2l"))
    full, quantized = load_stages(tmp_path / "fp32"), load_stages(tmp_path / "int8")
    assert quantized.manifest["stages"]["s2l"]["quantization"] == "dynamic int8"
    rng = np.random.default_rng(0)
    inputs = {
        "audio": rng.normal(size=(3, 32)).astype(np.float32),
        "previous": rng.normal(size=(3, 110, 3)).astype(np.float32) * 0.5,
        "landmarks0": rng.normal(size=(3, 110, 3)).astype(np.float32) * 0.5,
        "emotion": rng.random((3, 8)).astype(np.float32),
        "h": np.zeros((2, 3, 32), np.float32),
        "c": np.zeros((2, 3, 32), np.float32),
        "first": np.ones(3, np.float32),
    }
    a, b = full.s2l.run(inputs)["landmarks"], quantized.s2l.run(inputs)["landmarks"]
    motion = np.abs(a - inputs["landmarks0"]).mean()
    assert np.abs(a - b).mean() < 0.1 * motion
