"""Fused inverted bottlenecks (vMCU): detection, the loop order and its gap, the checker's verdicts against
the pool simulation, the paper's modules and the shared models, and the C kernel bit-exact on the pool."""

from __future__ import annotations

import ctypes
import dataclasses
import subprocess
from pathlib import Path

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from vmcu.errors import PlanError
from vmcu.frontend.builder import GraphBuilder
from vmcu.frontend.models import VMCU_BOTTLENECK_MODULES, inverted_bottleneck_module, mobilenet_v2
from vmcu.frontend.tflite import read_tflite
from vmcu.ir.fusion import FUSED_OP, find_fusable_blocks, fuse_graph
from vmcu.ir.graph import Graph
from vmcu.ir.params import op_params
from vmcu.kernels import STRUCTS, c_definition, include_dir, kernel_binding, kernel_dir
from vmcu.plan.fused import (
    FusedIBParams,
    expanded_pixels,
    fused_geometry,
    fused_macs,
    fused_params,
    input_lows,
    kernel_scratch_bytes,
    unfused_macs,
    workspace_bytes,
)
from vmcu.plan.segment import SegmentPlan, plan_segments, replace_bases
from vmcu.plan.segment_check import access_pattern, check_segment_plan
from vmcu.plan.segment_gap import NO_READ, enumerated_gap, op_schedule
from vmcu.plan.segment_sim import FILL, simulate_segment_plan
from vmcu.reference.executor import random_inputs, run_reference
from vmcu.run.execute import build_program, run_program
from vmcu.run.toolchain import arm_toolchain_missing
from vmcu.targets import get_target

MODELS = Path(__file__).resolve().parents[2] / "shared" / "models"
KIB = 1024


def padded_block() -> Graph:
    """1x1 expand -> explicit PAD -> VALID 3x3 depthwise -> 1x1 project -> ADD(project, input): the shape of
    the converted PyTorch models, with the ADD's operands in the other order than the builder's."""
    b = GraphBuilder(seed=4)
    x = b.input((1, 7, 6, 8), 0.05, 2)
    e = b.conv2d(x, 20, 1)
    d = b.depthwise_conv2d(b.pad(e, [(0, 0), (1, 1), (1, 1), (0, 0)]), 3, padding="VALID")
    p = b.conv2d(d, 8, 1, activation="NONE")
    b.add(p, x)
    return b.build("padded_block")


def exact_path_block() -> Graph:
    """A narrow block (per-pixel depthwise in both variants) whose depthwise needs the exact requantization in
    some channels: biases near +-2^30 (|acc| >= 2^30, as in the dead channels of pruned models) and weight
    scales 256x larger (shift >= 0), one of each in a group of four, and in the last C % 4 channels."""
    graph = inverted_bottleneck_module(5, 8, 18, 8, 3, seed=2)
    (block,) = find_fusable_blocks(graph)
    tensors = list(graph.tensors)
    w, b = (tensors[i] for i in block.depthwise.inputs[1:])
    bias = b.data.copy()
    bias[[1, 16]] = [2**30 - 7, -(2**30) + 9]
    scale = list(w.quant.scale)
    for ch in (6, 17):
        scale[ch] *= 256
    tensors[b.index] = dataclasses.replace(b, data=bias)
    tensors[w.index] = dataclasses.replace(w, quant=dataclasses.replace(w.quant, scale=tuple(scale)))
    return dataclasses.replace(graph, name="exact_path_block", tensors=tuple(tensors))


def small_blocks() -> list[Graph]:
    """Residual, depthwise stride 2, expand stride 2 with k5, project stride 2, k7 on a smaller image, channel
    counts that are not multiples of 4, an absorbed PAD with the ADD's operands swapped."""
    return [inverted_bottleneck_module(6, 8, 24, 8, 3), inverted_bottleneck_module(7, 8, 16, 16, 3, (1, 2, 1)),
            inverted_bottleneck_module(9, 4, 12, 6, 5, (2, 1, 1)),
            inverted_bottleneck_module(8, 8, 12, 8, 3, (1, 1, 2)), inverted_bottleneck_module(4, 8, 16, 8, 7),
            inverted_bottleneck_module(6, 5, 14, 5, 3), padded_block()]


