"""Stage runners: numpy in, numpy out, whatever the backend.

A model directory holds the three step graphs and ``manifest.json`` (written by
``spacelive export``). The backend is chosen by config: ONNX Runtime on the CPU, or its
CUDA / TensorRT execution providers on a GPU host.
"""

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from spacelive.motion.keypoints import BASIS_FILE, MotionBasis
from spacelive.motion.quantization import (
    ROW_QUANTIZED_DISABLED_OPTIMIZERS,
    dequantize,
    is_quantized,
    quantize_rows,
)

log = logging.getLogger(__name__)

BACKEND_PROVIDERS = {
    "cpu": ["CPUExecutionProvider"],
    "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
    "tensorrt": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
}
STAGES = ("audio_encoder", "s2l", "posegen")


class ModelError(RuntimeError):
    """A model directory that cannot be served."""


def tensorrt_provider_options(model_dir: Path, inputs: list[dict]) -> dict[str, str]:
    """ONNX Runtime's TensorRT execution provider set up like ``spacelive export --backend
    tensorrt``: fp16, one profile over the batch (1 / 4 / 16 sessions), an engine cache in
    the model directory (ONNX Runtime keys it by graph, GPU and TensorRT version)."""

    def shapes(batch: int) -> str:
        return ",".join(
            f"{spec['name']}:" + "x".join(str(batch if d == "batch" else d) for d in spec["shape"])
            for spec in inputs
        )

    return {
        "trt_fp16_enable": "True",
        "trt_engine_cache_enable": "True",
        "trt_engine_cache_path": str(Path(model_dir) / "tensorrt" / "ort-cache"),
        "trt_profile_min_shapes": shapes(1),
        "trt_profile_opt_shapes": shapes(4),
        "trt_profile_max_shapes": shapes(16),
    }


class StageRunner:
    """One exported step graph."""

    def __init__(
        self,
        path: Path,
        backend: str = "cpu",
        threads: int = 1,
        inputs: list[dict] | None = None,
    ):
        """``inputs``: the manifest's input specs (the TensorRT provider's batch profile)."""
        if backend not in BACKEND_PROVIDERS:
            raise ModelError(
                f"unknown backend {backend!r}; choose one of {sorted(BACKEND_PROVIDERS)}"
            )
        wanted = BACKEND_PROVIDERS[backend]
        available = ort.get_available_providers()
        if wanted[0] not in available:
            raise ModelError(
                f"backend {backend!r} needs {wanted[0]}, which this onnxruntime build lacks "
                f"(available: {', '.join(available)}); install onnxruntime-gpu on a GPU host"
            )
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.path = path
        model = onnx.load(str(path))
        disabled: list[str] = []
        if is_quantized(model):  # rows of a batch must not share a quantization scale
            if backend == "cpu":
                model, disabled = quantize_rows(model), ROW_QUANTIZED_DISABLED_OPTIMIZERS
            else:
                model = dequantize(model)
        providers: list = list(wanted)
        if backend == "tensorrt" and inputs is not None:
            providers[0] = (wanted[0], tensorrt_provider_options(path.parent, inputs))
        self.session = ort.InferenceSession(
            model.SerializeToString(), options, providers=providers, disabled_optimizers=disabled
        )
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run one step for a batch; inputs and outputs keyed by graph names."""
        outputs = self.session.run(self.output_names, {n: inputs[n] for n in self.input_names})
        return dict(zip(self.output_names, outputs, strict=True))


@dataclass
class StageSet:
    """The three stage runners of one model directory, plus its manifest (and the optional
    closure head and keypoint basis). Posed landmarks become keypoints by geometry
    (``spacelive.motion.transfer``); a directory's Landmarks2Latents graph, if an older export wrote
    one, is not loaded."""

    audio_encoder: StageRunner
    s2l: StageRunner
    posegen: StageRunner
    manifest: dict
    motion_basis: MotionBasis | None = None  # the keypoint stream's, fitted to this S2L
    closure: StageRunner | None = None  # the closure head (``motion.closure``), if trained

    def input_shape(self, stage: str, name: str, batch: int) -> tuple[int, ...]:
        """Shape of an input of ``stage`` for ``batch`` rows, from the manifest."""
        for spec in self.manifest["stages"][stage]["inputs"]:
            if spec["name"] == name:
                return tuple(batch if d == "batch" else int(d) for d in spec["shape"])
        raise KeyError(f"{stage} has no input {name!r}")


def load_stages(model_dir: Path, backend: str = "cpu", threads: int = 1) -> StageSet:
    """Open the three step graphs of ``model_dir``."""
    model_dir = Path(model_dir)
    manifest_path = model_dir / "manifest.json"
    if not manifest_path.is_file():
        raise ModelError(
            f"{model_dir} has no manifest.json; point --models at a directory written by "
            "`spacelive export`"
        )
    manifest = json.loads(manifest_path.read_text())
    runners = {}
    for stage in STAGES:
        entry = manifest["stages"].get(stage)
        if entry is None:
            raise ModelError(f"{manifest_path} lists no {stage!r} stage")
        path = model_dir / entry["file"]
        if not path.is_file():
            raise ModelError(f"{path} is missing (listed in {manifest_path})")
        runners[stage] = StageRunner(path, backend, threads, entry.get("inputs"))
    log.info("loaded %s-width stages from %s on %s", manifest.get("width"), model_dir, backend)
    closure = None
    if (entry := manifest["stages"].get("closure")) is not None:  # optional: older directories
        path = model_dir / entry["file"]
        if not path.is_file():
            raise ModelError(f"{path} is missing (listed in {manifest_path})")
        closure = StageRunner(path, backend, threads, entry.get("inputs"))
    basis_path = model_dir / BASIS_FILE
    basis = MotionBasis.load(basis_path) if basis_path.is_file() else None
    return StageSet(**runners, manifest=manifest, motion_basis=basis, closure=closure)
