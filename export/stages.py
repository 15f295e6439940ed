"""Build the torch stages, initialise or load them, and write their ONNX step graphs.

Each stage is exported as its ``*Step`` module: one frame per call, recurrent state as
explicit inputs/outputs, batch dimension dynamic. ``manifest.json`` beside the graphs
records shapes, opset, checksums and how the weights came to be.
"""

import hashlib
import json
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from spacelive.face.landmarks import EMOTIONS, POSE_DIMS, SPARSE_POINTS
from spacelive.models.audio_encoder import LOOKAHEAD, N_MFCC, AudioEncoder, AudioEncoderStep
from spacelive.models.posegen import PoseGen, PoseGenStep
from spacelive.models.speech2landmarks import Speech2Landmarks, Speech2LandmarksStep
from spacelive.models.widths import Width, width_named

log = logging.getLogger(__name__)

OPSET = 17
MANIFEST = "manifest.json"
STAGE_FILES = {
    "audio_encoder": "audio_encoder.onnx",
    "s2l": "s2l.onnx",
    "posegen": "posegen.onnx",
}


@dataclass
class Stages:
    """The three trainable stages at one width (posed landmarks become the renderer's keypoints
    by geometry, ``spacelive.motion.transfer``)."""

    width: Width
    audio_encoder: AudioEncoder
    s2l: Speech2Landmarks
    posegen: PoseGen

    def modules(self) -> dict[str, nn.Module]:
        return {
            "audio_encoder": self.audio_encoder,
            "s2l": self.s2l,
            "posegen": self.posegen,
        }

    def eval(self) -> "Stages":
        for module in self.modules().values():
            module.eval()
        return self


def build_stages(width: Width | str, seed: int = 0) -> Stages:
    """Freshly initialised stages (output heads at zero: the rest pose until trained)."""
    width = width_named(width) if isinstance(width, str) else width
    torch.manual_seed(seed)
    return Stages(
        width=width,
        audio_encoder=AudioEncoder(width.channels),
        s2l=Speech2Landmarks(width),
        posegen=PoseGen(width),
    ).eval()


def randomize(stages: Stages, seed: int, head_scale: float = 0.02) -> Stages:
    """Random weights everywhere, heads and FiLM included, and non-trivial BatchNorm
    statistics, so that an untrained graph still moves and parity tests can fail."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for stage, module in stages.modules().items():
            # PoseGen's head output is divided into natural pose units (models.posegen)
            # already: unscaled, a random PoseGen moves the head by a few degrees.
            scale = 1.0 if stage == "posegen" else head_scale
            for name, param in module.named_parameters():
                noise = torch.randn(param.shape, generator=generator)
                if param.dim() > 1:  # weights: variance-preserving
                    value = noise * param[0].numel() ** -0.5
                elif name.endswith("weight"):  # 1-D weights are BatchNorm scales
                    value = 1 + 0.1 * noise  # near 1, so that nothing vanishes with depth
                else:
                    value = 0.1 * noise  # biases
                if "head" in name:
                    value = value * scale
                param.copy_(value)
            for buffer_name, buffer in module.named_buffers():
                if buffer_name.endswith(("running_mean", "mfcc_mean")):
                    buffer.copy_(torch.randn(buffer.shape, generator=generator) * 0.1)
                elif buffer_name.endswith(("running_var", "mfcc_std")):
                    buffer.copy_(0.5 + torch.rand(buffer.shape, generator=generator))
    return stages


def zero(stages: Stages) -> Stages:
    """All weights zero and BatchNorm statistics neutral: the same graphs, outputting the rest
    pose. This is the shipped placeholder until a stage is trained (it costs git nothing)."""
    with torch.no_grad():
        for module in stages.modules().values():
            for param in module.parameters():
                param.zero_()
            for buffer_name, buffer in module.named_buffers():
                if buffer_name.endswith(("running_var", "mfcc_std")):
                    buffer.fill_(1.0)
                elif buffer_name.endswith(("running_mean", "mfcc_mean")):
                    buffer.zero_()
    return stages


def step_example(stages: Stages, batch: int = 2) -> dict[str, tuple[list[str], tuple, list[str]]]:
    """For each stage: (input names, example inputs, output names) of its step graph."""
    w = stages.width
    f32 = torch.float32
    enc_caches = [torch.zeros(s) for s in stages.audio_encoder.cache_shapes(batch)]
    enc_names = [f"cache_{i:02d}" for i in range(len(enc_caches))]
    lstm = (2, batch, w.lstm)
    pose = (2, batch, w.pose_lstm)
    audio = torch.randn(batch, w.channels)
    emotion = torch.zeros(batch, len(EMOTIONS), dtype=f32)
    landmarks = torch.randn(batch, SPARSE_POINTS, 3)
    return {
        "audio_encoder": (
            ["mfcc", "frame_index", "frame_count", *enc_names],
            (
                torch.randn(batch, N_MFCC),
                torch.arange(batch, dtype=torch.int64),
                torch.full((batch,), 1 << 40, dtype=torch.int64),
                *enc_caches,
            ),
            ["audio", *[f"new_{n}" for n in enc_names]],
        ),
        "s2l": (
            ["audio", "previous", "landmarks0", "emotion", "h", "c", "first"],
            (
                audio,
                landmarks,
                landmarks,
                emotion,
                torch.zeros(lstm),
                torch.zeros(lstm),
                torch.ones(batch),
            ),
            ["landmarks", "new_h", "new_c"],
        ),
        "posegen": (
            ["audio", "z", "previous", "h", "c"],
            (
                audio,
                torch.randn(batch, w.pose_latent),
                torch.zeros(batch, POSE_DIMS),
                torch.zeros(pose),
                torch.zeros(pose),
            ),
            ["pose", "new_h", "new_c"],
        ),
    }


def step_modules(stages: Stages) -> dict[str, nn.Module]:
    """The step wrappers, in eval mode: the exporter restores a module's mode after export,
    and a wrapper left in training mode would switch the stages' BatchNorm to training."""
    modules = {
        "audio_encoder": AudioEncoderStep(stages.audio_encoder),
        "s2l": Speech2LandmarksStep(stages.s2l),
        "posegen": PoseGenStep(stages.posegen),
    }
    return {name: module.eval() for name, module in modules.items()}


