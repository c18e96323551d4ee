"""PAD folding: bit-exact against the unfolded graph and against TFLM, only where provably identical."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from vmcu import driver
from vmcu.frontend.builder import GraphBuilder
from vmcu.frontend.tflite import read_tflite
from vmcu.ir.graph import Graph, Op, Tensor
from vmcu.ir.params import op_params
from vmcu.ir.transform import fold_pads
from vmcu.plan.check import check_tensor_plan
from vmcu.plan.tensor import plan_tensors
from vmcu.reference.executor import random_inputs, run_reference
from vmcu.reference.tflm import run_tflm

MODELS = Path(__file__).resolve().parents[2] / "shared" / "models"


def assert_same_values(original: Graph, folded: Graph, seed: int = 0) -> None:
    """Every tensor the folded graph computes equals the original's; only PAD outputs go missing."""
    x = random_inputs(original, 1, seed)[0]
    want, got = run_reference(original, x), run_reference(folded, x)
    pads = {op.outputs[0] for op in original.ops if op.type in ("PAD", "PADV2")}
    assert set(want) - set(got) <= pads and set(got) <= set(want)
    for t, value in got.items():
        np.testing.assert_array_equal(value, want[t], err_msg=f"tensor {t}")


@settings(max_examples=120, deadline=None)
@given(op=st.sampled_from(["conv", "depthwise"]), h=st.integers(1, 9), w=st.integers(1, 9),
       pads=st.tuples(*[st.integers(0, 3)] * 4), kernel=st.integers(1, 4), stride=st.integers(1, 3),
       dilation=st.integers(1, 2), padding=st.sampled_from(["SAME", "VALID"]), seed=st.integers(0, 99))
def test_folded_conv_is_bit_exact(op: str, h: int, w: int, pads: tuple[int, int, int, int], kernel: int,
                                  stride: int, dilation: int, padding: str, seed: int) -> None:
    top, bottom, left, right = pads
    extent = (kernel - 1) * dilation + 1
    assume(padding == "SAME" or min(h + top + bottom, w + left + right) >= extent)
    b = GraphBuilder(seed)
    x = b.input((1, h, w, 3), 1 / 64, seed % 11 - 5)
    padded = b.pad(x, [(0, 0), (top, bottom), (left, right), (0, 0)])
    if op == "conv":
        b.conv2d(padded, 4, kernel, stride=stride, padding=padding, dilation=dilation, activation="NONE")
    else:
        b.depthwise_conv2d(padded, kernel, stride=stride, padding=padding, dilation=dilation, depth_multiplier=2)
    graph = b.build("pad")
    folded = fold_pads(graph)
    (conv,) = folded.ops
    assert conv.inputs[0] == graph.inputs[0] and conv.options["padding"] == "EXPLICIT"
    p = op_params(folded, conv)
    before = op_params(graph, graph.ops[1])
    assert (p.pad_top, p.pad_left) == (before.pad_top + top, before.pad_left + left)
    assert_same_values(graph, folded, seed)


def test_chained_pads_fold_into_one_padding() -> None:
    b = GraphBuilder(1)
    x = b.input((1, 6, 7, 2), 1 / 64, 3)
    y = b.pad(b.pad(x, [(0, 0), (1, 0), (0, 2), (0, 0)]), [(0, 0), (0, 1), (1, 0), (0, 0)])
    b.conv2d(y, 3, 3, stride=2, padding="VALID")
    graph = b.build("chain")
    folded = fold_pads(graph)
    assert [op.type for op in folded.ops] == ["CONV_2D"]
    o = folded.ops[0].options
    assert (o["pad_top"], o["pad_bottom"], o["pad_left"], o["pad_right"]) == (1, 1, 1, 2)
    assert_same_values(graph, folded)


def _pad_then(reader: str) -> Graph:
    b = GraphBuilder(2)
    x = b.input((1, 6, 6, 2), 1 / 64, -4)
    y = b.pad(x, [(0, 0), (1, 1), (1, 1), (0, 0)])
    if reader == "avgpool":
        b.avg_pool2d(y, 3, stride=2)
    elif reader == "maxpool":
        b.max_pool2d(y, 3, stride=2)
    elif reader == "conv+add":
        b.add(b.depthwise_conv2d(y, 3, activation="NONE"), y)
    else:
        out = b.conv2d(y, 2, 3)
        if reader == "output":
            return b.build(reader, outputs=[y, out])
    return b.build(reader)


@pytest.mark.parametrize("reader", ["avgpool", "maxpool", "conv+add", "output"])
def test_pads_stay_where_folding_would_change_results(reader: str) -> None:
    """A pool skips out-of-bounds taps (the average divides by their count, the max ignores them) but
    would see the PAD's zero points; other readers need the padded tensor itself."""
    graph = _pad_then(reader)
    assert fold_pads(graph) is graph


def _with_pad_value(graph: Graph, value: int) -> Graph:
    """The graph with its PAD turned into a PADV2 padding with `value`."""
    pad = graph.ops[0]
    const = Tensor(len(graph.tensors), "pad_value", (1,), "int8", data=np.array([value], dtype=np.int8))
    ops = (Op(0, "PADV2", (*pad.inputs, const.index), pad.outputs),) + graph.ops[1:]
    return dataclasses.replace(graph, tensors=graph.tensors + (const,), ops=ops)


def test_padv2_folds_only_with_the_zero_point() -> None:
    graph = _pad_then("conv")
    zp = graph.tensors[graph.inputs[0]].quant.zero_point[0]
    assert [op.type for op in fold_pads(_with_pad_value(graph, zp)).ops] == ["CONV_2D"]
    other = _with_pad_value(graph, zp + 1)
    assert fold_pads(other) is other


@pytest.mark.parametrize("name, pads, before, after", [
    ("tinyengine__vww", 4, 161_472, 96_000),
    ("tinyengine__mcunetv2_large", 5, 2_451_840, 1_404_928),
])
def test_shared_models_fold_bit_exact_with_tflm(name: str, pads: int, before: int, after: int) -> None:
    """TFLM runs the file as it is; the folded graph must compute every remaining tensor identically."""
    path = MODELS / f"{name}.tflite"
    graph = read_tflite(path)
    folded = driver.load_model(path)
    assert len(graph.ops) - len(folded.ops) == pads
    assert not any(op.type == "PAD" for op in folded.ops)
    assert driver.load_model(path, require_supported=False).ops == graph.ops  # `vmcu inspect` sees the file
    x = random_inputs(graph, 1, 3)
    theirs = run_tflm(path, x, [op.outputs[0] for op in folded.ops])[0]
    ours = run_reference(folded, x[0])
    for op in folded.ops:
        t = op.outputs[0]
        np.testing.assert_array_equal(ours[t].reshape(-1), theirs[t].reshape(-1), err_msg=f"op {op.index}")
    # The padded copy lived next to its input; folded (and depthwise in place) the plan shrinks.
    plans = [plan_tensors(g) for g in (graph, folded)]
    check_tensor_plan(folded, plans[1])
    assert (plans[0].peak_bytes, plans[1].peak_bytes) == (before, after)
