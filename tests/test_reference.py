"""The NumPy reference executor against TFLite Micro: fixed-point helpers, every kernel, every model."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from vmcu.errors import UnsupportedOpError
from vmcu.frontend.tflite import read_tflite
from vmcu.frontend.writer import write_tflite_file
from vmcu.ir.graph import Graph, Op, Quant, Tensor
from vmcu.ir.params import op_params
from vmcu.ir.quant import (
    INT32_MAX,
    INT32_MIN,
    activation_range,
    multiply_by_quantized_multiplier,
    quantize_multiplier,
    round_half_away,
    rounding_divide_by_pot,
    saturating_rounding_doubling_high_mul,
)
from vmcu.reference import fixedpoint as fp
from vmcu.reference.compare import compare_with_tflm
from vmcu.reference.executor import random_inputs, run_reference
from vmcu.reference.kernels import REFERENCE_KERNELS
from vmcu.reference.tflm import run_tflm

MODELS = Path(__file__).resolve().parents[1] / ".." / "shared" / "models"
UNSUPPORTED = {"tflm__dtln_noise_suppression", "tflm__keyword_scrambled_8bit", "tflm__mnist_lstm_int8"}
SUPPORTED_MODELS = sorted(p for p in MODELS.glob("*.tflite") if p.stem not in UNSUPPORTED)


# --- fixed-point helpers -------------------------------------------------------------------------


def test_quantize_multiplier_edges() -> None:
    assert quantize_multiplier(1.0) == (1 << 30, 1)
    assert quantize_multiplier(0.5) == (1 << 30, 0)
    assert quantize_multiplier(0.0) == (0, 0)
    assert quantize_multiplier(2.0**-40) == (0, 0)  # below 2^-31: TFLite flushes to zero
    # A mantissa that rounds up to 2^31 is renormalised.
    assert quantize_multiplier(1.0 - 2.0**-40) == (1 << 30, 1)
    m, s = quantize_multiplier(0.0123)
    assert abs(m * 2.0**(s - 31) - 0.0123) < 1e-10


def test_rounding_primitives() -> None:
    assert rounding_divide_by_pot(np.array([5, -5, 6, -6, 7, -7]), 1).tolist() == [3, -3, 3, -3, 4, -4]
    assert saturating_rounding_doubling_high_mul(INT32_MIN, INT32_MIN).item() == INT32_MAX
    assert saturating_rounding_doubling_high_mul(1 << 30, 1 << 30).item() == 1 << 29
    # Halves: +0.5 rounds up, -0.5 rounds to 0 (the nudge is 2^30 or 1 - 2^30, then C truncation).
    assert saturating_rounding_doubling_high_mul(1, 1 << 30).item() == 1
    assert saturating_rounding_doubling_high_mul(-1, 1 << 30).item() == 0
    assert saturating_rounding_doubling_high_mul(-3, 1 << 30).item() == -1
    assert multiply_by_quantized_multiplier(1000, 1 << 30, 1).item() == 1000
    assert multiply_by_quantized_multiplier(-3, 1 << 30, -1).item() == -1  # -0.75


def test_round_half_away_and_activation_range() -> None:
    assert [round_half_away(v) for v in (0.5, -0.5, 2.5, -2.5, 0.49999999999999994)] == [1, -1, 3, -3, 0]
    assert activation_range("NONE", 0.1, 5) == (-128, 127)
    assert activation_range("RELU", 0.1, -20) == (-20, 127)
    assert activation_range("RELU6", 0.05, -128) == (-128, -8)
    assert activation_range("RELU_N1_TO_1", 0.01, 0) == (-100, 100)


def test_fixedpoint_functions_approximate_their_reals() -> None:
    x = np.linspace(-31.0, 0.0, 2001)
    exp_q0 = fp.exp_on_negative_values(np.round(x * 2**26).astype(np.int64), 5)
    assert np.max(np.abs(exp_q0 / 2**31 - np.exp(x))) < 1e-6
    y = np.linspace(-7.9, 7.9, 2001)
    sig = fp.logistic(np.round(y * 2**27).astype(np.int64), 4)
    assert np.max(np.abs(sig / 2**31 - 1 / (1 + np.exp(-y)))) < 1e-6
    z = np.linspace(0.0, 0.999, 500)
    inv = fp.one_over_one_plus_x_for_x_in_0_1(np.round(z * 2**31).astype(np.int64))
    assert np.max(np.abs(inv / 2**31 - 1 / (1 + z))) < 1e-6
    clz = fp.count_leading_zeros_u32(np.array([0, 1, 2**31, 2**32 - 1, 12345]))
    assert clz.tolist() == [32, 31, 0, 0, 18]


# --- whole models --------------------------------------------------------------------------------


@pytest.mark.parametrize("path", SUPPORTED_MODELS, ids=lambda p: p.stem)
def test_model_bit_exact_with_tflm(path: Path) -> None:
    result = compare_with_tflm(path, n_inputs=3, seed=0)
    assert result.to_json()["bit_exact"], result.to_json()
    assert result.ops_compared == len(read_tflite(path).ops)


def test_comparison_reports_first_corrupted_op(monkeypatch: pytest.MonkeyPatch) -> None:
    path = MODELS / "mlperftiny__kws_ref_model.tflite"
    first_dw = next(op.index for op in read_tflite(path).ops if op.type == "DEPTHWISE_CONV_2D")
    good = REFERENCE_KERNELS["DEPTHWISE_CONV_2D"]

    def off_by_one(p: object, inputs: list) -> np.ndarray:
        out = good(p, inputs).copy()
        out.reshape(-1)[7] ^= 1
        return out

    monkeypatch.setitem(REFERENCE_KERNELS, "DEPTHWISE_CONV_2D", off_by_one)
    report = compare_with_tflm(path, n_inputs=2, seed=1).to_json()
    assert not report["bit_exact"]
    m = report["mismatch"]
    assert (m["input"], m["op"], m["op_type"], m["index"]) == (0, first_dw, "DEPTHWISE_CONV_2D", 7)
    assert abs(m["expected"] - m["got"]) == 1
    assert report["ops_compared"] == first_dw + 1


def test_executor_returns_every_activation_tensor() -> None:
    graph = read_tflite(MODELS / "tinyengine__vww.tflite")
    (xs,) = random_inputs(graph, 1, seed=3)
    assert xs[0].dtype == np.float32
    values = run_reference(graph, xs)
    assert set(values) == {t.index for t in graph.activation_tensors()}
    quantized = values[graph.ops[0].outputs[0]]
    assert quantized.min() == -128 and quantized.max() == 127  # the float range covers all of int8


def test_unsupported_op_is_rejected() -> None:
    graph = read_tflite(MODELS / "tflm__mnist_lstm_int8.tflite")
    with pytest.raises(UnsupportedOpError, match="UNIDIRECTIONAL_SEQUENCE_LSTM"):
        run_reference(graph, random_inputs(graph, 1, seed=0)[0])


def test_softmax_with_a_free_output_quantization_is_rejected() -> None:
    tensors = (Tensor(0, "x", (1, 10), "int8", Quant((0.1,), (0,))),
               Tensor(1, "y", (1, 10), "int8", Quant((0.1,), (3,))))
    graph = Graph("bad", tensors, (Op(0, "SOFTMAX", (0,), (1,), {"beta": 1.0}),), (0,), (1,))
    with pytest.raises(UnsupportedOpError, match="output quantization"):
        op_params(graph, graph.ops[0])


@pytest.mark.parametrize(("model", "op_types"), [
    ("tflm__dtln_noise_suppression", {"LOGISTIC", "FULLY_CONNECTED"}),
    ("tflm__keyword_scrambled_8bit", {"SOFTMAX", "FULLY_CONNECTED"}),
])
def test_kernels_inside_unsupported_models(model: str, op_types: set[str]) -> None:
    """Ops of models vmcu cannot run whole (LSTM, SVDF) still match TFLM given TFLM's own inputs."""
    path = MODELS / f"{model}.tflite"
    graph = read_tflite(path)
    inputs = random_inputs(graph, 2, seed=5)
    for values in run_tflm(path, inputs):
        checked = 0
        for op in graph.ops:
            if op.type in op_types:
                args = [t.data if t.is_const else values[t.index]
                        for t in (graph.tensors[i] for i in op.inputs)]
                got = REFERENCE_KERNELS[op.type](op_params(graph, op), args)
                np.testing.assert_array_equal(got.reshape(-1), values[op.outputs[0]].reshape(-1))
                checked += 1
        assert checked >= 1


