"""Int8 graphs whose batch rows stay independent.

``quantize_dynamic`` stores weights as int8 (4x smaller files) and quantizes each activation at
run time with one scale for the whole tensor: over a batch, that scale comes from every row, so
one session's loud audio would change another's numbers. The server steps sessions in one batch
(``spacelive.batch``), so each graph is rewritten at load, in one of two ways:

* ``quantize_rows`` (the CPU): every activation that feeds a ``MatMulInteger`` is quantized per
  row (symmetric, the row's own max |x| / 127, stored as uint8 around a zero point of 128:
  ONNX Runtime's fast kernels multiply uint8 activations by int8 weights), so the int8 kernels
  stay: a batch row equals that row run alone, bit for bit. ``ConvInteger`` is computed in
  fp32 instead: ONNX Runtime's is slower than its float ``Conv`` (2x at the paper width).
* ``dequantize`` (GPU providers: TensorRT has no integer ops): every int8 weight is dequantized
  once, ((W_q - zero_point) * scale, exactly what the int8 kernels multiply by), and computed
  in fp32.

A row-quantized graph must be run with ``ROW_QUANTIZED_DISABLED_OPTIMIZERS``: ONNX Runtime's
MatMulIntegerToFloat fusion is meant to fuse only per-tensor scales (onnxruntime#6008), but the
per-row scale's shape is only known at run time, so it is fused anyway and the result is
wrong: a bundled S2L step's LSTM state came out up to 0.59 off its fp32 value, against 0.06
with the fusion disabled.

The pattern rewritten is ``DynamicQuantizeLinear -> MatMulInteger | ConvInteger -> Cast ->
Mul(scales)``.
"""

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

_INTEGER_OPS = {"MatMulInteger": "MatMul", "ConvInteger": "Conv"}
ROW_QUANTIZED_DISABLED_OPTIMIZERS = ["MatMulIntegerToFloatFusion"]
INT8_LEVELS = 127.0
"""Per-row activations are rounded to integers in [-127, 127] times the row's scale..."""
ZERO_POINT = 128
"""... and stored as uint8 with this added."""


def is_quantized(model: onnx.ModelProto) -> bool:
    return any(n.op_type in _INTEGER_OPS for n in model.graph.node)


def dequantize(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of ``model`` with its dynamic int8 matmuls and convolutions in fp32."""
    return _rewrite(model, float_ops=set(_INTEGER_OPS))


def quantize_rows(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of ``model`` whose int8 matmuls quantize each activation row on its own, and
    whose int8 convolutions run in fp32."""
    return _rewrite(model, float_ops={"ConvInteger"})


def _rewrite(model: onnx.ModelProto, float_ops: set[str]) -> onnx.ModelProto:
    model = onnx.ModelProto.FromString(model.SerializeToString())
    graph = model.graph
    initializers = {i.name: i for i in graph.initializer}
    producer = {o: n for n in graph.node for o in n.output}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)

    replaced: dict[int, list[onnx.NodeProto]] = {}  # id(node) -> the nodes in its place
    dropped: set[int] = set()
    for node in graph.node:
        if node.op_type not in _INTEGER_OPS:
            continue
        x_q, w_q, _, w_zp = node.input[:4]
        quantizer = producer[x_q]
        (cast,) = consumers[node.output[0]]
        (rescale,) = consumers[cast.output[0]]
        if quantizer.op_type != "DynamicQuantizeLinear" or cast.op_type != "Cast":
            raise ValueError(f"{node.name}: not the dynamic quantization pattern")
        if rescale.op_type != "Mul":
            raise ValueError(f"{node.name}: its rescale is {rescale.op_type}, not Mul")
        if node.op_type not in float_ops:
            replaced.setdefault(id(quantizer), _row_quantizer(quantizer))
            continue
        scale_name = w_q.removesuffix("_quantized") + "_scale"
        weight = (
            numpy_helper.to_array(initializers[w_q]).astype(np.float32)
            - numpy_helper.to_array(initializers[w_zp]).astype(np.float32)
        ) * numpy_helper.to_array(initializers[scale_name]).astype(np.float32)
        float_weight = numpy_helper.from_array(weight, w_q.removesuffix("_quantized") + "_fp32")
        graph.initializer.append(float_weight)
        twin = helper.make_node(
            _INTEGER_OPS[node.op_type],
            [quantizer.input[0], float_weight.name],
            [rescale.output[0]],
            name=(node.name or rescale.output[0]) + "_fp32",
        )
        twin.attribute.extend(node.attribute)
        replaced[id(node)] = [twin]
        dropped.update({id(cast), id(rescale)})

    nodes = [m for n in graph.node if id(n) not in dropped for m in replaced.get(id(n), [n])]
    del graph.node[:]
    graph.node.extend(_live(nodes, {o.name for o in graph.output}))
    used = {name for n in graph.node for name in n.input}
    kept = [i for i in graph.initializer if i.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    onnx.checker.check_model(model)
    return model


def _row_quantizer(quantizer: onnx.NodeProto) -> list[onnx.NodeProto]:
    """Nodes with a DynamicQuantizeLinear's outputs (x_q, scale, zero point), quantizing each
    row of x (its last axis) with its own scale: x_q = round(x / s) + 128 in uint8,
    s = max|x| / 127, zero point 128. The scale has shape (..., 1) and broadcasts in the
    rescaling Mul."""
    x = quantizer.input[0]
    x_q, scale, zero_point = quantizer.output
    p = (quantizer.name or x_q) + "_rows"

    def const(name: str, value, dtype) -> onnx.NodeProto:
        return helper.make_node(
            "Constant", [], [name], value=numpy_helper.from_array(np.array(value, dtype), name)
        )

    return [
        const(f"{p}_levels", INT8_LEVELS, np.float32),
        const(f"{p}_tiny", 1e-30, np.float32),
        const(f"{p}_low", -INT8_LEVELS, np.float32),
        const(f"{p}_shift", float(ZERO_POINT), np.float32),
        const(zero_point, ZERO_POINT, np.uint8),
        helper.make_node("Abs", [x], [f"{p}_abs"]),
        helper.make_node("ReduceMax", [f"{p}_abs"], [f"{p}_max"], axes=[-1], keepdims=1),
        helper.make_node("Max", [f"{p}_max", f"{p}_tiny"], [f"{p}_range"]),
        helper.make_node("Div", [f"{p}_range", f"{p}_levels"], [scale]),
        helper.make_node("Div", [x, scale], [f"{p}_scaled"]),
        helper.make_node("Round", [f"{p}_scaled"], [f"{p}_rounded"]),
        helper.make_node("Clip", [f"{p}_rounded", f"{p}_low", f"{p}_levels"], [f"{p}_clipped"]),
        helper.make_node("Add", [f"{p}_clipped", f"{p}_shift"], [f"{p}_shifted"]),
        helper.make_node("Cast", [f"{p}_shifted"], [x_q], to=TensorProto.UINT8),
    ]


def _live(nodes: list[onnx.NodeProto], outputs: set[str]) -> list[onnx.NodeProto]:
    """The nodes that some graph output depends on, in their order."""
    needed = set(outputs)
    live = []
    for node in reversed(nodes):
        if any(o in needed for o in node.output):
            live.append(node)
            needed.update(node.input)
    return live[::-1]
