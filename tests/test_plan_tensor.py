"""Tensor-level planning: TFLM's head byte for byte, the better planner, and the independent checker."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vmcu.errors import PlanError
from vmcu.frontend.tflite import read_tflite
from vmcu.ir.graph import Graph, Op, Tensor
from vmcu.plan.allocate import Buffer, search_placement, tflm_greedy
from vmcu.plan.allocate import peak as buffers_peak
from vmcu.plan.check import check_tensor_plan
from vmcu.plan.lifetimes import align_up, compute_lifetimes, layer_lower_bound, op_io_bound
from vmcu.plan.plan import MemoryPlan, Placement
from vmcu.plan.tensor import min_peak_order, plan_tensors

MODELS = Path(__file__).resolve().parents[2] / "shared" / "models"

# model: (layer peak = op_io_bound, MODELS.md; TFLM head, MODELS.md; measured "tensor" peak, which in-place
# convolutions can take below the layer peak)
SUPPORTED = {
    "mlperftiny__ad01_int8": (768, 768, 768),
    "mlperftiny__ic_pretrainedResnet_large_int8": (122_880, 122_880, 122_880),
    "mlperftiny__ic_resnet8_pretrainedResnet_quant": (49_152, 49_152, 49_152),
    "mlperftiny__kws_ref_model": (16_000, 16_000, 8_492),  # in-place pointwise convs (64 -> 64 channels)
    "mlperftiny__str_ww_ref_model": (6_656, 6_656, 4_704),
    "mlperftiny__vww_96_int8": (55_296, 73_728, 55_296),
    "tflm__hello_world_int8": (32, 32, 32),
    "tflm__micro_speech_quantized": (5_960, 5_968, 5_960),
    "tflm__person_detect": (55_296, 55_296, 55_296),
    "tinyengine__mcunetv2_large": (2_451_840, 2_451_840, 2_451_840),
    "tinyengine__vww": (161_472, 161_472, 161_472),
}
# Models with variable (state) tensors and kernel scratch buffers: (layer peak, TFLM head, "tensor" peak).
# Variable tensors live for the whole run in our plans (TFLM keeps them in its tail instead).
STATEFUL = {
    "tflm__dtln_noise_suppression": (769, 1_424, 1_288),
    "tflm__keyword_scrambled_8bit": (1_088, 672, 5_408),
    "tflm__mnist_lstm_int8": (1_404, 1_536, 1_404),
}


def load(name: str) -> Graph:
    return read_tflite(MODELS / f"{name}.tflite")


@pytest.mark.parametrize("name", sorted(SUPPORTED))
def test_tflm_strategy_reproduces_head(name: str) -> None:
    graph = load(name)
    bound, head, _ = SUPPORTED[name]
    plan = plan_tensors(graph, strategy="tflm")
    check_tensor_plan(graph, plan)
    assert plan.peak_bytes == head
    assert plan.alignment == 16
    assert op_io_bound(graph) == bound


@pytest.mark.parametrize("name", sorted(SUPPORTED | STATEFUL))
def test_tensor_strategy_peak(name: str) -> None:
    graph = load(name)
    bound, head, peak = (SUPPORTED | STATEFUL)[name]
    plan = plan_tensors(graph)
    check_tensor_plan(graph, plan)
    assert plan.peak_bytes == peak
    assert plan.alignment == 4
    assert op_io_bound(graph) == bound
    if name in SUPPORTED:
        assert plan.peak_bytes <= min(head, bound)
        assert plan.peak_bytes == -(-plan.lower_bound_bytes // 4) * 4  # the bound with its aliases, aligned


def _tflm_scratch_bytes(graph: Graph, op: Op) -> list[int]:
    """Scratch buffers TFLM's reference kernels request in Prepare (svdf, unidirectional_sequence_lstm)."""
    if op.type == "SVDF":  # int32 scratch per filter and per unit
        return [4 * graph.tensors[op.inputs[1]].shape[0], 4 * graph.tensors[op.inputs[3]].shape[0]]
    if op.type == "UNIDIRECTIONAL_SEQUENCE_LSTM":  # four gate buffers shaped like the (int16) cell state
        return [graph.tensors[op.inputs[19]].nbytes] * 4
    return []


@pytest.mark.parametrize("name", sorted(STATEFUL))
def test_tflm_greedy_with_kernel_scratch_reproduces_head(name: str) -> None:
    """The allocator matches TFLM's head once the kernels' scratch buffers are added after the tensors."""
    graph = load(name)
    order = tuple(range(len(graph.ops)))
    lifetimes = compute_lifetimes(graph, order)
    buffers = [Buffer(align_up(graph.tensors[t].nbytes, 16), life.first, life.last)
               for t, life in sorted(lifetimes.items()) if not graph.tensors[t].is_variable]
    buffers += [Buffer(align_up(n, 16), step, step) for step in order
                for n in _tflm_scratch_bytes(graph, graph.ops[step])]
    assert buffers_peak(buffers, tflm_greedy(buffers)) == STATEFUL[name][1]