# --- a synthetic model with the op variants the real models lack ---------------------------------


class _Builder:
    """Builds a Graph tensor by tensor, with random int8 weights and int32 biases."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.tensors: list[Tensor] = []
        self.ops: list[Op] = []

    def act(self, shape: tuple[int, ...], scale: float, zp: int, dtype: str = "int8") -> int:
        return self._add(shape, dtype, Quant((float(np.float32(scale)),), (zp,)))

    def const(self, data: np.ndarray, quant: Quant | None = None) -> int:
        dtype = {np.dtype(np.int8): "int8", np.dtype(np.int32): "int32"}[data.dtype]
        return self._add(data.shape, dtype, quant, data)

    def weights(self, shape: tuple[int, ...], axis: int, channels: int, in_scale: float) -> tuple[int, int]:
        scales = tuple(float(s) for s in self.rng.uniform(0.002, 0.02, channels).astype(np.float32))
        data = self.rng.integers(-127, 128, shape).astype(np.int8)
        w = self.const(data, Quant(scales, (0,) * channels, axis))
        bias_q = Quant(tuple(in_scale * s for s in scales), (0,) * channels)
        return w, self.const(self.rng.integers(-3000, 3000, channels).astype(np.int32), bias_q)

    def op(self, op_type: str, inputs: list[int], output: int, **options: object) -> int:
        self.ops.append(Op(len(self.ops), op_type, tuple(inputs), (output,), dict(options)))
        return output

    def graph(self, inputs: list[int], outputs: list[int]) -> Graph:
        return Graph("synthetic", tuple(self.tensors), tuple(self.ops), tuple(inputs), tuple(outputs))

    def _add(self, shape: tuple[int, ...], dtype: str, quant: Quant | None,
             data: np.ndarray | None = None) -> int:
        index = len(self.tensors)
        self.tensors.append(Tensor(index, f"t{index}", tuple(shape), dtype, quant, data))
        return len(self.tensors) - 1


def _synthetic_graph() -> Graph:
    b = _Builder(seed=11)
    conv = {"padding": "SAME", "stride_h": 1, "stride_w": 1, "dilation_h": 1, "dilation_w": 1}
    x = b.act((1, 9, 10, 4), 0.05, 3)
    w, bias = b.weights((6, 3, 3, 4), 0, 6, 0.05)
    # 6 / scale is just below 49.5 in double but rounds to 49.5 in float32: TFLM's RELU6 bound is -50.
    t = b.op("CONV_2D", [x, w, bias], b.act((1, 5, 5, 6), 0.12121212482452393, -100),
             **(conv | {"stride_h": 2, "stride_w": 2, "activation": "RELU6"}))
    w, bias = b.weights((6, 3, 3, 6), 0, 6, 0.04)
    t = b.op("CONV_2D", [t, w, bias], b.act((1, 5, 5, 6), 0.03, -128),
             **(conv | {"dilation_h": 2, "dilation_w": 2, "activation": "RELU"}))
    w, bias = b.weights((1, 3, 3, 12), 3, 12, 0.03)
    t = b.op("DEPTHWISE_CONV_2D", [t, w, bias], b.act((1, 5, 5, 12), 0.05, 5),
             **(conv | {"activation": "NONE", "depth_multiplier": 2}))
    pool = {"padding": "SAME", "activation": "NONE"}
    mx = b.op("MAX_POOL_2D", [t], b.act((1, 3, 3, 12), 0.05, 5),
              **(pool | {"stride_h": 2, "stride_w": 2, "filter_h": 2, "filter_w": 2}))
    avg = b.op("AVERAGE_POOL_2D", [mx], b.act((1, 3, 3, 12), 0.05, 5),
               **(pool | {"stride_h": 1, "stride_w": 1, "filter_h": 3, "filter_w": 3}))
    t = b.op("CONCATENATION", [mx, avg], b.act((1, 3, 3, 24), 0.05, 5), axis=-1, activation="NONE")
    scale = b.const(b.rng.integers(-127, 128, (1, 1, 1, 24)).astype(np.int8), Quant((0.01,), (0,)))
    t = b.op("MUL", [t, scale], b.act((1, 3, 3, 24), 0.02, -10), activation="RELU")
    hw = b.const(np.array([1, 2], dtype=np.int32))
    m = b.op("MEAN", [t, hw], b.act((1, 1, 1, 24), 0.015, -7), keep_dims=True)
    t = b.op("ADD", [t, m], b.act((1, 3, 3, 24), 0.03, 2), activation="NONE")
    flat_mean = b.op("MEAN", [t, hw], b.act((1, 24), 0.03, 2), keep_dims=False)
    t = b.op("QUANTIZE", [t], b.act((1, 3, 3, 24), 0.07, -3))
    pads = b.const(np.array([[0, 0], [1, 1], [0, 2], [0, 0]], dtype=np.int32))
    value = b.const(np.array([-100], dtype=np.int8), Quant((float(np.float32(0.07)),), (-3,)))
    t = b.op("PADV2", [t, pads, value], b.act((1, 5, 5, 24), 0.07, -3))
    t = b.op("LOGISTIC", [t], b.act((1, 5, 5, 24), 1 / 256, -128))
    perm = b.const(np.array([0, 3, 1, 2], dtype=np.int32))
    t = b.op("TRANSPOSE", [t, perm], b.act((1, 24, 5, 5), 1 / 256, -128))
    shape = b.const(np.array([1, 600], dtype=np.int32))
    t = b.op("RESHAPE", [t, shape], b.act((1, 600), 1 / 256, -128))
    w, bias = b.weights((10, 600), 0, 10, 1 / 256)
    logits = b.op("FULLY_CONNECTED", [t, w, bias], b.act((1, 10), 0.4, 0),
                  activation="NONE", weights_format=0, keep_num_dims=False)
    p8 = b.op("SOFTMAX", [logits], b.act((1, 10), 1 / 256, -128), beta=0.15)
    p16 = b.op("SOFTMAX", [logits], b.act((1, 10), 1 / 65536, -32768, "int16"), beta=0.15)
    return b.graph([x], [p8, p16, flat_mean])


def test_synthetic_op_variants_bit_exact(tmp_path: Path) -> None:
    path = write_tflite_file(_synthetic_graph(), tmp_path / "synthetic.tflite")
    result = compare_with_tflm(path, n_inputs=3, seed=2)
    assert result.bit_exact, result.to_json()
    assert math.isclose(result.ops_compared, len(read_tflite(path).ops))
