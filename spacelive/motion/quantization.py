"""Int8 graphs whose batch rows stay independent.

``quantize_dynamic`` stores weights as int8 (4x smaller files) and quantizes each activation at
run time with one scale for the whole tensor: over a batch, that scale comes from every row, so
one session's loud audio would change another's numbers. The server steps sessions in one batch
(``spacelive.stream.batch``), so each graph is rewritten at load, in one of two ways:

* ``quantize_rows`` (the CPU): every activation that feeds a ``MatMulInteger`` is quantized per
  row (symmetric, the row's own max |x| / 127, stored as uint8 around a zero point of 128:
  ONNX Runtime's fast kernels multiply uint8 activations by int8 weights), so the int8 kernels
  stay: a batch row equals that row run alone, bit for bit. A ``ConvInteger`` whose output is
  one frame (the streaming audio encoder's: its input is exactly the cached window) is the
  same product, window flattened, and becomes a ``MatMulInteger`` too: ONNX Runtime's
  ``ConvInteger`` is slower than its float ``Conv`` (33 against 15 ms at the paper width), its
  ``MatMulInteger`` several times faster. Any other ``ConvInteger`` is computed in fp32.
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
    return _rewrite(model, rows=False)


def quantize_rows(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of ``model`` whose int8 matmuls, and convolutions over one window, quantize each
    activation row on its own; other int8 convolutions run in fp32."""
    return _rewrite(model, rows=True)


def _rewrite(model: onnx.ModelProto, rows: bool) -> onnx.ModelProto:
    model = onnx.ModelProto.FromString(model.SerializeToString())
    graph = model.graph
    initializers = {i.name: i for i in graph.initializer}
    producer = {o: n for n in graph.node for o in n.output}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)

    shapes = _static_shapes(model)
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
        if rows and node.op_type == "MatMulInteger":
            replaced.setdefault(id(quantizer), _row_quantizer(quantizer))
            continue
        window = _window_conv(node, shapes) if rows else None
        if window is not None:
            if len(consumers[x_q]) != 1:
                raise ValueError(f"{node.name}: its quantized input has other consumers")
            channels, kernel = window
            flat = f"{node.name or x_q}_window"
            weight = numpy_helper.to_array(initializers[w_q])  # (out, channels, kernel)
            matrix = numpy_helper.from_array(
                np.ascontiguousarray(weight.reshape(len(weight), -1).T), f"{w_q}_matrix"
            )
            graph.initializer.append(matrix)
            replaced[id(quantizer)] = [
                _constant(f"{flat}_shape", [0, channels * kernel], np.int64),
                helper.make_node("Reshape", [quantizer.input[0], f"{flat}_shape"], [flat]),
                *_row_quantizer(
                    helper.make_node("DynamicQuantizeLinear", [flat], list(quantizer.output))
                ),
            ]
            replaced[id(node)] = [
                helper.make_node(
                    "MatMulInteger", [x_q, matrix.name, *node.input[2:4]], list(node.output)
                )
            ]
            rescaled = helper.make_node("Mul", list(rescale.input), [f"{flat}_rows"])
            replaced[id(rescale)] = [  # (batch, out) back to the conv's (batch, out, 1)
                rescaled,
                _constant(f"{flat}_frame", [0, -1, 1], np.int64),
                helper.make_node(
                    "Reshape", [rescaled.output[0], f"{flat}_frame"], [rescale.output[0]]
                ),
            ]
            continue
        scale_name = _weight_scale(rescale, quantizer.output[1], producer)
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

    return [
        _constant(f"{p}_levels", INT8_LEVELS, np.float32),
        _constant(f"{p}_tiny", 1e-30, np.float32),
        _constant(f"{p}_low", -INT8_LEVELS, np.float32),
        _constant(f"{p}_shift", float(ZERO_POINT), np.float32),
        _constant(zero_point, ZERO_POINT, np.uint8),
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


def _weight_scale(
    rescale: onnx.NodeProto, x_scale: str, producer: dict[str, onnx.NodeProto]
) -> str:
    """The weight's scale: the factor of the rescale's scale product that is not x's."""
    for name in rescale.input:
        product = producer.get(name)
        if product is not None and product.op_type == "Mul" and x_scale in product.input:
            (other,) = [i for i in product.input if i != x_scale]
            return other
    raise ValueError(f"{rescale.name}: no product of the activation and weight scales")


def _constant(name: str, value, dtype) -> onnx.NodeProto:
    return helper.make_node(
        "Constant", [], [name], value=numpy_helper.from_array(np.array(value, dtype), name)
    )


def _static_shapes(model: onnx.ModelProto) -> dict[str, list]:
    """Inferred shapes by tensor name (ints where known, else the symbolic name or None)."""
    inferred = onnx.shape_inference.infer_shapes(model)
    values = list(inferred.graph.value_info) + list(inferred.graph.input)
    return {
        v.name: [
            d.dim_value if d.HasField("dim_value") else None for d in v.type.tensor_type.shape.dim
        ]
        for v in values
    }


def _window_conv(node: onnx.NodeProto, shapes: dict[str, list]) -> tuple[int, int] | None:
    """(channels, kernel) of a 1-D ConvInteger whose input (batch, channels, kernel) is exactly
    one window (no padding, stride or dilation, one group), so its output is one frame: a
    matmul of the flattened window. None for any other convolution."""
    attributes = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    shape = shapes.get(node.input[0])
    if shape is None or len(shape) != 3 or None in shape[1:]:
        return None
    kernel = attributes.get("kernel_shape", [None])
    plain = (
        all(v == 0 for v in attributes.get("pads", [0]))
        and all(v == 1 for v in attributes.get("strides", [1]))
        and all(v == 1 for v in attributes.get("dilations", [1]))
        and attributes.get("group", 1) == 1
    )
    if len(kernel) != 1 or kernel[0] != shape[2] or not plain:
        return None
    return int(shape[1]), int(shape[2])


def _live(nodes: list[onnx.NodeProto], outputs: set[str]) -> list[onnx.NodeProto]:
    """The nodes that some graph output depends on, in their order."""
    needed = set(outputs)
    live = []
    for node in reversed(nodes):
        if any(o in needed for o in node.output):
            live.append(node)
            needed.update(node.input)
    return live[::-1]
