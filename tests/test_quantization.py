"""Int8 graphs served row by row (``spacelive.quantization``): a batch row equals that row run
alone, bit for bit, and stays close to the fp32 computation."""

import numpy as np
import onnx
import onnxruntime as ort

from spacelive.engine import DEFAULT_MODELS
from spacelive.quantization import dequantize, is_quantized, quantize_rows
from spacelive.runners import StageRunner

S2L = DEFAULT_MODELS / "s2l.int8.onnx"
ENCODER = DEFAULT_MODELS / "audio_encoder.int8.onnx"


def _inputs(session: ort.InferenceSession, batch: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Random inputs of the graph's shapes, at the scale the stages see (landmarks, state)."""
    rng = np.random.default_rng(seed)
    feeds = {}
    for spec in session.get_inputs():
        shape = [batch if isinstance(d, str) else d for d in spec.shape]
        if "int64" in spec.type:
            feeds[spec.name] = np.full(shape, 7, np.int64)
        else:
            feeds[spec.name] = (0.3 * rng.standard_normal(shape)).astype(np.float32)
    if "first" in feeds:
        feeds["first"][:] = 0.0
    return feeds


def _batch_axis(spec) -> int:
    return next(i for i, d in enumerate(spec.shape) if isinstance(d, str))


def test_rows_of_a_batch_equal_each_row_alone():
    runner = StageRunner(S2L)
    session = runner.session
    batch = _inputs(session, 4)
    batch["audio"][2] *= 40.0  # one loud row: with a shared scale it would coarsen the others
    axis = {s.name: _batch_axis(s) for s in session.get_inputs()}
    together = runner.run(batch)
    for row in range(4):
        alone = runner.run({k: np.take(v, [row], axis=axis[k]) for k, v in batch.items()})
        for spec in session.get_outputs():
            out_axis = _batch_axis(spec)
            assert np.array_equal(
                np.take(together[spec.name], [row], axis=out_axis), alone[spec.name]
            ), (row, spec.name)


def test_row_quantized_step_stays_close_to_fp32():
    """Within int8 rounding of the fp32 step; ONNX Runtime's MatMulIntegerToFloat fusion,
    were it left on, would be an order of magnitude off (it misreads the per-row scale)."""
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
    for name in names:
        error = float(np.abs(served[name] - reference[name]).max())
        magnitude = float(np.abs(reference[name]).max())
        assert error <= 0.1 * magnitude, (name, error, magnitude)
    assert np.abs(served["landmarks"] - reference["landmarks"]).max() < 0.005
    assert (
        np.abs(wrong["new_h"] - reference["new_h"]).max()
        > 3 * np.abs(served["new_h"] - reference["new_h"]).max()
    ), "the fusion no longer misbehaves: ROW_QUANTIZED_DISABLED_OPTIMIZERS may go"


def test_matmuls_stay_int8_and_convolutions_become_fp32():
    s2l, encoder = onnx.load(str(S2L)), onnx.load(str(ENCODER))
    ops = lambda m: {n.op_type for n in m.graph.node}  # noqa: E731
    assert "MatMulInteger" in ops(quantize_rows(s2l))
    assert "DynamicQuantizeLinear" not in ops(quantize_rows(s2l))
    assert "ConvInteger" in ops(encoder)
    assert not is_quantized(quantize_rows(encoder))
    assert not is_quantized(dequantize(s2l))
