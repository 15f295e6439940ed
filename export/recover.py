"""A stage's trained weights back out of its shipped step graph, for fine-tuning where the ONNX
files are at hand but the training run's checkpoint is not (a new machine, a release).

Every float initializer of a step graph is one tensor of the stage's torch module as it is
(BatchNorm statistics, biases), transposed (a Linear weight under MatMul), or the sum of an
LSTM layer's two biases. Which, is found by exporting the same module with distinct random
values and matching them; an int8 graph is dequantized first (``spacelive.motion.quantization``), so
the weights recovered are the int8 weights the server runs, in fp32. The recovered module is
checked against the graph as served, on inputs at the scale the stage sees, before it is kept.
"""

import copy
import json
import tempfile
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import numpy_helper
from torch import nn

from spacelive.export.stages import (
    MANIFEST,
    Stages,
    _export_step_graph,
    build_stages,
    step_example,
    step_modules,
)
from spacelive.face.head_model import face_model
from spacelive.face.landmarks import MESH_POINTS, MESH_TO_SPARSE, SPARSE_POINTS
from spacelive.motion.quantization import dequantize, is_quantized

PARITY_ATOL = 0.02
"""Largest difference allowed between the recovered module and the graph as served: an int8
graph also quantizes its activations, row by row on the fly (S2L: 0.0093 at most, on its
landmarks and LSTM state)."""


class RecoveryError(ValueError):
    """The graph's initializers do not map onto the stage's module (another width or build)."""


def recover_stages(model_dir: Path, names: tuple[str, ...]) -> Stages:
    """Stages at ``model_dir``'s width with the named stages' weights recovered from its
    graphs (the others freshly initialised)."""
    manifest = json.loads((model_dir / MANIFEST).read_text())
    stages = build_stages(manifest["width"])
    for name in names:
        graph = onnx.load(str(model_dir / manifest["stages"][name]["file"]))
        recover_stage(stages, name, graph)
    return stages.eval()


def recover_stage(stages: Stages, name: str, graph: onnx.ModelProto) -> None:
    """Put the weights of ``graph`` (stage ``name``'s step graph) into ``stages``, in place."""
    served = graph
    if is_quantized(graph):
        graph = dequantize(graph)
    module = step_modules(stages)[name]
    example = step_example(stages)[name]
    probe, probe_graph = _probe(name, module, example)
    tensors = {**dict(probe.named_parameters()), **dict(probe.named_buffers())}
    values = {k: t.detach().numpy() for k, t in tensors.items() if t.is_floating_point()}
    shipped = _weights(graph)
    recovered: dict[str, np.ndarray] = {}
    for initializer, probe_value in _weights(probe_graph).items():
        value = shipped.get(initializer)
        if value is None or value.shape != probe_value.shape:
            shape = probe_value.shape
            raise RecoveryError(f"{name}: the graph has no weight {initializer} {shape}")
        recovered.update(_sources(probe_value, values, value))
    missing = sorted(set(dict(probe.named_parameters())) - set(recovered))
    if missing:
        raise RecoveryError(f"{name}: no initializer holds {', '.join(missing[:5])}")
    state = module.state_dict()
    for target, value in recovered.items():
        state[target] = torch.tensor(value, dtype=state[target].dtype)
    module.load_state_dict(state)
    _check(name, module.eval(), example, served)


def _weights(graph: onnx.ModelProto) -> dict[str, np.ndarray]:
    """The float initializers of more than one value, by the name the exporter gave them.

    Dequantized int8 weights are named ``<name>_fp32`` (``<name>_Transposed_fp32`` where
    ONNX Runtime's quantizer turned a Gemm into a MatMul on the transposed weight). A weight
    used twice (S2L's landmark encoder, on the previous frame and on the portrait's rest) may
    be int8 at one use and fp32 at the other: the fp32 one is kept, it is the trained value.
    """
    found: dict[str, np.ndarray] = {}
    dequantized: dict[str, np.ndarray] = {}
    for i in graph.graph.initializer:
        if i.data_type != onnx.TensorProto.FLOAT or np.prod(i.dims) <= 1:
            continue
        value = numpy_helper.to_array(i)
        if i.name.endswith("_Transposed_fp32"):
            dequantized[i.name.removesuffix("_Transposed_fp32")] = value.T
        elif i.name.endswith("_fp32"):
            dequantized[i.name.removesuffix("_fp32")] = value
        else:
            found[i.name] = value
    return {**dequantized, **found}


def _probe(name: str, module: nn.Module, example: tuple) -> tuple[nn.Module, onnx.ModelProto]:
    """A copy of ``module`` with distinct random values in every float tensor, and its graph."""
    probe = copy.deepcopy(module).eval()
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for tensor in (*probe.parameters(), *probe.buffers()):
            if tensor.is_floating_point():
                tensor.copy_(0.5 + torch.rand(tensor.shape, generator=generator))
    with tempfile.TemporaryDirectory() as tmp:
        entry = _export_step_graph(name, probe, example, Path(tmp), "probe")
        return probe, onnx.load(str(Path(tmp) / entry["file"]))


def _sources(
    fresh: np.ndarray, values: dict[str, np.ndarray], shipped: np.ndarray
) -> dict[str, np.ndarray]:
    """Which module tensors an initializer is (its probe value ``fresh``), and their values
    from the shipped initializer."""
    for key, value in values.items():
        if value.shape == fresh.shape and np.array_equal(value, fresh):
            return {key: shipped}
        if value.ndim == 2 and value.T.shape == fresh.shape and np.array_equal(value.T, fresh):
            return {key: shipped.T}
    for key, value in values.items():  # an LSTM layer's bias_ih + bias_hh, folded
        twin = key.replace("bias_ih_", "bias_hh_")
        if twin != key and twin in values and np.allclose(value + values[twin], fresh, atol=0):
            return {key: shipped, twin: np.zeros_like(shipped)}
    raise RecoveryError(f"an initializer of shape {fresh.shape} is no tensor of the module")


def _check(name: str, module: nn.Module, example: tuple, graph: onnx.ModelProto) -> float:
    """The largest difference between the module's outputs and the graph's, run by ONNX
    Runtime as the server runs it, on inputs at the scale the stage sees (a face for the
    landmarks and keypoints, one stream starting and one mid-way); RecoveryError beyond
    ``PARITY_ATOL``."""
    import onnxruntime as ort

    inputs, args, _ = example
    feeds = _face_shaped(dict(zip(inputs, (a.numpy() for a in args), strict=True)))
    session = ort.InferenceSession(graph.SerializeToString(), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        expected = module(*(torch.from_numpy(feeds[n]) for n in inputs))
    worst = max(
        float(np.abs(got - want.numpy()).max())
        for got, want in zip(session.run(None, feeds), expected, strict=True)
    )
    if worst > PARITY_ATOL:
        raise RecoveryError(f"{name}: the recovered module differs from the graph by {worst:.2g}")
    return worst


def _face_shaped(feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    faces = {SPARSE_POINTS: face_model()[MESH_TO_SPARSE], MESH_POINTS: face_model()}
    out = {}
    for key, value in feeds.items():
        if value.dtype != np.float32:
            out[key] = value
        elif value.ndim == 3 and value.shape[1] in faces and value.shape[2] == 3:
            jitter = 0.02 * rng.standard_normal(value.shape)
            out[key] = (faces[value.shape[1]] + jitter).astype(np.float32)
        elif key == "first":  # one stream starting, the others mid-way
            out[key] = (np.arange(len(value)) == 0).astype(np.float32)
        else:
            out[key] = (0.3 * rng.standard_normal(value.shape)).astype(np.float32)
    return out