def _batch_axes(names: list[str]) -> dict[str, dict[int, str]]:
    # LSTM state is (layers, batch, hidden); everything else is batch-first.
    return {n: ({1: "batch"} if n.split("_")[-1] in ("h", "c") else {0: "batch"}) for n in names}


def _describe(values, shapes: dict[str, list[int]]) -> list[dict]:
    """Graph inputs/outputs with concrete sizes from the example run, the batch axis named."""
    import onnx

    return [
        {
            "name": v.name,
            "shape": [
                "batch" if d.dim_param == "batch" else shapes[v.name][i]
                for i, d in enumerate(v.type.tensor_type.shape.dim)
            ],
            "dtype": onnx.helper.tensor_dtype_to_np_dtype(v.type.tensor_type.elem_type).name,
        }
        for v in values
    ]


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def export_stages(
    stages: Stages,
    out_dir: Path,
    training: dict | str = "untrained",
    placeholders: frozenset[str] = frozenset(),
) -> dict:
    """Write the three step graphs and manifest.json into out_dir; returns the manifest.

    ``training`` is provenance per stage (or one string for all); stages named in
    ``placeholders`` are all-zero stand-ins that the runtime may route around."""
    out_dir.mkdir(parents=True, exist_ok=True)
    stages.eval()
    manifest: dict = {
        "format": 1,
        "width": stages.width.name,
        "widths": {
            "channels": stages.width.channels,
            "lstm": stages.width.lstm,
            "pose_lstm": stages.width.pose_lstm,
            "pose_latent": stages.width.pose_latent,
        },
        "opset": OPSET,
        "stages": {},
    }
    examples = step_example(stages)
    for name, module in step_modules(stages).items():
        stage_training = training.get(name, "untrained") if isinstance(training, dict) else training
        manifest["stages"][name] = _export_step_graph(
            name, module, examples[name], out_dir, stage_training
        )
        if name in placeholders:
            manifest["stages"][name]["placeholder"] = True
        log.info("exported %s (%s) to %s", name, stages.width.name, out_dir)
    (out_dir / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def replace_stage(model_dir: Path, name: str, stages: Stages, training: dict) -> dict:
    """Export one trained stage into an existing model directory (its other graphs and their
    manifest entries stay as they are); returns the manifest. The width must match."""
    manifest_path = model_dir / MANIFEST
    manifest = json.loads(manifest_path.read_text())
    if manifest["width"] != stages.width.name:
        raise ValueError(
            f"{model_dir} holds {manifest['width']}-width stages, not {stages.width.name}"
        )
    stages.eval()
    old = model_dir / manifest["stages"][name]["file"]
    entry = _export_step_graph(
        name, step_modules(stages)[name], step_example(stages)[name], model_dir, training
    )
    if old.name != entry["file"]:
        old.unlink(missing_ok=True)
    manifest["stages"][name] = entry
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
    log.info("replaced %s in %s", name, model_dir)
    return manifest


def _export_step_graph(
    name: str, module: nn.Module, example: tuple, out_dir: Path, training: dict | str
) -> dict:
    """Write one stage's step graph; returns its manifest entry."""
    import onnx

    inputs, args, outputs = example
    path = out_dir / STAGE_FILES[name]
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            args,
            str(path),
            input_names=inputs,
            output_names=outputs,
            dynamic_axes=_batch_axes(inputs + outputs),
            opset_version=OPSET,
            dynamo=False,
        )
    graph = onnx.load(str(path), load_external_data=False).graph
    with torch.no_grad():
        example_out = module(*args)
    shapes = {
        n: list(a.shape) for n, a in zip(inputs + outputs, (*args, *example_out), strict=True)
    }
    entry = {
        "file": path.name,
        "inputs": _describe(graph.input, shapes),
        "outputs": _describe(graph.output, shapes),
        "sha256": _sha256(path),
        "training": training,
    }
    if name == "audio_encoder":
        entry["lookahead"] = LOOKAHEAD
    return entry


