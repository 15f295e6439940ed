"""Int8 graphs served row by row (``spacelive.motion.quantization``): a batch row equals that
row run alone, bit for bit, and stays close to the fp32 computation."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from spacelive.face.head_model import face_model
from spacelive.face.landmarks import MESH_TO_SPARSE
from spacelive.motion.quantization import dequantize, is_quantized, quantize_rows
from spacelive.motion.runners import StageRunner
from spacelive.stream.engine import DEFAULT_MODELS

S2L = DEFAULT_MODELS / "s2l.int8.onnx"
ENCODER = DEFAULT_MODELS / "audio_encoder.int8.onnx"


def _inputs(
    session: ort.InferenceSession, batch: int, seed: int = 0, loud: bool = False
) -> dict[str, np.ndarray]:
    """Random inputs of the graph's shapes, at the scale the stages see: landmarks are a face
    (the generic face model, jittered), state and features noise; mid-stream (frame 20 of
    100); ``loud``: the last row's audio 40x louder (a shared scale would coarsen the other
    rows)."""
    rng = np.random.default_rng(seed)
    face = face_model()[MESH_TO_SPARSE].astype(np.float32)  # (110, 3), ears 2 apart
    feeds = {}
    for spec in session.get_inputs():
        shape = [batch if isinstance(d, str) else d for d in spec.shape]
        if "int64" in spec.type:
            feeds[spec.name] = np.full(shape, 20 if spec.name == "frame_index" else 100, np.int64)
        elif spec.name in ("previous", "landmarks0"):
            feeds[spec.name] = face + (0.02 * rng.standard_normal(shape)).astype(np.float32)
        else:
            feeds[spec.name] = (0.3 * rng.standard_normal(shape)).astype(np.float32)
    if "first" in feeds:
        feeds["first"][:] = 0.0
    if loud:
        feeds["audio" if "audio" in feeds else "mfcc"][-1] *= 40.0
    return feeds


def _batch_axis(spec) -> int:
    return next(i for i, d in enumerate(spec.shape) if isinstance(d, str))


@pytest.mark.parametrize("path", [S2L, ENCODER], ids=["s2l", "audio_encoder"])
def test_rows_of_a_batch_equal_each_row_alone(path):
    runner = StageRunner(path)
    session = runner.session
    batch = _inputs(session, 4, loud=True)
    axis = {s.name: _batch_axis(s) for s in session.get_inputs()}
    together = runner.run(batch)
    for row in range(4):
        alone = runner.run({k: np.take(v, [row], axis=axis[k]) for k, v in batch.items()})
        for spec in session.get_outputs():
            out_axis = _batch_axis(spec)
            assert np.array_equal(
                np.take(together[spec.name], [row], axis=out_axis), alone[spec.name]
            ), (row, spec.name)


@pytest.mark.parametrize("path", [S2L, ENCODER], ids=["s2l", "audio_encoder"])
def test_row_quantized_step_stays_close_to_fp32(path):
    """Within int8 rounding of the fp32 step: 10 % of each output's range on random inputs
    (the held-out lip-sync benchmark measures what it does to real speech: nothing visible)."""
    model = onnx.load(str(path))
    fp32 = ort.InferenceSession(dequantize(model).SerializeToString())
    feeds = _inputs(fp32, 2, seed=3)
    names = [o.name for o in fp32.get_outputs()]
    reference = dict(zip(names, fp32.run(names, feeds), strict=True))
    served = StageRunner(path).run(feeds)
    for name in names:
        error = float(np.abs(served[name] - reference[name]).max())
        magnitude = float(np.abs(reference[name]).max())
        assert error <= 0.1 * magnitude, (name, error, magnitude)


def test_the_misbehaving_fusion_stays_off():
    """ONNX Runtime's MatMulIntegerToFloat fusion, were it left on, would be an order of
    magnitude off the fp32 step (it mishandles the per-row scale)."""
    model = onnx.load(str(S2L))
    options = ort.SessionOptions()
    fp32 = ort.InferenceSession(dequantize(model).SerializeToString(), options)
    fused = ort.InferenceSession(quantize_rows(model).SerializeToString(), options)
    runner = StageRunner(S2L)
    feeds = _inputs(fp32, 1, seed=3)
    names = [o.name for o in fp32.get_outputs()]
    reference = dict(zip(names, fp32.run(names, feeds), strict=True))
    served = runner.run(feeds)
    wrong = dict(zip(names, fused.run(names, feeds), strict=True))
    assert (
        np.abs(wrong["new_h"] - reference["new_h"]).max()
        > 3 * np.abs(served["new_h"] - reference["new_h"]).max()
    ), "the fusion no longer misbehaves: ROW_QUANTIZED_DISABLED_OPTIMIZERS may go"


def test_matmuls_and_window_convolutions_stay_int8():
    s2l, encoder = onnx.load(str(S2L)), onnx.load(str(ENCODER))
    ops = lambda m: [n.op_type for n in m.graph.node]  # noqa: E731
    assert "DynamicQuantizeLinear" not in ops(quantize_rows(s2l))
    assert ops(quantize_rows(s2l)).count("MatMulInteger") == ops(s2l).count("MatMulInteger")
    convolutions = ops(encoder).count("ConvInteger")
    assert convolutions == 12
    assert ops(quantize_rows(encoder)).count("MatMulInteger") == convolutions
    assert "ConvInteger" not in ops(quantize_rows(encoder))
    assert not is_quantized(dequantize(s2l)) and not is_quantized(dequantize(encoder))


def test_other_convolutions_run_in_fp32():
    """A convolution over more than one window is not a single matmul: it is dequantized."""
    from onnx import TensorProto, helper, numpy_helper

    weight = np.random.default_rng(0).integers(-127, 128, (4, 3, 3)).astype(np.int8)
    graph = helper.make_graph(
        [
            helper.make_node("DynamicQuantizeLinear", ["x"], ["xq", "xs", "xz"]),
            helper.make_node("ConvInteger", ["xq", "w", "xz", "wz"], ["y32"], kernel_shape=[3]),
            helper.make_node("Cast", ["y32"], ["yf"], to=TensorProto.FLOAT),
            helper.make_node("Mul", ["xs", "ws"], ["scale"]),
            helper.make_node("Mul", ["yf", "scale"], ["y"]),
        ],
        "long",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 6])],
        [
            numpy_helper.from_array(weight, "w"),
            numpy_helper.from_array(np.array(0, np.int8), "wz"),
            numpy_helper.from_array(np.array(0.01, np.float32), "ws"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    rewritten = quantize_rows(model)
    assert [n.op_type for n in rewritten.graph.node] == ["Conv"]
    x = np.random.default_rng(1).standard_normal((1, 3, 8)).astype(np.float32)
    y = ort.InferenceSession(rewritten.SerializeToString()).run(None, {"x": x})[0]
    expected = np.stack(
        [np.einsum("ck,ock->o", x[0, :, i : i + 3], 0.01 * weight) for i in range(6)], axis=-1
    )
    np.testing.assert_allclose(y[0], expected, rtol=1e-5, atol=1e-5)