# --- detection -------------------------------------------------------------------------------------------

SHARED_BLOCKS = {"mlperftiny__kws_ref_model": 2, "mlperftiny__str_ww_ref_model": 2, "mlperftiny__vww_96_int8": 6,
                 "tflm__person_detect": 6, "tinyengine__mcunetv2_large": 3, "tinyengine__vww": 14}


def _shared_models() -> list[str]:
    skip = ("tflm__dtln_noise_suppression", "tflm__keyword_scrambled_8bit", "tflm__mnist_lstm_int8")
    return sorted(p.stem for p in MODELS.glob("*.tflite") if p.stem not in skip)


@pytest.mark.parametrize("name", _shared_models())
def test_detection_in_shared_models(name: str) -> None:
    """tinyengine's PAD-before-depthwise blocks are found (their SE blocks are not: the depthwise output has
    two readers); MobileNetV1 (vww_96, person_detect) and DS-CNN (kws) chain 1x1 -> depthwise -> 1x1 too."""
    graph = read_tflite(MODELS / f"{name}.tflite")
    blocks = find_fusable_blocks(graph)
    assert len(blocks) == SHARED_BLOCKS.get(name, 0)
    if name == "tinyengine__vww":
        assert sum(b.pad is not None for b in blocks) == 3 and sum(b.add is not None for b in blocks) == 8
    ops = [op.index for b in blocks for op in b.ops]
    assert len(ops) == len(set(ops))


def test_detection_in_builder_models() -> None:
    graph = mobilenet_v2(0.35, 32, 10)
    blocks = find_fusable_blocks(graph)
    assert len(blocks) == 16 and sum(b.add is not None for b in blocks) == 10
    for name, args in VMCU_BOTTLENECK_MODULES.items():
        (block,) = find_fusable_blocks(inverted_bottleneck_module(*args))
        assert (block.add is not None) == (args[1] == args[3] and args[5] == (1, 1, 1)), name
    (block,) = find_fusable_blocks(padded_block())
    assert block.pad is not None and block.add is not None and block.add.inputs[1] == block.input


def test_chains_that_do_not_fuse() -> None:
    """A depthwise output with two readers, a dilated depthwise, a multiplier, a 3x3 'project'."""
    b = GraphBuilder(seed=0)
    x = b.input((1, 6, 6, 8), 0.05, 0)
    d = b.depthwise_conv2d(b.conv2d(x, 16, 1), 3)
    b.add(b.conv2d(d, 16, 1), d)
    b.conv2d(b.depthwise_conv2d(b.conv2d(x, 16, 1), 3, dilation=2), 8, 1)
    b.conv2d(b.depthwise_conv2d(b.conv2d(x, 16, 1), 3, depth_multiplier=2), 8, 1)
    b.conv2d(b.depthwise_conv2d(b.conv2d(x, 16, 1), 3), 8, 3)
    assert find_fusable_blocks(b.build("none")) == []


def test_fuse_graph_keeps_tensors() -> None:
    graph = mobilenet_v2(0.35, 32, 10)
    blocks = find_fusable_blocks(graph)
    fused = fuse_graph(graph, blocks, ["cache"] * len(blocks))
    assert fused.tensors is graph.tensors
    assert len(fused.ops) == len(graph.ops) - sum(len(b.ops) - 1 for b in blocks)
    assert [op.index for op in fused.ops] == list(range(len(fused.ops)))
    assert sum(op.type == FUSED_OP for op in fused.ops) == 16
    with pytest.raises(ValueError):
        fuse_graph(graph, blocks, ["fast"] * len(blocks))


# --- loop order, gap, workspace --------------------------------------------------------------------------