def test_vww_reaches_the_bound_tflm_misses() -> None:
    graph = load("mlperftiny__vww_96_int8")
    plan = plan_tensors(graph)
    assert plan.peak_bytes == layer_lower_bound(graph, plan.order) == 55_296
    assert plan.aliases  # the final RESHAPE reuses its input's bytes
    out, src = plan.aliases[0]
    assert plan.placement(out).offset == plan.placement(src).offset


def test_search_beats_every_greedy_start() -> None:
    buffers = [Buffer(4, 1, 4), Buffer(3, 4, 7), Buffer(2, 4, 6), Buffer(8, 2, 2), Buffer(7, 5, 5)]
    assert buffers_peak(buffers, tflm_greedy(buffers)) == 17
    offsets = search_placement(buffers, target=12)
    assert buffers_peak(buffers, offsets) == 12
    assert offsets == search_placement(buffers, target=12)  # seeded: the same every run


# Hand-built graphs ---------------------------------------------------------------------------------------

def make_graph(sizes: list[int], ops: list[tuple[str, tuple[int, ...], tuple[int, ...]]],
               inputs: tuple[int, ...], outputs: tuple[int, ...]) -> Graph:
    """A graph of int8 activation tensors of the given byte sizes (shape (n,)) and ops on them."""
    tensors = tuple(Tensor(i, f"t{i}", (n,), "int8") for i, n in enumerate(sizes))
    return Graph("toy", tensors, tuple(Op(i, kind, ins, outs) for i, (kind, ins, outs) in enumerate(ops)),
                 inputs, outputs)


def residual_graph() -> Graph:
    """Two branches whose graph order keeps both big intermediates alive at once."""
    return make_graph([8, 100, 100, 4, 4, 4], [
        ("CONV_2D", (0,), (1,)), ("CONV_2D", (0,), (2,)),
        ("CONV_2D", (1,), (3,)), ("CONV_2D", (2,), (4,)), ("ADD", (3, 4), (5,))], (0,), (5,))


def test_reordering_lowers_the_peak() -> None:
    graph = residual_graph()
    assert min_peak_order(graph) == (0, 2, 1, 3, 4)
    tflm = plan_tensors(graph, strategy="tflm")
    plan = plan_tensors(graph)
    check_tensor_plan(graph, tflm)
    check_tensor_plan(graph, plan)
    assert layer_lower_bound(graph, range(5)) == 208
    assert plan.order == (0, 2, 1, 3, 4)
    assert plan.peak_bytes == plan.lower_bound_bytes == 112 < tflm.peak_bytes


def chain_plan() -> tuple[Graph, MemoryPlan]:
    graph = make_graph([16, 32, 16, 8], [("CONV_2D", (0,), (1,)), ("CONV_2D", (1,), (2,)),
                                         ("CONV_2D", (2,), (3,))], (0,), (3,))
    placements = (Placement(0, 0, 16, 0, 0), Placement(1, 16, 32, 0, 1), Placement(2, 0, 16, 1, 2),
                  Placement(3, 16, 8, 2, 2))
    plan = MemoryPlan.for_graph(graph, strategy="manual", order=(0, 1, 2), placements=placements,
                                peak_bytes=48, lower_bound_bytes=48, alignment=4)
    return graph, plan


def test_checker_accepts_a_sound_plan_and_to_json() -> None:
    graph, plan = chain_plan()
    check_tensor_plan(graph, plan)
    data = plan.to_json()
    assert list(data) == ["strategy", "graph", "peak_bytes", "lower_bound_bytes", "alignment", "order",
                          "aliases", "placements", "steps"]
    assert data["steps"][1] == {"step": 1, "op": 1, "type": "CONV_2D", "live_bytes": 48, "live": [
        {"tensor": 2, "offset": 0, "size_bytes": 16}, {"tensor": 1, "offset": 16, "size_bytes": 32}]}


def test_checker_rejects_one_byte_overlap() -> None:
    graph, plan = chain_plan()
    placements = list(plan.placements)
    placements[1] = dataclasses.replace(placements[1], offset=15)
    bad = dataclasses.replace(plan, placements=tuple(placements), alignment=1, peak_bytes=47)
    with pytest.raises(PlanError) as err:
        check_tensor_plan(graph, bad)
    message = str(err.value)
    assert "\n" not in message
    for needle in ("tensor 0 't0' [0, 16)", "tensor 1 't1' [15, 47)", "step 0"):
        assert needle in message


