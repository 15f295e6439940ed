"""Int8 weights computed in fp32: undo ONNX Runtime's dynamic quantization in a graph.

``quantize_dynamic`` stores weights as int8 (4x smaller files) and quantizes each
activation at run time with one scale for the whole tensor: over a batch, that scale comes
from every row, so one session's loud audio would change another's numbers. The server steps
sessions in one batch (``spacelive.batch``), so it runs the graphs with each int8 weight
dequantized once at load ((W_q - zero_point) * scale, exactly what the int8 kernels multiply
by) and float activations: rows stay independent, and every row equals that stream stepped
alone.

Each ``DynamicQuantizeLinear -> MatMulInteger | ConvInteger -> Cast -> Mul(scales)`` becomes
one ``MatMul`` or ``Conv`` on the float activation.
"""

import numpy as np
import onnx
from onnx import numpy_helper

_INTEGER_OPS = {"MatMulInteger": "MatMul", "ConvInteger": "Conv"}


def is_quantized(model: onnx.ModelProto) -> bool:
    return any(n.op_type in _INTEGER_OPS for n in model.graph.node)


def dequantize(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of ``model`` with its dynamic int8 matmuls and convolutions in fp32."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    graph = model.graph
    initializers = {i.name: i for i in graph.initializer}
    producer = {o: n for n in graph.node for o in n.output}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)

    replaced: dict[int, onnx.NodeProto] = {}  # id(integer node) -> its float twin
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
        scale_name = w_q.removesuffix("_quantized") + "_scale"
        weight = (
            numpy_helper.to_array(initializers[w_q]).astype(np.float32)
            - numpy_helper.to_array(initializers[w_zp]).astype(np.float32)
        ) * numpy_helper.to_array(initializers[scale_name]).astype(np.float32)
        float_weight = numpy_helper.from_array(weight, w_q.removesuffix("_quantized") + "_fp32")
        graph.initializer.append(float_weight)
        twin = onnx.helper.make_node(
            _INTEGER_OPS[node.op_type],
            [quantizer.input[0], float_weight.name],
            [rescale.output[0]],
            name=(node.name or rescale.output[0]) + "_fp32",
        )
        twin.attribute.extend(node.attribute)
        replaced[id(node)] = twin
        dropped.update({id(cast), id(rescale)})

    nodes = [replaced.get(id(n), n) for n in graph.node if id(n) not in dropped]
    del graph.node[:]
    graph.node.extend(_live(nodes, {o.name for o in graph.output}))
    used = {name for n in graph.node for name in n.input}
    kept = [i for i in graph.initializer if i.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    onnx.checker.check_model(model)
    return model


def _live(nodes: list[onnx.NodeProto], outputs: set[str]) -> list[onnx.NodeProto]:
    """The nodes that some graph output depends on, in their order."""
    needed = set(outputs)
    live = []
    for node in reversed(nodes):
        if any(o in needed for o in node.output):
            live.append(node)
            needed.update(node.input)
    return live[::-1]