@st.composite
def random_blocks(draw: st.DrawFn) -> Graph:
    k = draw(st.sampled_from([1, 2, 3, 5, 7]))
    strides = (draw(st.integers(1, 2)), draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    assume(strides[1] * strides[2] <= k)
    padding = draw(st.sampled_from(["SAME", "VALID"]))
    hw = draw(st.integers(k if padding == "VALID" else 1, 12)) * strides[0]
    b = GraphBuilder(seed=draw(st.integers(0, 9)))
    x = b.input((1, hw, hw + draw(st.integers(0, 3)) * strides[0], draw(st.integers(1, 9))), 0.05, 0)
    e = b.conv2d(x, draw(st.integers(1, 12)), 1, stride=strides[0], activation="NONE")
    d = b.depthwise_conv2d(e, k, stride=strides[1], padding=padding, activation="NONE")
    b.conv2d(d, draw(st.integers(1, 12)), 1, stride=strides[2], activation="NONE")
    graph = b.build("random_block")
    return graph


@settings(max_examples=60, deadline=None)
@given(random_blocks(), st.sampled_from(["recompute", "cache"]))
def test_loop_order_matches_the_checker_replay(graph: Graph, variant: str) -> None:
    """The vectorised loop order (planner, simulation) and the checker's explicit replay read the same input
    pixels at the same steps; "cache" expands each needed pixel once and never reads earlier (gap <=)."""
    (block,) = find_fusable_blocks(graph)
    fused = fuse_graph(graph, [block], [variant])
    g = fused_geometry(graph, block)
    reads, _ = access_pattern(fused, fused.ops[0])
    steps, offsets, _ = reads[block.input]
    lows = np.full(g.steps, NO_READ, dtype=np.int64)
    np.minimum.at(lows, steps, offsets)
    assert np.array_equal(lows, input_lows(g, variant))
    assert len(steps) == len(expanded_pixels(g, variant)[0])
    rows, cols = expanded_pixels(g, "cache")[1:]
    assert len(set(zip(rows.tolist(), cols.tolist(), strict=True))) == len(rows)
    assert enumerated_gap(input_lows(g, "cache"), g.out_c) <= enumerated_gap(input_lows(g, "recompute"), g.out_c)
    assert fused_macs(g, "cache") <= fused_macs(g, "recompute")


def test_workspace_and_closed_gaps() -> None:
    """Workspace = (ring + 1) * C_mid: a k x k window for recompute, k rows of E for cache. 3x3 stride 1,
    C_in = C_out = C: the recompute gap is W*C (the window's first column, read at the row's first pixel),
    the cache gap 0 (the residual pixel is the lowest byte read)."""
    graph = inverted_bottleneck_module(*VMCU_BOTTLENECK_MODULES["S1"])
    (block,) = find_fusable_blocks(graph)
    g = fused_geometry(graph, block)
    assert workspace_bytes(g, "recompute") == (3 * 3 + 1) * 48
    assert workspace_bytes(g, "cache") == (3 * 20 + 1) * 48
    assert enumerated_gap(input_lows(g, "recompute"), 16) == 20 * 16
    assert enumerated_gap(input_lows(g, "cache"), 16) == 0
    small = fused_geometry(*(lambda gr: (gr, find_fusable_blocks(gr)[0]))(inverted_bottleneck_module(4, 8, 16, 8, 7)))
    assert (small.ring_h, small.ring_w("recompute"), small.ring_w("cache")) == (4, 4, 4)


# --- checker vs simulation -------------------------------------------------------------------------------


def _moved(graph: Graph, splan: SegmentPlan, bases: dict[int, int], pool: int) -> SegmentPlan:
    return replace_bases(graph, dataclasses.replace(splan, pool_bytes=pool), bases)


def _agree(graph: Graph, splan: SegmentPlan, inputs: list[np.ndarray]) -> bool:
    reference = run_reference(graph, inputs)
    values = simulate_segment_plan(graph, splan, inputs)
    return all(np.array_equal(values[t], reference[t]) for t in values)


@pytest.mark.parametrize("variant", ["recompute", "cache"])
@pytest.mark.parametrize("graph", small_blocks(), ids=lambda g: g.name)
def test_checker_threshold_is_the_fused_gap(graph: Graph, variant: str) -> None:
    """1-byte segments: the output exactly `gap` bytes before the input passes the checker and runs
    bit-exact; one byte closer is rejected and corrupts the output. The plan's pool is max(|Out|, gap + |In|)."""
    splan = plan_segments(graph, segment_bytes=1, fuse=variant)
    check_segment_plan(graph, splan)
    (step,) = splan.steps
    x, y = graph.inputs[0], graph.outputs[0]
    gap = op_schedule(splan.fused_graph, splan.fused_graph.ops[0]).gap(x)
    size_in, size_out = graph.tensors[x].nbytes, graph.tensors[y].nbytes
    assert splan.pool_bytes == max(size_out, gap + size_in)
    assert splan.workspace_bytes == step.workspace_bytes == fused_params(graph, *find_fusable_blocks(graph),
                                                                          variant).workspace_bytes
    inputs = random_inputs(graph, 1, 0)[0]
    pool = splan.pool_bytes + 1
    assert _agree(graph, _moved(graph, splan, {x: gap, y: 0}, pool), inputs)
    check_segment_plan(graph, _moved(graph, splan, {x: gap, y: 0}, pool))
    if gap > 0:
        tight = _moved(graph, splan, {x: gap - 1, y: 0}, pool)
        with pytest.raises(PlanError, match="op 0 FUSED_INVERTED_BOTTLENECK step .* overwritten by"):
            check_segment_plan(graph, tight)
        assert not _agree(graph, tight, inputs)


@pytest.mark.parametrize("fuse", ["recompute", "cache", "auto"])
def test_mobilenet_v2_fused_is_bit_exact(fuse: str) -> None:
    """Every block of MobileNetV2 fused; moving any fused output one segment closer to its input is rejected."""
    graph = mobilenet_v2(0.35, 32, 10)
    splan = plan_segments(graph, fuse=fuse)
    check_segment_plan(graph, splan)
    inputs = random_inputs(graph, 1, 1)[0]
    assert _agree(graph, splan, inputs)
    assert splan.pool_bytes + splan.workspace_bytes < plan_segments(graph).pool_bytes
    if fuse != "recompute":
        return
    fused = splan.fused_graph
    rejected = 0
    for s in splan.steps:
        if fused.ops[s.op].type == FUSED_OP and s.chained_input >= 0 and s.gap_bytes == s.min_gap_bytes > 0:
            bases = splan.plan.offsets()
            bases[s.output] = (bases[s.output] + s.segment_bytes) % splan.pool_bytes
            with pytest.raises(PlanError, match=f"op {s.op} FUSED_INVERTED_BOTTLENECK"):
                check_segment_plan(graph, replace_bases(graph, splan, bases))
            rejected += 1
    assert rejected >= 5


def test_plan_rejects_unknown_fuse_option() -> None:
    with pytest.raises(PlanError, match="fuse must be one of"):
        plan_segments(padded_block(), fuse="fast")


# --- the paper's modules ---------------------------------------------------------------------------------

# vMCU Table 2, vMCU column (KiB, with a ~4-8 KiB runtime baseline); S2 is S1's twin.
PAPER_KIB = {"S1": 13.9, "S2": 13.9, "S3": 11.8, "S4": 10.8, "S5": 10.6, "S6": 9.7, "S7": 11.5, "S8": 10.2}
PAPER_B_MAX_KIB = 102.7
# pool + workspace bytes: (unfused, fused recompute, fused cache)
MODULE_BYTES = {
    "S1": (26688, 7200, 9328), "S2": (26688, 7200, 9328), "S3": (16128, 4000, 6864), "S4": (15840, 3840, 6120),
    "S5": (8680, 3600, 4840), "S6": (7344, 3360, 4272), "S7": (7584, 5952, 5664), "S8": (6240, 4992, 4704),
    "B1": (125344, 93958, 97168), "B2": (186984, 63856, 76760), "B3": (189600, 32480, 41616),
    "B4": (196800, 37088, 55696), "B5": (129856, 49488, 60608), "B6": (155120, 33056, 48656),
    "B7": (75360, 15792, 24936), "B8": (75360, 15792, 24936), "B9": (58200, 12816, 19656),
    "B10": (42960, 18160, 23560), "B11": (28320, 9880, 13800), "B12": (25800, 15160, 20440),
    "B13": (43920, 19392, 24528), "B14": (38160, 8736, 13968), "B15": (35136, 8736, 15600),
    "B16": (31296, 22944, 21216), "B17": (20352, 7872, 10752),
}


@pytest.mark.parametrize("name", list(VMCU_BOTTLENECK_MODULES))
def test_paper_modules(name: str) -> None:
    """Fused, both variants are at or below the paper's vMCU figures (which also hold a runtime); "auto"
    takes the smaller. Cache never recomputes; recompute costs extra expand MACs."""
    graph = inverted_bottleneck_module(*VMCU_BOTTLENECK_MODULES[name])
    sram = []
    for fuse in ("none", "recompute", "cache"):
        splan = plan_segments(graph, fuse=fuse)
        check_segment_plan(graph, splan)
        sram.append(splan.pool_bytes + splan.workspace_bytes)
    assert tuple(sram) == MODULE_BYTES[name]
    limit = PAPER_KIB.get(name, PAPER_B_MAX_KIB) * KIB
    assert max(sram[1:]) <= limit
    auto = plan_segments(graph, fuse="auto")
    assert auto.pool_bytes + auto.workspace_bytes == min(sram)
    (block,) = find_fusable_blocks(graph)
    g = fused_geometry(graph, block)
    assert fused_macs(g, "cache") == unfused_macs(graph, block) < fused_macs(g, "recompute")


# --- shared models -------------------------------------------------------------------------------------------

# pool + workspace bytes: (unfused, fuse="auto")
SHARED_BYTES = {"mlperftiny__kws_ref_model": (8448, 8448), "mlperftiny__str_ww_ref_model": (3712, 3712),
                "mlperftiny__vww_96_int8": (37120, 28160), "tflm__person_detect": (37120, 19584),
                "tinyengine__mcunetv2_large": (1256256, 605760), "tinyengine__vww": (85440, 81264)}


@pytest.mark.parametrize("name", sorted(SHARED_BYTES))
def test_shared_models_auto(name: str) -> None:
    graph = read_tflite(MODELS / f"{name}.tflite")
    plans = [plan_segments(graph), plan_segments(graph, fuse="auto")]
    for splan in plans:
        check_segment_plan(graph, splan)
    assert tuple(p.pool_bytes + p.workspace_bytes for p in plans) == SHARED_BYTES[name]


# --- the C kernel --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lib(tmp_path_factory: pytest.TempPathFactory) -> ctypes.CDLL:
    out = tmp_path_factory.mktemp("fused") / "libfused.so"
    subprocess.run(["gcc", "-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", "-shared", "-fPIC",
                    f"-I{include_dir()}", str(kernel_dir() / "seg" / "fused_ib.c"), "-o", str(out)], check=True)
    return ctypes.CDLL(str(out))


class View(ctypes.Structure):
    _fields_ = [("head", ctypes.c_void_p), ("tail", ctypes.c_void_p), ("split", ctypes.c_int32)]


class FusedParamsC(ctypes.Structure):
    _fields_ = [("expand", ctypes.c_void_p), ("depthwise", ctypes.c_void_p), ("project", ctypes.c_void_p),
                ("add", ctypes.c_void_p), ("residual_first", ctypes.c_int32), ("cache", ctypes.c_int32),
                ("ring_h", ctypes.c_int32), ("ring_w", ctypes.c_int32)]


def _struct(op_type: str, params: object, keep: list) -> ctypes.c_void_p:
    """A ctypes copy of a sub-op's params struct (vmcu_kernels.h), kept alive in `keep`."""
    binding = kernel_binding(op_type, params)
    kinds = {"int": ctypes.c_int32, "table": ctypes.POINTER(ctypes.c_int32)}
    fields = STRUCTS[binding.struct]
    members = [(f.name, ctypes.c_int32 * f.length if f.kind == "array" else kinds[f.kind]) for f in fields]
    s = type(binding.struct, (ctypes.Structure,), {"_fields_": members})()
    for f in fields:
        v = binding.values[f.name]
        if f.kind == "table":
            table = (ctypes.c_int32 * len(v))(*v)
            keep.append(table)
            setattr(s, f.name, ctypes.cast(table, ctypes.POINTER(ctypes.c_int32)))
        else:
            setattr(s, f.name, (ctypes.c_int32 * f.length)(*v) if f.kind == "array" else v)
    keep.append(s)
    return ctypes.cast(ctypes.pointer(s), ctypes.c_void_p)


def run_fused_c(lib: ctypes.CDLL, graph: Graph, splan: SegmentPlan, x: np.ndarray, guard: int = 16) -> np.ndarray:
    """Run the plan's single fused step in C on a pool holding `x`; return the pool afterwards. The workspace
    is exactly `workspace_bytes` long, followed by guard bytes that must stay untouched."""
    fused = splan.fused_graph
    op = fused.ops[0]
    block = op.options["block"]
    p: FusedIBParams = fused_params(graph, block, op.options["variant"])
    keep: list = []
    cp = FusedParamsC(_struct("CONV_2D", p.expand, keep), _struct("DEPTHWISE_CONV_2D", p.depthwise, keep),
                      _struct("CONV_2D", p.project, keep), _struct("ADD", p.add, keep) if p.add else None,
                      int(p.residual_first), int(p.cache), p.ring_h, p.ring_w)
    size, bases = splan.pool_bytes, splan.plan.offsets()
    pool = np.full(size, FILL, dtype=np.uint8)
    pool[(bases[block.input] + np.arange(x.size)) % size] = x.reshape(-1).view(np.uint8)
    workspace = np.full(p.workspace_bytes + guard, 0x5A, dtype=np.uint8)
    consts = [None if t < 0 else np.ascontiguousarray(graph.tensors[t].data) for t in block.constants()]
    base = pool.ctypes.data

    def view(b: int) -> View:
        return View(base + b, base, size - b)

    lib.vmcu_seg_fused_ib_s8(ctypes.byref(cp), view(bases[block.input]),
                             *[None if c is None else c.ctypes.data_as(ctypes.c_void_p) for c in consts],
                             view(bases[block.output]), workspace.ctypes.data_as(ctypes.c_void_p), None)
    assert (workspace[p.workspace_bytes:] == 0x5A).all()
    return pool


def _rotated(graph: Graph, splan: SegmentPlan, shift: int) -> SegmentPlan:
    return replace_bases(graph, splan, {t: (b + shift) % splan.pool_bytes for t, b in splan.plan.offsets().items()})


@pytest.mark.parametrize("variant", ["recompute", "cache"])
@pytest.mark.parametrize("graph", small_blocks(), ids=lambda g: g.name)
def test_c_kernel_on_the_pool(lib: ctypes.CDLL, graph: Graph, variant: str) -> None:
    """Bit-exact with the reference at the planned (tight) gap, wherever the pool's wrap falls (1-byte
    segments, so pixels straddle it); with the output one byte too close, bit-exact with the simulation's
    corrupted output: the C kernel reads and stores exactly when the loop order says. Nothing outside the
    output and the workspace is written."""
    splan = plan_segments(graph, segment_bytes=1, fuse=variant)
    x, y = graph.inputs[0], graph.outputs[0]
    inputs = random_inputs(graph, 1, 2)[0]
    expected = run_reference(graph, inputs)[y].reshape(-1).view(np.uint8)
    size_out = graph.tensors[y].nbytes
    for shift in sorted({0, 1, splan.pool_bytes // 3, splan.pool_bytes - 5}):
        plan = _rotated(graph, splan, shift)
        pool = run_fused_c(lib, graph, plan, inputs[0])
        where = (plan.plan.offsets()[y] + np.arange(size_out)) % plan.pool_bytes
        assert np.array_equal(pool[where], expected)
        before = np.full(plan.pool_bytes, FILL, dtype=np.uint8)
        before[(plan.plan.offsets()[x] + np.arange(inputs[0].size)) % plan.pool_bytes] = inputs[0].reshape(-1).view(
            np.uint8)
        untouched = np.ones(plan.pool_bytes, dtype=bool)
        untouched[where] = False
        assert np.array_equal(pool[untouched], before[untouched])
    gap = (splan.plan.offsets()[x] - splan.plan.offsets()[y]) % splan.pool_bytes
    if gap > 0:
        tight = _moved(graph, splan, {x: gap - 1, y: 0}, splan.pool_bytes + 1)
        pool = run_fused_c(lib, graph, tight, inputs[0])
        simulated = simulate_segment_plan(graph, tight, inputs)[y].reshape(-1).view(np.uint8)
        assert np.array_equal(pool[:size_out], simulated) and not np.array_equal(simulated, expected)


def test_c_kernel_paper_module(lib: ctypes.CDLL) -> None:
    """S1 with the planner's segments, both variants: bit-exact with the reference."""
    graph = inverted_bottleneck_module(*VMCU_BOTTLENECK_MODULES["S1"])
    inputs = random_inputs(graph, 1, 3)[0]
    expected = run_reference(graph, inputs)[graph.outputs[0]].reshape(-1).view(np.uint8)
    for variant in ("recompute", "cache"):
        splan = plan_segments(graph, fuse=variant)
        pool = run_fused_c(lib, graph, splan, inputs[0])
        y = splan.plan.offsets()[graph.outputs[0]]
        assert np.array_equal(pool[(y + np.arange(expected.size)) % splan.pool_bytes], expected)


def _c_array(name: str, data: np.ndarray) -> str:
    ctype = {"int8": "int8_t", "int32": "int32_t"}[data.dtype.name]
    return f"static const {ctype} {name}[] = {{{', '.join(str(int(v)) for v in data.reshape(-1))}}};\n"


def _arm_program(graph: Graph, plans: list[SegmentPlan]) -> str:
    """A Cortex-M program running the fused kernel once per plan on a fresh pool holding the input, and
    writing each pool out afterwards; it fails if the kernel writes past its scratch or the largest plan's
    workspace (each plan's own is checked by the portable kernel's test)."""
    (block,) = find_fusable_blocks(graph)
    x = graph.tensors[block.input]
    consts = block.constants()
    parts = ['#include <string.h>\n#include "vmcu_platform.h"\n#include "vmcu_seg.h"\n']
    parts += [_c_array(f"k{i}", graph.tensors[t].data) for i, t in enumerate(consts) if t >= 0]
    args = ", ".join(f"k{i}" if t >= 0 else "NULL" for i, t in enumerate(consts))
    pool = max(p.pool_bytes for p in plans)
    scratch = max(kernel_scratch_bytes(fused_params(graph, block, v), "arm") for v in ("recompute", "cache"))
    workspace = max(p.workspace_bytes for p in plans)
    calls = []
    for j, splan in enumerate(plans):
        p = fused_params(graph, block, splan.fused_graph.ops[0].options["variant"])
        for name, op_type, params in (("e", "CONV_2D", p.expand), ("d", "DEPTHWISE_CONV_2D", p.depthwise),
                                      ("p", "CONV_2D", p.project), ("a", "ADD", p.add)):
            if params is not None:
                parts.append(c_definition(kernel_binding(op_type, params), f"p{j}{name}"))
        add = f"&p{j}a" if p.add else "NULL"
        parts.append(f"static const vmcu_fused_ib_params_t f{j} = {{&p{j}e, &p{j}d, &p{j}p, {add}, "
                     f"{int(p.residual_first)}, {int(p.cache)}, {p.ring_h}, {p.ring_w}}};\n")
        bases, size = splan.plan.offsets(), splan.pool_bytes
        calls.append(f"""    memset(POOL, {FILL - 256}, sizeof POOL);
    memset(WS, 0x5A, sizeof WS);
    memset(SCRATCH, 0x5A, sizeof SCRATCH);
    for (int32_t i = 0; i < {x.nbytes}; ++i) POOL[({bases[block.input]} + i) % {size}] = IN[i];
    vmcu_seg_fused_ib_s8(&f{j}, vmcu_seg_src(POOL, {size}, {bases[block.input]}), {args},
                         vmcu_seg_dst(POOL, {size}, {bases[block.output]}), WS, (int8_t *)SCRATCH);
    for (int32_t i = 0; i < GUARD; ++i) {{
        if (WS[{workspace} + i] != 0x5A || ((int8_t *)SCRATCH)[{kernel_scratch_bytes(p, "arm")} + i] != 0x5A) {{
            vmcu_fail("overflow");
        }}
    }}
    vmcu_write_output(POOL, {size});
""")
    parts.append(f"#define GUARD 8\nstatic int8_t IN[{x.nbytes}], POOL[{pool}], WS[{workspace} + GUARD];\n"
                 f"static int32_t SCRATCH[{(scratch + 3) // 4} + GUARD];\n")
    return "".join(parts) + "int vmcu_main(void) {\n    vmcu_read_input(IN, sizeof IN);\n" + "".join(calls) + \
        "    return 0;\n}\n"


def wide_blocks() -> list[Graph]:
    """Blocks whose output rows are wide enough for the DSP kernel's row-wise depthwise ("cache"): residual
    with C_mid 16 (the one-pixel project loops), depthwise stride 2 with channel counts that are not
    multiples of 4."""
    return [inverted_bottleneck_module(9, 8, 16, 8, 3), inverted_bottleneck_module(17, 5, 14, 6, 3, (1, 2, 1))]


@pytest.mark.skipif(arm_toolchain_missing() is not None, reason=str(arm_toolchain_missing()))
def test_exact_path_block_takes_the_exact_path() -> None:
    """exact_path_block's depthwise has the channels it promises: two shifts >= 0 and two biases a few taps
    from +-2^30."""
    graph = exact_path_block()
    (block,) = find_fusable_blocks(graph)
    p = op_params(graph, block.depthwise)
    assert p.output_shift[6] >= 0 and p.output_shift[17] >= 0
    assert sum(s >= 0 for s in p.output_shift) == 2
    bias = graph.tensors[block.depthwise.inputs[2]].data
    assert [2**30 - abs(int(bias[ch])) for ch in (1, 16)] == [7, 9]


@pytest.mark.parametrize("graph", small_blocks()[1:] + wide_blocks() + [exact_path_block()], ids=lambda g: g.name)
def test_arm_kernel_on_cortex_m4(lib: ctypes.CDLL, graph: Graph, tmp_path: Path) -> None:
    """The DSP kernel on emulated Cortex-M4 leaves every pool byte as the portable kernel does (both
    variants, pools wrapping anywhere, channel counts that are not multiples of 4, narrow and wide rows)."""
    inputs = random_inputs(graph, 1, 5)[0]
    plans = []
    for variant in ("recompute", "cache"):
        splan = plan_segments(graph, segment_bytes=1, fuse=variant)
        plans += [_rotated(graph, splan, shift) for shift in sorted({0, splan.pool_bytes // 2, splan.pool_bytes - 3})]
    (tmp_path / "main.c").write_text(_arm_program(graph, plans))
    target = get_target("cortex-m4")
    sources = [tmp_path / "main.c", *(kernel_dir() / f for f in ("seg/fused_ib_arm.c", "arm/depthwise_conv_2d.c"))]
    binary = build_program(target, None, sources, [include_dir(), kernel_dir() / "arm"], tmp_path / "build")
    expected = b"".join(run_fused_c(lib, graph, plan, inputs[0]).tobytes() for plan in plans)
    result = run_program(target, binary, np.ascontiguousarray(inputs[0]).tobytes(), len(expected))
    assert result.output == expected