@pytest.mark.parametrize("corrupt, needle", [
    (lambda p: dataclasses.replace(p, placements=p.placements[:-1]), "tensor 3 't3' is not placed"),
    (lambda p: dataclasses.replace(p, order=(1, 0, 2), op_types=("CONV_2D",) * 3), "before op 0 writes it"),
    (lambda p: dataclasses.replace(p, order=(0, 1)), "exactly once"),
    (lambda p: dataclasses.replace(p, placements=(dataclasses.replace(p.placements[0], size_bytes=12),)
                                   + p.placements[1:]), "is given 12 B"),
    (lambda p: dataclasses.replace(p, placements=(dataclasses.replace(p.placements[0], last_use=2),)
                                   + p.placements[1:]), "placed for steps 0..2"),
    (lambda p: dataclasses.replace(p, peak_bytes=40), "outside the arena"),
    (lambda p: dataclasses.replace(p, lower_bound_bytes=40), "claims lower bound 40"),
    (lambda p: dataclasses.replace(p, aliases=((3, 1),)), "is not a RESHAPE"),
    (lambda p: dataclasses.replace(p, aliases=((2, 1),)), "in-place conv op 1 needs a 1x1 stride-1 filter"),
])
def test_checker_rejects_broken_plans(corrupt: Callable[[MemoryPlan], MemoryPlan], needle: str) -> None:
    graph, plan = chain_plan()
    with pytest.raises(PlanError) as err:
        check_tensor_plan(graph, corrupt(plan))
    assert needle in str(err.value)


def test_checker_rejects_alias_of_a_live_input() -> None:
    graph = make_graph([8, 8, 8], [("RESHAPE", (0,), (1,)), ("ADD", (0, 1), (2,))], (0,), (2,))
    plan = plan_tensors(graph)
    assert plan.aliases == ((2, 0),)  # the ADD stores over its dying operand
    at = plan.placement(0).offset
    placements = tuple(dataclasses.replace(p, offset=at) if p.tensor == 1 else p for p in plan.placements)
    bad = dataclasses.replace(plan, placements=placements, aliases=((1, 0),),
                              peak_bytes=max(p.end for p in placements))
    with pytest.raises(PlanError, match="still live after the RESHAPE"):
        check_tensor_plan(graph, bad)


# Property test on random DAGs ----------------------------------------------------------------------------

@st.composite
def random_graphs(draw: st.DrawFn) -> Graph:
    n_inputs = draw(st.integers(1, 2))
    sizes = [draw(st.integers(1, 64)) for _ in range(n_inputs)]
    ops = []
    for _ in range(draw(st.integers(1, 9))):
        kind = draw(st.sampled_from(["CONV_2D", "ADD", "RESHAPE", "CONCATENATION"]))
        arity = 1 if kind in ("CONV_2D", "RESHAPE") else draw(st.integers(2, 3))
        ins = tuple(dict.fromkeys(draw(st.integers(0, len(sizes) - 1)) for _ in range(arity)))
        size = sizes[ins[0]] if kind == "RESHAPE" else draw(st.integers(1, 64))
        n_outputs = 1 if kind == "RESHAPE" else draw(st.integers(1, 2))
        outs = tuple(range(len(sizes), len(sizes) + n_outputs))
        sizes += [size] * n_outputs
        ops.append((kind, ins, outs))
    read = {t for _, ins, _ in ops for t in ins}
    dangling = tuple(t for t in range(n_inputs, len(sizes)) if t not in read)
    extra = tuple(draw(st.lists(st.integers(n_inputs, len(sizes) - 1), max_size=2, unique=True)))
    outputs = tuple(dict.fromkeys(dangling + extra)) or (len(sizes) - 1,)
    return make_graph(sizes, ops, tuple(range(n_inputs)), outputs)


@settings(max_examples=150, deadline=None)
@given(random_graphs())
def test_random_dags_plan_soundly(graph: Graph) -> None:
    tflm = plan_tensors(graph, strategy="tflm")
    check_tensor_plan(graph, tflm)
    plan = plan_tensors(graph)
    check_tensor_plan(graph, plan)
    assert plan.peak_bytes >= plan.lower_bound_bytes
    assert plan.peak_bytes <= tflm.peak_bytes
    order = min_peak_order(graph)
    assert layer_lower_bound(graph, order) <= layer_lower_bound(graph, range(len(graph.ops)))


def test_variables_live_for_the_whole_run() -> None:
    graph = load("tflm__keyword_scrambled_8bit")
    order = tuple(range(len(graph.ops)))
    lifetimes = compute_lifetimes(graph, order)
    state = [t.index for t in graph.tensors if t.is_variable]
    assert len(state) == 7
    assert all((lifetimes[t].first, lifetimes[t].last) == (0, len(order) - 1) for t in state)
    plan = plan_tensors(graph, strategy="tflm")
    head = max(p.end for p in plan.placements if p.tensor not in state)
    assert head == 288  # without its SVDF scratch buffers; TFLM keeps the state in its tail
    assert min(plan.placement(t).offset for t in state) == head
