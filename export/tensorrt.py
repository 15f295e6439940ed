"""`spacelive export --backend tensorrt`: TensorRT engines from a model directory's ONNX.

Written against the TensorRT 10 Python API (``tensorrt``) and NOT RUN on this project's
machines, which have no GPU: see the closing notes of issue 7 for what was verified.

For every stage (and the renderer's ONNX twin):
- the graph is the one the server runs: int8 weights dequantized to fp32
  (``spacelive.motion.quantization.dequantize``; TensorRT has no ConvInteger / MatMulInteger);
- one optimization profile over the batch dimension: min 1, opt ``opt_batch``, max
  ``max_batch`` sessions (the batched engine steps every live session in one call);
- fp16 kernels allowed (``BuilderFlag.FP16``); parity with fp32 is checked by
  ``tests/test_tensorrt.py`` (marked gpu) within ``FP16_TOLERANCE``;
- the plan is cached under ``CACHE/<gpu>-sm<major><minor>-trt<version>/<stage>-<sha12>.plan``,
  so a new GPU model, TensorRT release or ONNX file builds afresh and nothing else does.

The renderer's GPU form uses 2-D ``GridSample`` (a (B, C, H, W) image) only: TensorRT has no
5-D GridSample, the known blocker for exporting face-vid2vid-style generators.
"""

import hashlib
import json
import logging
import subprocess
from pathlib import Path

import onnx

from spacelive.motion.quantization import dequantize, is_quantized
from spacelive.motion.runners import STAGES

log = logging.getLogger(__name__)

FP16_TOLERANCE = {"landmarks": 2e-3, "pose": 2e-3, "kp": 2e-3, "audio": 1e-2}
"""Max abs difference of fp16 engines' outputs from fp32 ONNX Runtime on the CPU: normalized
landmark units (ears 2 apart: 2e-3 is under 0.3 px on a 512 frame), radians, crop units."""


class TensorRTError(RuntimeError):
    """TensorRT is missing, or a graph does not build."""


def _tensorrt():
    """The tensorrt module, or a TensorRTError that says how to get it."""
    try:
        import tensorrt
    except ImportError as exc:
        raise TensorRTError(
            "TensorRT's Python package is not installed (pip install tensorrt)"
        ) from exc
    return tensorrt


def gpu_key() -> str:
    """e.g. "NVIDIA-L40S-sm89-trt10.3.0": what an engine plan is only valid for."""
    trt = _tensorrt()
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,compute_cap", "--format=csv,noheader", "-i", "0"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError) as exc:
        raise TensorRTError("no NVIDIA GPU found (nvidia-smi failed)") from exc
    name, capability = (part.strip() for part in out.split(","))
    return f"{name.replace(' ', '-')}-sm{capability.replace('.', '')}-trt{trt.__version__}"


def build_engines(
    model_dir: Path,
    cache: Path | None = None,
    opt_batch: int = 4,
    max_batch: int = 16,
    fp16: bool = True,
) -> dict[str, Path]:
    """Build (or find in the cache) one engine plan per stage of ``model_dir``, plus the
    renderer's; writes ``tensorrt.json`` beside the manifest. Returns stage -> plan path."""
    trt = _tensorrt()

    model_dir = Path(model_dir)
    manifest = json.loads((model_dir / "manifest.json").read_text())
    folder = (cache or model_dir / "tensorrt") / gpu_key()
    folder.mkdir(parents=True, exist_ok=True)
    graphs = {stage: model_dir / manifest["stages"][stage]["file"] for stage in STAGES}
    from spacelive.render.renderer_onnx import RENDERER_GRAPH

    graphs["renderer"] = RENDERER_GRAPH
    logger = trt.Logger(trt.Logger.WARNING)
    plans = {}
    for stage, path in graphs.items():
        data = path.read_bytes()
        plan = folder / f"{stage}-{hashlib.sha256(data).hexdigest()[:12]}.plan"
        if not plan.is_file():
            model = onnx.load_from_string(data)
            if is_quantized(model):
                model = dequantize(model)
            plan.write_bytes(_build(trt, logger, model, opt_batch, max_batch, fp16, stage))
            log.info("built %s", plan)
        plans[stage] = plan
    summary = {
        "gpu": folder.name,
        "fp16": fp16,
        "batch": {"min": 1, "opt": opt_batch, "max": max_batch},
        "plans": {stage: str(plan) for stage, plan in plans.items()},
    }
    (model_dir / "tensorrt.json").write_text(json.dumps(summary, indent=2) + "\n")
    return plans


def _build(trt, logger, model: onnx.ModelProto, opt: int, top: int, fp16: bool, name: str) -> bytes:
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # explicit batch is the only mode in TensorRT 10
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(model.SerializeToString()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise TensorRTError(f"{name}: TensorRT cannot parse the graph: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, 1 << 30)
    if fp16:
        config.set_flag(trt.BuilderFlag.FP16)
    profile = builder.create_optimization_profile()
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        dims = list(tensor.shape)
        if -1 not in dims:
            continue
        profile.set_shape(
            tensor.name, *([b if d == -1 else d for d in dims] for b in (1, opt, top))
        )
    config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise TensorRTError(f"{name}: TensorRT failed to build an engine (see its log above)")
    return bytes(serialized)
