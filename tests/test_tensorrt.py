"""The TensorRT path: engines build with a batch profile and are cached; fp16 stays within
FP16_TOLERANCE of fp32 on the CPU. GPU hosts only (marked gpu); what runs everywhere is the
provider set-up and the graph the engines are built from."""

import json

import numpy as np
import onnx
import pytest

from spacelive.motion.quantization import is_quantized
from spacelive.motion.runners import STAGES, StageRunner, tensorrt_provider_options
from spacelive.stream.engine import DEFAULT_MODELS


def example_inputs(inputs: list[dict], batch: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    out = {}
    for spec in inputs:
        shape = [batch if d == "batch" else int(d) for d in spec["shape"]]
        if spec.get("dtype") == "int64":
            out[spec["name"]] = np.full(shape, 6, np.int64)
        else:
            out[spec["name"]] = (0.5 * rng.standard_normal(shape)).astype(np.float32)
    return out


def test_the_tensorrt_provider_gets_a_batch_profile_over_every_input():
    manifest = json.loads((DEFAULT_MODELS / "manifest.json").read_text())
    inputs = manifest["stages"]["s2l"]["inputs"]
    options = tensorrt_provider_options(DEFAULT_MODELS, inputs)
    assert options["trt_fp16_enable"] == "True"
    assert options["trt_profile_min_shapes"].split(",")[0] == "audio:1x256"
    assert options["trt_profile_max_shapes"].split(",")[0] == "audio:16x256"
    assert "h:2x16x256" in options["trt_profile_max_shapes"]  # LSTM state: batch on axis 1
    assert len(options["trt_profile_opt_shapes"].split(",")) == len(inputs)


def test_the_graphs_tensorrt_builds_from_have_no_integer_ops():
    """TensorRT has no ConvInteger / MatMulInteger: it gets the dequantized graphs."""
    from spacelive.motion.quantization import dequantize

    manifest = json.loads((DEFAULT_MODELS / "manifest.json").read_text())
    for stage in STAGES:
        model = onnx.load(str(DEFAULT_MODELS / manifest["stages"][stage]["file"]))
        if is_quantized(model):
            assert not is_quantized(dequantize(model))


@pytest.mark.gpu
def test_engines_build_once_per_gpu_and_version(tmp_path):
    pytest.importorskip("tensorrt")
    from spacelive.export.tensorrt import build_engines

    plans = build_engines(DEFAULT_MODELS, cache=tmp_path)
    assert set(plans) == {*STAGES, "renderer"}
    stamps = {k: p.stat().st_mtime_ns for k, p in plans.items()}
    again = build_engines(DEFAULT_MODELS, cache=tmp_path)
    assert {k: p.stat().st_mtime_ns for k, p in again.items()} == stamps  # cache hits


@pytest.mark.gpu
@pytest.mark.parametrize("stage", STAGES)
@pytest.mark.parametrize("batch", [1, 5])
def test_fp16_tensorrt_matches_fp32_cpu(stage, batch):
    from spacelive.export.tensorrt import FP16_TOLERANCE

    manifest = json.loads((DEFAULT_MODELS / "manifest.json").read_text())
    entry = manifest["stages"][stage]
    path = DEFAULT_MODELS / entry["file"]
    cpu = StageRunner(path, "cpu", inputs=entry["inputs"])
    gpu = StageRunner(path, "tensorrt", inputs=entry["inputs"])
    feed = example_inputs(entry["inputs"], batch)
    want, got = cpu.run(feed), gpu.run(feed)
    for name, value in want.items():
        tolerance = FP16_TOLERANCE.get(name, FP16_TOLERANCE["audio"])
        assert np.abs(got[name] - value).max() <= tolerance, name


def test_export_tensorrt_without_tensorrt_says_so(capsys):
    try:
        import tensorrt  # noqa: F401

        pytest.skip("TensorRT is installed here")
    except ImportError:
        pass
    from spacelive.cli import main

    assert main(["export", "--backend", "tensorrt"]) == 2
    assert "TensorRT's Python package is not installed" in capsys.readouterr().err
