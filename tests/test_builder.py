"""The builder API: built graphs survive write/decode, run in TFLite Micro with calibrated (non-saturating)
quantization, and the paper models have the published architecture and layer-wise peak."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import tflite

from vmcu.errors import UnsupportedOpError
from vmcu.frontend.builder import GraphBuilder
from vmcu.frontend.models import (
    VMCU_BOTTLENECK_MODULES,
    VMCU_POINTWISE_CASES,
    inverted_bottleneck_module,
    make_divisible,
    mobilenet_v2,
    pointwise_layer,
)
from vmcu.frontend.tflite import decode_tflite, read_tflite
from vmcu.frontend.writer import write_tflite, write_tflite_file
from vmcu.ir.analysis import op_activation_bytes
from vmcu.ir.graph import Graph, Op
from vmcu.reference.compare import compare_with_tflm
from vmcu.reference.tflm import run_tflm


def zoo() -> tuple[GraphBuilder, Graph]:
    """One graph with every builder op and option variant."""
    b = GraphBuilder(seed=3)
    x = b.input((1, 17, 17, 8), 0.05, 3)
    p = b.pad(x, [(0, 0), (1, 2), (2, 1), (0, 0)])
    c = b.conv2d(p, 12, 3, stride=2, padding="VALID", activation="RELU")
    m = b.max_pool2d(c, 2, stride=1, padding="SAME")
    dw = b.depthwise_conv2d(m, 3, dilation=2, depth_multiplier=2, activation="NONE")
    c2 = b.conv2d(c, 24, (1, 3), activation="RELU_N1_TO_1")
    a = b.add(dw, c2)
    ap = b.avg_pool2d(a, 3, stride=2, padding="SAME")
    mn = b.mean(ap, (1, 2), keep_dims=True)
    r = b.reshape(mn, (1, 24))
    b.softmax(b.fully_connected(r, 10))
    return b, b.build("zoo")


def bottleneck() -> tuple[GraphBuilder, Graph]:
    """A stride-1 inverted bottleneck with residual, k=5, then a stride-2 one without."""
    b = GraphBuilder(seed=1)
    x = b.input((1, 20, 20, 16), 1 / 32, 0)
    y = b.inverted_bottleneck(x, 64, 16, 5)
    b.inverted_bottleneck(y, 48, 24, 3, strides=(1, 2, 1))
    return b, b.build("bottleneck")


@pytest.fixture(scope="module")
def mbv2_small() -> Graph:
    return mobilenet_v2(0.35, 96)


@pytest.fixture(scope="module")
def mbv2() -> Graph:
    return mobilenet_v2(1.0, 224)


def assert_same_graph(a: Graph, b: Graph) -> None:
    assert (a.name, a.inputs, a.outputs) == (b.name, b.inputs, b.outputs)
    assert len(a.tensors) == len(b.tensors)
    for s, t in zip(a.tensors, b.tensors, strict=True):
        assert (s.index, s.name, s.shape, s.dtype, s.quant, s.is_variable) == \
               (t.index, t.name, t.shape, t.dtype, t.quant, t.is_variable)
        assert (s.data is None) == (t.data is None)
        if s.data is not None:
            assert s.data.dtype == t.data.dtype and np.array_equal(s.data, t.data)
    assert a.ops == b.ops
    assert [op.options for op in a.ops] == [op.options for op in b.ops]


def activation_inputs(graph: Graph, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(-128, 128, graph.tensors[i].shape).astype(np.int8) for i in graph.inputs]


def tflm(graph: Graph, inputs: list[np.ndarray], tmp_path: Path) -> dict[int, np.ndarray]:
    return run_tflm(write_tflite_file(graph, tmp_path / f"{graph.name}.tflite"), [inputs])[0]


# -- writer ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("make", [zoo, bottleneck])
def test_round_trip(make) -> None:
    _, g = make()
    assert_same_graph(g, decode_tflite(write_tflite(g), name=g.name))


def test_round_trip_mobilenet(mbv2_small: Graph, tmp_path: Path) -> None:
    path = write_tflite_file(mbv2_small, tmp_path / f"{mbv2_small.name}.tflite")
    assert_same_graph(mbv2_small, read_tflite(path))


def test_constant_buffers_are_16_byte_aligned() -> None:
    data = write_tflite(zoo()[1])
    model = tflite.Model.GetRootAsModel(data, 0)
    starts = []
    for i in range(1, model.BuffersLength()):
        buf = model.Buffers(i)
        if buf.DataLength():
            starts.append(buf._tab.Vector(buf._tab.Offset(4)))
    assert starts and all(s % 16 == 0 for s in starts)


def test_writer_rejects_ops_whose_options_are_unknown() -> None:
    _, g = zoo()
    for op_type in ("CUSTOM:foo", "SQUEEZE", "NOT_AN_OP"):
        bad = Graph(g.name, g.tensors, (Op(0, op_type, g.ops[0].inputs, g.ops[0].outputs),) + g.ops[1:],
                    g.inputs, g.outputs)
        with pytest.raises(UnsupportedOpError):
            write_tflite(bad)


def test_writing_mobilenet_v2_is_fast(mbv2: Graph) -> None:
    start = time.perf_counter()
    data = write_tflite(mbv2)
    assert time.perf_counter() - start < 3.0
    assert len(data) > sum(t.nbytes for t in mbv2.tensors if t.is_const)


# -- TFLite Micro runs the built models, and the calibration fits ----------------------------------------


@pytest.mark.parametrize("make", [zoo, bottleneck])
def test_tflm_follows_the_calibrated_float_model(make, tmp_path: Path) -> None:
    """On the calibration input every int8 tensor TFLM computes tracks the float model the scales were fit
    to, so no tensor is stuck at a constant or clipped: the scales are right."""
    b, g = make()
    q = g.tensors[g.inputs[0]].quant
    x = np.round(b.calibration(g.inputs[0]) / q.scale[0] + q.zero_point[0]).astype(np.int8)
    got = tflm(g, [x], tmp_path)
    for t in g.activation_tensors():
        y = got[t.index].astype(np.int32)
        expected = b.calibration(t.index) / t.quant.scale[0] + t.quant.zero_point[0]
        assert np.abs(y - expected).mean() < 2.0, t.name  # a few LSB of rounding, accumulated
        assert len(np.unique(y)) > 1, t.name
        assert np.mean((y == 127) | (y == -128)) < 0.5, t.name


def _check_runs(graph: Graph, tmp_path: Path) -> dict[int, np.ndarray]:
    got = tflm(graph, activation_inputs(graph), tmp_path)
    for t in graph.activation_tensors():
        y = got[t.index]
        assert y.shape == t.shape and y.dtype == np.int8, t.name
        assert len(np.unique(y)) > 1, f"{t.name} is constant"
        assert np.mean(y == 127) < 0.05, f"{t.name} saturates"
    return got


@pytest.mark.parametrize("graph", [
    pointwise_layer(20, 16, 16),
    pointwise_layer(12, 32, 64, activation="NONE"),
    inverted_bottleneck_module(*VMCU_BOTTLENECK_MODULES["S1"]),
    inverted_bottleneck_module(*VMCU_BOTTLENECK_MODULES["B9"]),
], ids=lambda g: g.name)
def test_models_run_in_tflm_without_saturating(graph: Graph, tmp_path: Path) -> None:
    got = _check_runs(graph, tmp_path)
    out = got[graph.outputs[0]]
    assert len(np.unique(out)) > 100


def test_mobilenet_v2_runs_in_tflm(mbv2_small: Graph, tmp_path: Path) -> None:
    got = _check_runs(mbv2_small, tmp_path)
    logits = next(op for op in mbv2_small.ops if op.type == "FULLY_CONNECTED").outputs[0]
    assert len(np.unique(got[logits])) > 50
    probs = got[mbv2_small.outputs[0]]
    assert probs.max() > -128 and probs.argmax() == got[logits].argmax()


@pytest.mark.parametrize("make", [
    lambda: zoo()[1], lambda: bottleneck()[1], lambda: pointwise_layer(20, 16, 16),
    lambda: inverted_bottleneck_module(*VMCU_BOTTLENECK_MODULES["B9"]), lambda: mobilenet_v2(0.35, 96),
], ids=["zoo", "bottleneck", "pointwise", "B9", "mobilenet_v2_0.35_96"])
def test_reference_executor_is_bit_exact_with_tflm_on_built_models(make, tmp_path: Path) -> None:
    g = make()
    result = compare_with_tflm(write_tflite_file(g, tmp_path / f"{g.name}.tflite"), n_inputs=2)
    assert result.bit_exact, result.mismatch
    assert result.ops_compared == len(g.ops)


# -- architecture ----------------------------------------------------------------------------------------


def test_make_divisible_matches_the_reference_implementation() -> None:
    assert [make_divisible(c * 0.35) for c in (32, 16, 24, 32, 64, 96, 160, 320)] == \
           [16, 8, 8, 16, 24, 32, 56, 112]
    assert make_divisible(1280 * 1.4) == 1792


def test_mobilenet_v2_architecture(mbv2: Graph, mbv2_small: Graph) -> None:
    types = [op.type for op in mbv2.ops]
    assert types.count("CONV_2D") == 1 + 16 * 2 + 1 + 1  # stem, 16 expand + 17 project, head
    assert types.count("DEPTHWISE_CONV_2D") == 17
    assert types.count("ADD") == 10
    assert types[-3:] == ["MEAN", "FULLY_CONNECTED", "SOFTMAX"]
    outs = [mbv2.tensors[op.outputs[0]].shape for op in mbv2.ops if op.type == "CONV_2D"]
    assert outs[0] == (1, 112, 112, 32)
    assert outs[-1] == (1, 7, 7, 1280)
    projects = [mbv2.tensors[op.outputs[0]].shape[1:] for op in mbv2.ops
                if op.type == "CONV_2D" and "project" in mbv2.tensors[op.outputs[0]].name]
    assert projects == [(112, 112, 16), (56, 56, 24), (56, 56, 24), (28, 28, 32), (28, 28, 32), (28, 28, 32),
                        (14, 14, 64), (14, 14, 64), (14, 14, 64), (14, 14, 64), (14, 14, 96), (14, 14, 96),
                        (14, 14, 96), (7, 7, 160), (7, 7, 160), (7, 7, 160), (7, 7, 320)]
    assert mbv2.tensors[mbv2.outputs[0]].shape == (1, 1000)
    weights = sum(mbv2.tensors[op.inputs[1]].size for op in mbv2.ops if len(op.inputs) == 3)
    assert 3_400_000 < weights < 3_600_000  # MobileNetV2-1.0 has 3.47 M weights
    small_projects = [mbv2_small.tensors[op.outputs[0]].shape[-1] for op in mbv2_small.ops
                      if "project" in mbv2_small.tensors[op.outputs[0]].name]
    assert sorted(set(small_projects)) == [8, 16, 24, 32, 56, 112]


def test_mobilenet_v2_layerwise_peak(mbv2: Graph) -> None:
    """1,404,928 B = 112*112*16 + 112*112*96 (block 2's expand conv) is the published per-layer peak; it
    counts depthwise convs in place (TinyEngine). Counting both depthwise tensors, block 2's stride-2
    depthwise (112x112x96 -> 56x56x96) needs more: 1,505,280 B."""
    def in_place(op: Op) -> int:
        if op.type != "DEPTHWISE_CONV_2D":
            return op_activation_bytes(mbv2, op)
        return max(mbv2.tensors[op.inputs[0]].nbytes, mbv2.tensors[op.outputs[0]].nbytes)

    assert max(in_place(op) for op in mbv2.ops) == 1_404_928 == 112 * 112 * 16 + 112 * 112 * 96
    assert max(op_activation_bytes(mbv2, op) for op in mbv2.ops) == 1_505_280 == 112 * 112 * 96 + 56 * 56 * 96


def test_inverted_bottleneck_structure() -> None:
    b = GraphBuilder()
    x = b.input((1, 8, 8, 16), 1 / 32)
    y = b.inverted_bottleneck(x, None, 16, 3)
    b.inverted_bottleneck(y, 96, 16, 7, residual=False)
    g = b.build()
    assert [op.type for op in g.ops] == ["DEPTHWISE_CONV_2D", "CONV_2D", "ADD",
                                         "CONV_2D", "DEPTHWISE_CONV_2D", "CONV_2D"]
    assert g.tensors[g.ops[4].inputs[1]].shape == (1, 7, 7, 96)
    with pytest.raises(ValueError, match="residual"):
        b.inverted_bottleneck(y, 96, 16, 3, strides=(1, 2, 1), residual=True)


@pytest.mark.parametrize("name", ["B1", "B2", "B6", "B16", "S3"])
def test_paper_modules_have_their_shapes(name: str) -> None:
    hw, c_in, c_mid, c_out, k, strides = VMCU_BOTTLENECK_MODULES[name]
    g = inverted_bottleneck_module(hw, c_in, c_mid, c_out, k, strides)
    expand, dw, project = (g.tensors[op.outputs[0]] for op in g.ops[:3])
    assert expand.shape == (1, -(-hw // strides[0]), -(-hw // strides[0]), c_mid)
    assert g.tensors[g.ops[1].inputs[1]].shape == (1, k, k, c_mid)
    assert project.shape[-1] == c_out and dw.shape[-1] == c_mid
    assert (g.ops[-1].type == "ADD") == (strides == (1, 1, 1) and c_in == c_out)


def test_pointwise_cases_have_their_shapes() -> None:
    for hw, c_in, c_out in VMCU_POINTWISE_CASES:
        g = pointwise_layer(hw, c_in, c_out)
        assert [op.type for op in g.ops] == ["CONV_2D"]
        assert g.tensors[g.inputs[0]].shape == (1, hw, hw, c_in)
        assert g.tensors[g.outputs[0]].shape == (1, hw, hw, c_out)


def test_weights_are_per_channel_symmetric_int8() -> None:
    g = inverted_bottleneck_module(10, 24, 120, 24, 3)
    for op in g.ops:
        if op.type in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            x, w, bias = (g.tensors[i] for i in op.inputs)
            channels = w.shape[w.quant.axis]
            assert w.dtype == "int8" and len(w.quant.scale) == channels and set(w.quant.zero_point) == {0}
            assert np.abs(w.data.astype(int)).max() == 127 and w.data.min() >= -127
            assert bias.dtype == "int32" and bias.shape == (channels,)
            expected = np.float32(np.float64(x.quant.scale[0]) * np.asarray(w.quant.scale))
            assert np.array_equal(np.asarray(bias.quant.scale, np.float32), expected)


def test_builds_are_seeded() -> None:
    assert write_tflite(pointwise_layer(8, 8, 8, seed=5)) == write_tflite(pointwise_layer(8, 8, 8, seed=5))
    assert write_tflite(pointwise_layer(8, 8, 8, seed=5)) != write_tflite(pointwise_layer(8, 8, 8, seed=6))


def test_builder_rejects_bad_arguments() -> None:
    b = GraphBuilder()
    with pytest.raises(ValueError, match="batch 1"):
        b.input((2, 4, 4, 3), 0.1)
    x = b.input((1, 4, 4, 3), 0.1)
    y = b.conv2d(x, 5, 3)
    with pytest.raises(ValueError, match="equal shapes"):
        b.add(x, y)
    with pytest.raises(ValueError, match="padding"):
        b.conv2d(x, 4, 3, padding="FULL")
    with pytest.raises(ValueError, match="activation"):
        b.conv2d(x, 4, 3, activation="TANH")
    with pytest.raises(ValueError, match="reshape"):
        b.reshape(x, (1, 47))
    with pytest.raises(ValueError, match="VALID"):
        b.conv2d(x, 4, 5, padding="VALID")