def load_s2l_checkpoint(stages: Stages, checkpoint: Path) -> dict:
    """Put a `spacelive train s2l` checkpoint's S2L (and its audio encoder, when it trained one
    jointly) into ``stages``; returns the checkpoint's config and step, and for a checkpoint
    trained on a frozen encoder that encoder's identity (``encoder``: file and sha256)."""
    state = torch.load(checkpoint, weights_only=False, map_location="cpu")
    weights = state["model"]
    joint = any(k.startswith("audio_encoder.") for k in weights)
    parts = (("audio_encoder.", stages.audio_encoder),) if joint else ()
    for prefix, module in (*parts, ("s2l.", stages.s2l)):
        module.load_state_dict(
            {k[len(prefix) :]: v for k, v in weights.items() if k.startswith(prefix)}
        )
    stages.eval()
    loaded = {"step": state["step"], "config": state["config"]}
    if not joint:
        encoder_json = checkpoint.parent / "encoder.json"
        if not encoder_json.is_file():
            raise ValueError(f"{checkpoint} has no audio encoder and no {encoder_json} naming one")
        loaded["encoder"] = json.loads(encoder_json.read_text())
    return loaded


def load_posegen_checkpoint(stages: Stages, checkpoint: Path) -> dict:
    """Put a `spacelive train posegen` checkpoint's PoseGen into ``stages``; returns the
    checkpoint's config and step."""
    state = torch.load(checkpoint, weights_only=False, map_location="cpu")
    stages.posegen.load_state_dict(state["model"])
    stages.eval()
    return {"step": state["step"], "config": state["config"]}


def quantize_int8(model_dir: Path, stages: tuple[str, ...]) -> None:
    """Dynamic int8 quantization of trained stages' weights (ONNX Runtime), in place, with the
    manifest updated: about a quarter of the size to ship, and faster MatMuls on CPUs."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    manifest_path = model_dir / MANIFEST
    manifest = json.loads(manifest_path.read_text())
    for name in stages:
        entry = manifest["stages"][name]
        path = model_dir / entry["file"]
        quantized = path.with_suffix(".int8.onnx")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            quantize_dynamic(str(path), str(quantized), weight_type=QuantType.QInt8)
        path.unlink()
        entry.update(file=quantized.name, sha256=_sha256(quantized), quantization="dynamic int8")
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
