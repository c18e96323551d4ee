"""Segment-level planning (vMCU): gap closed forms vs enumeration, the checker's verdicts vs an executing
simulation, the paper's layers and modules, and every shared model."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vmcu.errors import PlanError
from vmcu.frontend.builder import GraphBuilder
from vmcu.frontend.models import (
    VMCU_BOTTLENECK_MODULES,
    VMCU_POINTWISE_CASES,
    inverted_bottleneck_module,
    mobilenet_v2,
    pointwise_layer,
)
from vmcu.frontend.tflite import read_tflite
from vmcu.ir.graph import Graph, Op, Quant, Tensor
from vmcu.plan.segment import SegmentPlan, plan_segments, replace_bases
from vmcu.plan.segment_check import check_segment_plan
from vmcu.plan.segment_gap import (
    SEGMENT_OPS,
    WindowGeometry,
    closed_form_gap,
    enumerated_gap,
    op_schedule,
    read_lows,
    unit_bytes,
    window_closed_form,
    window_lows,
)
from vmcu.plan.segment_sim import simulate_segment_plan
from vmcu.plan.tensor import TINYENGINE_INPLACE, plan_tensors
from vmcu.reference.executor import random_inputs, run_reference

MODELS = Path(__file__).resolve().parents[2] / "shared" / "models"
KIB = 1024

# --- gap: closed form vs enumeration ----------------------------------------------------------------


def _axis(draw: st.DrawFn, padding: str) -> tuple[int, int, int, int, int, int]:
    """(in, out, kernel, stride, dilation, pad_before) of one spatial axis, as TFLite pads it."""
    k, s, d = draw(st.integers(1, 5)), draw(st.integers(1, 3)), draw(st.integers(1, 3))
    eff = (k - 1) * d + 1
    size = draw(st.integers(eff if padding == "VALID" else 1, eff + 12))
    out = -(-size // s) if padding == "SAME" else (size - eff) // s + 1
    pad = max((out - 1) * s + eff - size, 0) // 2 if padding == "SAME" else 0
    return size, out, k, s, d, pad


@st.composite
def geometries(draw: st.DrawFn) -> WindowGeometry:
    padding = draw(st.sampled_from(["SAME", "VALID"]))
    h, oh, kh, sh, dh, pt = _axis(draw, padding)
    w, ow, kw, sw, dw, pl = _axis(draw, padding)
    batches, c_in, c_out = draw(st.integers(1, 2)), draw(st.integers(1, 9)), draw(st.integers(1, 9))
    in_bytes, out_bytes = draw(st.sampled_from([1, 4])), draw(st.sampled_from([1, 4]))
    return WindowGeometry(batches, h, w, c_in, oh, ow, c_out, kh, kw, sh, sw, dh, dw, pt, pl, in_bytes,
                          out_bytes)


@settings(max_examples=400, deadline=None)
@given(geometries())
def test_window_closed_form_matches_enumeration(g: WindowGeometry) -> None:
    assert window_closed_form(g) == enumerated_gap(window_lows(g), g.unit_bytes)


@pytest.mark.parametrize("w", [5, 16])
@pytest.mark.parametrize("c", [3, 16])
def test_paper_closed_forms(w: int, c: int) -> None:
    """kxk stride 1 SAME, C_in = C_out = C: (k//2)*(W+1)*C, so (W+1)*C for 3x3; 3x3 stride 2: 0;
    1x1 with N <= K: 0."""
    for k in (3, 5, 7):
        g = WindowGeometry(1, 9, w, c, 9, w, c, k, k, pad_top=k // 2, pad_left=k // 2)
        assert window_closed_form(g) == enumerated_gap(window_lows(g), g.unit_bytes) == (k // 2) * (w + 1) * c
    assert window_closed_form(WindowGeometry(1, 8, 2 * w, c, 4, w, c, 3, 3, 2, 2)) == 0
    assert window_closed_form(WindowGeometry(1, 8, w, c, 8, w, c - 1, 1, 1)) == 0


def zoo(seed: int = 3) -> Graph:
    """Every builder op: PAD, strided VALID conv, pools, dilated depthwise with multiplier, 1x3 conv, ADD,
    MEAN, FC, RESHAPE, SOFTMAX; small enough to simulate."""
    b = GraphBuilder(seed=seed)
    x = b.input((1, 9, 9, 8), 0.05, 3)
    p = b.pad(x, [(0, 0), (1, 2), (2, 1), (0, 0)])
    c = b.conv2d(p, 12, 3, stride=2, padding="VALID", activation="RELU")
    m = b.max_pool2d(c, 2, stride=1, padding="SAME")
    dw = b.depthwise_conv2d(m, 3, dilation=2, depth_multiplier=2, activation="NONE")
    c2 = b.conv2d(c, 24, (1, 3), activation="RELU_N1_TO_1")
    a = b.add(dw, c2)
    e = b.conv2d(a, 24, 3, activation="RELU6")
    ap = b.avg_pool2d(e, 2, stride=1, padding="SAME")
    f = b.fully_connected(b.mean(ap, (1, 2)), 10)
    b.softmax(b.reshape(f, (1, 10)))
    return b.build("zoo")


def _f32(v: float) -> float:
    return float(np.float32(v))


def elementwise_graph() -> Graph:
    """QUANTIZE (float32 -> int8), MUL by a per-channel vector (broadcast), LOGISTIC, QUANTIZE (requantize),
    DEQUANTIZE (-> float32): the ops the builder has no method for."""
    def q(scale: float, zp: int) -> Quant:
        return Quant((_f32(scale),), (zp,))

    shape = (1, 5, 4, 8)
    tensors = (Tensor(0, "x", shape, "float32"), Tensor(1, "scale", (1, 1, 1, 8), "int8", q(0.02, -1)),
               Tensor(2, "q", shape, "int8", q(0.05, 3)), Tensor(3, "mul", shape, "int8", q(0.01, 0)),
               Tensor(4, "sig", shape, "int8", q(1 / 256, -128)),
               Tensor(5, "req", shape, "int8", q(0.005, 5)), Tensor(6, "deq", shape, "float32"))
    ops = (Op(0, "QUANTIZE", (0,), (2,)), Op(1, "MUL", (2, 1), (3,), {"activation": "NONE"}),
           Op(2, "LOGISTIC", (3,), (4,)), Op(3, "QUANTIZE", (4,), (5,)), Op(4, "DEQUANTIZE", (5,), (6,)))
    return Graph("elementwise", tensors, ops, (0, 1), (6,))


def _supported_models() -> list[str]:
    skip = ("tflm__dtln_noise_suppression", "tflm__keyword_scrambled_8bit", "tflm__mnist_lstm_int8")
    return sorted(p.stem for p in MODELS.glob("*.tflite") if p.stem not in skip)


def test_op_closed_forms_match_enumeration() -> None:
    """Every op with a segment kernel in the builder graphs and the shared models has a closed-form gap,
    equal to the enumerated one; the schedule keeps it where the output may overlap."""
    graphs = [zoo(), elementwise_graph()] + [read_tflite(MODELS / f"{m}.tflite") for m in _supported_models()]
    checked = 0
    for g in graphs:
        for op in g.ops:
            if op.type not in SEGMENT_OPS:
                continue
            sched = op_schedule(g, op)
            for t, lows in read_lows(g, op).items():
                gap = enumerated_gap(lows, unit_bytes(g, op))
                assert closed_form_gap(g, op, t) == gap, (g.name, op.index, op.type)
                assert not sched.overlap or sched.gap(t) == gap
                checked += 1
    assert checked > 400


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 6), st.integers(1, 6), st.integers(1, 4),
       st.lists(st.tuples(st.integers(0, 3), st.integers(0, 3)), min_size=3, max_size=3))
def test_pad_closed_form_matches_enumeration(h: int, w: int, c: int, pads: list[tuple[int, int]]) -> None:
    b = GraphBuilder(seed=0)
    b.pad(b.input((1, h, w, c), 0.1, 0), [(0, 0)] + pads)
    g = b.build("pad")
    op = g.ops[0]
    lows = read_lows(g, op)[op.inputs[0]]
    unit = (c + sum(pads[2])) * 1
    gap = enumerated_gap(lows, unit)
    assert closed_form_gap(g, op, op.inputs[0]) == gap
    sched = op_schedule(g, op)
    assert sched.overlap == (sched.steps > 1) and (not sched.overlap or sched.gap(op.inputs[0]) == gap)


# --- checker vs simulation --------------------------------------------------------------------------


def _single_layers() -> list[Graph]:
    graphs = []
    for make in (lambda b, x: b.conv2d(x, 8, 3), lambda b, x: b.conv2d(x, 16, 1),
                 lambda b, x: b.depthwise_conv2d(x, 5, stride=2), lambda b, x: b.conv2d(x, 8, 3, dilation=2),
                 lambda b, x: b.avg_pool2d(x, 3, stride=1, padding="SAME"),
                 lambda b, x: b.pad(x, [(0, 0), (1, 1), (2, 0), (0, 0)])):
        b = GraphBuilder(seed=1)
        make(b, b.input((1, 7, 6, 8), 0.05, 0))
        graphs.append(b.build(f"layer{len(graphs)}"))
    return graphs


@pytest.mark.parametrize("graph", _single_layers(), ids=lambda g: g.name)
def test_checker_threshold_is_the_exact_gap(graph: Graph) -> None:
    """With 1-byte segments the checker accepts the output exactly `gap` bytes before the input and rejects
    it one byte closer, and the simulation agrees; the planned footprint is max(|Out|, gap + |In|)."""
    splan = plan_segments(graph, segment_bytes=1)
    x, y = graph.inputs[0], graph.outputs[0]
    gap = op_schedule(graph, graph.ops[0]).gap(x)
    size_in, size_out = graph.tensors[x].nbytes, graph.tensors[y].nbytes
    assert splan.pool_bytes == max(size_out, gap + size_in)
    inputs = random_inputs(graph, 1, 0)[0]
    expected = run_reference(graph, inputs)[y]
    pool = splan.pool_bytes + 1
    for distance, ok in ((gap, True), (gap - 1, False)):
        if distance < 0:
            continue
        plan = _resized(graph, splan, {x: distance, y: 0}, pool)
        right = np.array_equal(simulate_segment_plan(graph, plan, inputs)[y], expected)
        if ok:
            check_segment_plan(graph, plan)
        else:
            with pytest.raises(PlanError, match="op 0"):
                check_segment_plan(graph, plan)
        assert right == ok


def _resized(graph: Graph, splan: SegmentPlan, bases: dict[int, int], pool: int) -> SegmentPlan:
    """`splan` with other bases in a pool of another size (same segments)."""
    widened = SegmentPlan(splan.plan, splan.steps, pool, splan.pool_unit, splan.workspace_bytes)
    return replace_bases(graph, widened, bases)


def _tweaks(graph: Graph, splan: SegmentPlan) -> list[tuple[int, SegmentPlan]]:
    """For each op whose output overwrites an input: the plan with that output one segment closer."""
    out = []
    for s in splan.steps:
        if s.chained_input >= 0:
            bases = splan.plan.offsets()
            bases[s.output] = (bases[s.output] + s.segment_bytes) % splan.pool_bytes
            out.append((s.op, replace_bases(graph, splan, bases)))
    return out


@pytest.mark.parametrize(("make", "segment"), [
    (zoo, 4), (elementwise_graph, 8), (lambda: inverted_bottleneck_module(6, 8, 24, 8, 3), 8),
    (lambda: inverted_bottleneck_module(7, 8, 16, 16, 3, (1, 2, 1)), 4)],
    ids=["zoo", "elementwise", "bottleneck", "bottleneck_s2"])
def test_simulation_agrees_with_checker(make, segment: int) -> None:
    """The planned pool runs bit-exact with the reference. Moving any output one segment closer to its
    input: wrong values are always rejected, and every rejection gives wrong values, except where the
    overwritten bytes are float32 mantissa bits that QUANTIZE rounds away. Every tight gap is rejected."""
    graph = make()
    inputs = random_inputs(graph, 1, 0)[0]
    reference = run_reference(graph, inputs)
    splan = plan_segments(graph, segment_bytes=segment)
    check_segment_plan(graph, splan)
    values = simulate_segment_plan(graph, splan, inputs)
    assert all(np.array_equal(values[t], reference[t]) for t in values)
    tight = {s.op for s in splan.steps if s.chained_input >= 0 and s.gap_bytes == s.min_gap_bytes > 0}
    rejected = set()
    for op, plan in _tweaks(graph, splan):
        try:
            check_segment_plan(graph, plan)
        except PlanError as e:
            assert "\n" not in str(e) and "overwritten by" in str(e)
            rejected.add(op)
        values = simulate_segment_plan(graph, plan, inputs)
        wrong = any(not np.array_equal(values[t], reference[t]) for t in values)
        float_input = any(graph.tensors[t].dtype == "float32" for t in graph.ops[op].inputs)
        assert wrong <= (op in rejected) and (op in rejected) <= (wrong or float_input), op
    assert tight <= rejected and rejected


def test_checker_rejects_overwritten_residual() -> None:
    """A 1x1 conv may overwrite its input as it goes (gap 0), but not when an ADD reads that input later."""
    b = GraphBuilder(seed=2)
    x = b.input((1, 6, 6, 8), 0.05, 0)
    y = b.conv2d(x, 8, 1)
    b.add(x, y)
    graph = b.build("residual")
    splan = plan_segments(graph)
    check_segment_plan(graph, splan)
    bases = splan.plan.offsets()
    assert bases[y] != bases[x]
    bases[y] = bases[x]
    with pytest.raises(PlanError, match=rf"op 1 ADD step 0 reads tensor {x} 'input' byte 0 .* overwritten by "
                                        rf"tensor {y} 'conv2d_0/out'$"):
        check_segment_plan(graph, replace_bases(graph, splan, bases))


def test_simulated_mobilenet_v2_is_bit_exact() -> None:
    graph = mobilenet_v2(0.35, 32, 10)
    splan = plan_segments(graph)
    check_segment_plan(graph, splan)
    inputs = random_inputs(graph, 1, 1)[0]
    reference = run_reference(graph, inputs)
    values = simulate_segment_plan(graph, splan, inputs)
    assert all(np.array_equal(values[t], reference[t]) for t in values)
    assert splan.pool_bytes == 12384
    assert splan.pool_bytes + splan.workspace_bytes < plan_tensors(graph).peak_bytes


# --- the paper's layers and modules ------------------------------------------------------------------

# vMCU Fig. 7 (KiB, includes a ~4-8 KiB runtime baseline) and our activation bytes.
PAPER_POINTWISE_KIB = (105.7, 104.5, 57.7, 105.4, 54.8, 23.4, 21.9, 14.8, 16.9)
POINTWISE_SEGMENT_BYTES = (102400, 100352, 50176, 102400, 51200, 19200, 18432, 9216, 4608)


@pytest.mark.parametrize("case", range(9), ids=lambda i: f"case{i + 1}")
def test_pointwise_cases(case: int) -> None:
    hw, c_in, c_out = VMCU_POINTWISE_CASES[case]
    graph = pointwise_layer(hw, c_in, c_out)
    splan = plan_segments(graph)
    check_segment_plan(graph, splan)
    size_in, size_out = hw * hw * c_in, hw * hw * c_out
    gap = op_schedule(graph, graph.ops[0]).gap(graph.inputs[0])
    assert splan.pool_bytes == POINTWISE_SEGMENT_BYTES[case] == max(size_out, gap + size_in)
    assert splan.pool_bytes <= PAPER_POINTWISE_KIB[case] * KIB
    assert plan_tensors(graph, inplace=TINYENGINE_INPLACE).peak_bytes == size_in + size_out  # the paper's baseline
    assert plan_tensors(graph).peak_bytes == (size_in + size_out if c_out > c_in else size_in)  # in place


MODULE_SEGMENT_BYTES = {
    "S1": 26640, "S2": 26640, "S3": 15984, "S4": 15720, "S5": 8440, "S6": 7152, "S7": 7104, "S8": 5856,
    "B1": 125328, "B2": 186960, "B3": 189520, "B4": 196720, "B5": 129792, "B6": 155040, "B7": 75240,
    "B8": 75240, "B9": 58080, "B10": 42720, "B11": 28160, "B12": 25600, "B13": 43680, "B14": 37920,
    "B15": 34848, "B16": 30816, "B17": 19968,
}


@pytest.mark.parametrize("name", list(VMCU_BOTTLENECK_MODULES))
def test_bottleneck_modules_unfused(name: str) -> None:
    """Unfused modules: expand, depthwise, project (+ residual) each reuse their input's bytes, which beats
    TFLM's tensor-level planner on every module. (vmcu's tensor plan with in-place depthwise beats the
    unfused segment plan on a few modules; the fused schedule, tests/test_fused.py, beats both.)"""
    graph = inverted_bottleneck_module(*VMCU_BOTTLENECK_MODULES[name])
    splan = plan_segments(graph)
    check_segment_plan(graph, splan)
    assert splan.pool_bytes == MODULE_SEGMENT_BYTES[name] == splan.plan.lower_bound_bytes
    assert splan.pool_bytes < plan_tensors(graph, strategy="tflm").peak_bytes


# --- shared models -------------------------------------------------------------------------------------

MODEL_SEGMENT_BYTES = {
    "mlperftiny__ad01_int8": 768, "mlperftiny__ic_pretrainedResnet_large_int8": 83520,
    "mlperftiny__ic_resnet8_pretrainedResnet_quant": 33408, "mlperftiny__kws_ref_model": 8384,
    "mlperftiny__str_ww_ref_model": 3584, "mlperftiny__vww_96_int8": 36864, "tflm__hello_world_int8": 32,
    "tflm__micro_speech_quantized": 4157, "tflm__person_detect": 36864,
    "tinyengine__mcunetv2_large": 1255680, "tinyengine__vww": 84960,
}


def test_all_supported_models_listed() -> None:
    assert set(_supported_models()) == set(MODEL_SEGMENT_BYTES)


@pytest.mark.parametrize("name", sorted(MODEL_SEGMENT_BYTES))
def test_shared_models(name: str) -> None:
    """The plan passes the checker; with a conv layer, pool + workspace beat the tensor-level plan. Models of
    one-row FULLY_CONNECTED layers only gain nothing: every output depends on the whole input row."""
    graph = read_tflite(MODELS / f"{name}.tflite")
    splan = plan_segments(graph)
    started = time.perf_counter()
    check_segment_plan(graph, splan)
    if name == "mlperftiny__vww_96_int8":
        assert time.perf_counter() - started < 5
    assert splan.pool_bytes == MODEL_SEGMENT_BYTES[name]
    assert splan.pool_bytes % splan.pool_unit == 0
    tensor_peak = plan_tensors(graph).peak_bytes
    if any(op.type in ("CONV_2D", "DEPTHWISE_CONV_2D") for op in graph.ops):
        assert splan.pool_bytes + splan.workspace_bytes < tensor_peak
    else:
        assert splan.pool_bytes == tensor_peak and splan.workspace_bytes == 0


def test_uniform_segment_size() -> None:
    """A forced segment size is the pool unit and the segment of every op whose output may overlap an input
    (the others address the pool byte by byte: segment 1)."""
    graph = read_tflite(MODELS / "mlperftiny__vww_96_int8.tflite")
    splan = plan_segments(graph, segment_bytes=16)
    check_segment_plan(graph, splan)
    assert splan.pool_unit == 16 and splan.pool_bytes % 16 == 0
    assert {s.segment_bytes for s in splan.steps} == {16, 1}
    assert all(s.segment_bytes == 16 for s in splan.steps if s.chained_input >= 0)
    assert splan.pool_bytes < plan_tensors(graph).peak_bytes
    with pytest.raises(PlanError):
        plan_segments(graph, segment_bytes=0)
