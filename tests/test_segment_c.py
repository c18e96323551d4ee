"""Segment plans (vMCU) as C: every shared model runs bit-exact with the reference through the circular pool,
on the host (portable kernels, ASan + UBSan) and on emulated Cortex-M4 (DSP kernels), in an arena of exactly
the plan's pool and workspace plus kernel scratch; and a plan one segment short of a gap, which the checker
rejects, does give wrong results in C, so the checker's verdict is the kernels' reality. Every segment
kernel also runs alone on single-op cases whose input or output straddles the pool end at a byte that
splits pixels and rows, for op variants the models lack: the portable ones through ctypes, the DSP variant
in one Cortex-M4 program."""

from __future__ import annotations

import ctypes
import dataclasses
import math
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from vmcu import driver
from vmcu.codegen import segment as segment_codegen
from vmcu.codegen.emit import emit_c
from vmcu.codegen.program import CProgram
from vmcu.codegen.segment import segment_buffers
from vmcu.errors import BuildError, PlanError
from vmcu.frontend.tflite import NUMPY_DTYPES
from vmcu.ir.graph import NO_TENSOR, Graph, Op, Quant, Tensor
from vmcu.ir.params import op_params
from vmcu.kernels import STRUCTS, include_dir, kernel_dir, segment_sources
from vmcu.kernels.segbind import SegBinding, segment_binding
from vmcu.plan.segment import SegmentPlan, SegmentStep, replace_bases
from vmcu.plan.segment_check import check_segment_plan
from vmcu.plan.segment_gap import unit_bytes
from vmcu.reference.executor import random_inputs
from vmcu.reference.kernels import REFERENCE_KERNELS
from vmcu.run.toolchain import arm_toolchain_missing
from vmcu.run.verify import RunReport, build_compiled, verify_program
from vmcu.targets import get_target

MODELS = Path(__file__).resolve().parents[2] / "shared" / "models"
SUPPORTED = [
    "mlperftiny__ad01_int8", "mlperftiny__ic_pretrainedResnet_large_int8",
    "mlperftiny__ic_resnet8_pretrainedResnet_quant", "mlperftiny__kws_ref_model", "mlperftiny__str_ww_ref_model",
    "mlperftiny__vww_96_int8", "tflm__hello_world_int8", "tflm__micro_speech_quantized", "tflm__person_detect",
    "tinyengine__mcunetv2_large", "tinyengine__vww",
]
needs_arm = pytest.mark.skipif(arm_toolchain_missing() is not None, reason=str(arm_toolchain_missing()))


def run(graph: Graph, program: CProgram, target_name: str, work: Path, inputs: int = 1) -> RunReport:
    target = get_target(target_name)
    binary = build_compiled(program, target, None, work, sanitize=target.is_host)
    return verify_program(graph, program, binary, target, None, random_inputs(graph, inputs, seed=5))


def compile_segment(model: str, kernels: str) -> tuple[Graph, SegmentPlan, CProgram]:
    graph = driver.load_model(MODELS / f"{model}.tflite")
    splan, program = driver.compile_graph(graph, "segment", kernels)
    assert isinstance(splan, SegmentPlan)
    return graph, splan, program


def assert_arena_is_the_plan(graph: Graph, splan: SegmentPlan, report: RunReport) -> None:
    """Arena = pool + workspace, then at the next 4-byte boundary the largest kernel buffers (scratch, and the
    stage of a kernel whose unit does not fit the workspace) of the calls that find no free run of pool
    bytes at their step; the others' buffers lie in the pool and pass the checker's replay."""
    assert report.plan_bytes == splan.pool_bytes + splan.workspace_bytes
    buffers, bindings = segment_buffers(graph, splan, report.kernels)
    needs = {op: b.needs(splan.workspace_bytes) for op, b in bindings.items()}
    assert all(needs[op] == n for op, (_, n) in buffers.in_pool.items())
    assert report.scratch_bytes == max((n for op, n in needs.items() if op not in buffers.in_pool), default=0)
    check_segment_plan(graph, splan, buffers.in_pool)
    padded = -(-report.plan_bytes // 4) * 4 if report.scratch_bytes else report.plan_bytes
    assert report.arena_bytes == padded + report.scratch_bytes


@pytest.mark.parametrize("model", SUPPORTED)
def test_host_bit_exact_with_sanitizers(model: str, tmp_path: Path) -> None:
    graph, splan, program = compile_segment(model, "ref")
    report = run(graph, program, "host", tmp_path)
    assert report.bit_exact, report.mismatches
    assert_arena_is_the_plan(graph, splan, report)


@needs_arm
@pytest.mark.qemu
@pytest.mark.parametrize("model", SUPPORTED)
def test_cortex_m4_bit_exact_dsp_kernels(model: str, tmp_path: Path) -> None:
    graph, splan, program = compile_segment(model, "arm")
    report = run(graph, program, "cortex-m4", tmp_path)
    assert report.bit_exact, report.mismatches
    assert_arena_is_the_plan(graph, splan, report)
    assert report.ram_bytes >= report.arena_bytes
    assert {c.op for c in report.per_op} == set(splan.plan.order)
    assert report.instructions and sum(c.instructions for c in report.per_op) <= report.instructions


def test_cli_run_segment(capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from vmcu.cli import main

    assert main(["run", str(MODELS / "tflm__hello_world_int8.tflite"), "--strategy", "segment", "--target", "host",
                 "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    splan = driver.plan_memory(driver.load_model(MODELS / "tflm__hello_world_int8.tflite"), "segment")
    assert payload["bit_exact"] and payload["strategy"] == "segment"
    assert payload["plan_bytes"] == splan.pool_bytes + splan.workspace_bytes


def test_output_across_the_pool_end_is_rotated_out() -> None:
    """MLPerf Tiny AD's plan puts the graph output across the pool end: the program rotates the pool after
    the last op and hands the output out flat (its bit-exactness is part of the model tests above)."""
    graph, splan, program = compile_segment("mlperftiny__ad01_int8", "ref")
    out = graph.outputs[0]
    assert splan.plan.offsets()[out] + graph.tensors[out].nbytes > splan.pool_bytes
    assert "vmcu_seg_rotate(ARENA, POOL_BYTES" in program.files[f"{program.name}.c"]


def test_rotate_turns_the_pool_for_every_length_and_shift(seglib: ctypes.CDLL) -> None:
    """vmcu_seg_rotate (word-wise reversals): byte x ends at x - shift mod pool for every pool of 1-40 bytes
    and every shift, odd lengths and shifts included, at an odd address."""
    rng = np.random.default_rng(1)
    for n in range(1, 41):
        for shift in range(n + 1):
            data = rng.integers(0, 256, n + 1, dtype=np.uint8)
            buf = (ctypes.c_uint8 * (n + 1)).from_buffer_copy(data.tobytes())
            seglib.vmcu_seg_rotate(ctypes.byref(buf, 1), ctypes.c_int32(n), ctypes.c_int32(shift))
            got = np.frombuffer(bytes(buf), dtype=np.uint8)
            assert got[0] == data[0] and bytes(got[1:]) == np.roll(data[1:], -shift).tobytes(), (n, shift)


def test_gap_one_segment_short_is_rejected_and_wrong_in_c(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """KWS's first depthwise layer overlaps its output with its input at the least gap, 6 segments. One
    segment less: the checker names the op, and the portable kernels (which store pixel by pixel, exactly
    the checker's model), compiled past the code generator's own check, read bytes their own output
    overwrote."""
    graph = driver.load_model(MODELS / "mlperftiny__kws_ref_model.tflite")
    splan = driver.plan_memory(graph, "segment")
    step = next(s for s in splan.steps if s.op_type == "DEPTHWISE_CONV_2D" and s.chained_input >= 0)
    assert step.gap_bytes == step.min_gap_bytes > step.segment_bytes
    bases = splan.plan.offsets()
    bases[step.output] = (bases[step.output] + step.segment_bytes) % splan.pool_bytes
    short = replace_bases(graph, splan, bases)
    assert short.steps[step.op].gap_bytes == step.gap_bytes - step.segment_bytes
    with pytest.raises(PlanError, match=rf"op {step.op} DEPTHWISE_CONV_2D .*\(its own output"):
        check_segment_plan(graph, short)
    with pytest.raises(BuildError, match=rf"op {step.op} DEPTHWISE_CONV_2D .*\(its own output"):
        emit_c(graph, short, variant="ref")
    monkeypatch.setattr(segment_codegen, "check_segment_plan", lambda *args: None)
    report = run(graph, emit_c(graph, short, variant="ref"), "host", tmp_path)
    assert not report.bit_exact


@needs_arm
@pytest.mark.qemu
def test_scratch_in_the_pool_is_checked_and_wrong_in_c(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """ResNet-8's DSP calls keep their scratch in pool bytes no tensor holds during their step (the arena
    then has only the rest: 1,224 B, not the 2,568 B of the largest call). Moved over a residual that a
    later op reads, the checker names that read, and the program built anyway gives wrong output; moved
    over the op's own output, the checker refuses it outright."""
    graph = driver.load_model(MODELS / "mlperftiny__ic_resnet8_pretrainedResnet_quant.tflite")
    splan = driver.plan_memory(graph, "segment")
    buffers, bindings = segment_buffers(graph, splan, "arm")
    assert max(b.needs(splan.workspace_bytes) for b in bindings.values()) == 2_568
    assert buffers.scratch_bytes == 1_224 and len(buffers.in_pool) == 9
    position, step, live = next((i, s, p) for i, s in enumerate(splan.steps) for p in splan.plan.placements
                                if s.op in buffers.in_pool and p.first_use < i < p.last_use and p.tensor not in s.inputs
                                and p.offset + buffers.in_pool[s.op][1] <= splan.pool_bytes)
    n = buffers.in_pool[step.op][1]
    reader = next(s.op for s in splan.steps[position + 1:] if live.tensor in s.inputs)
    bad = dataclasses.replace(buffers, in_pool={**buffers.in_pool, step.op: (live.offset, n)})
    with pytest.raises(PlanError, match=rf"op {reader} .* reads tensor {live.tensor} .* overwritten by kernel scratch"):
        check_segment_plan(graph, splan, bad.in_pool)
    out_base = splan.plan.offsets()[step.output]
    with pytest.raises(PlanError, match=rf"op {step.op} .* kernel scratch .* overlaps its output"):
        check_segment_plan(graph, splan, {step.op: (min(out_base, splan.pool_bytes - n), n)})
    monkeypatch.setattr(segment_codegen, "segment_buffers", lambda *args: (bad, bindings))
    report = run(graph, emit_c(graph, splan, variant="arm"), "cortex-m4", tmp_path)
    assert not report.bit_exact


# --- single ops across the pool end (portable kernels through ctypes) -------------------------------------


class View(ctypes.Structure):
    _fields_ = [("head", ctypes.c_void_p), ("tail", ctypes.c_void_p), ("split", ctypes.c_int32)]


@pytest.fixture(scope="module")
def seglib(tmp_path_factory: pytest.TempPathFactory) -> ctypes.CDLL:
    out = tmp_path_factory.mktemp("seg") / "libvmcu_seg.so"
    cmd = ["gcc", "-std=c11", "-O2", "-Wall", "-Wextra", "-Werror", "-shared", "-fPIC", f"-I{include_dir()}",
           f"-I{kernel_dir() / 'ref'}", *map(str, segment_sources("ref")), "-o", str(out)]
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    return ctypes.CDLL(str(out))


def params_struct(struct: str, values: dict, keep: list) -> ctypes.Structure:
    """A ctypes instance of a params struct (vmcu_kernels.h); tables are kept alive in `keep`."""
    kinds = {"int": ctypes.c_int32, "double": ctypes.c_double, "table": ctypes.POINTER(ctypes.c_int32)}
    members = [(f.name, ctypes.c_int32 * f.length if f.kind == "array" else (ctypes.c_int32 * 2) * f.length
                if f.kind == "pairs" else kinds[f.kind]) for f in STRUCTS[struct]]
    instance = type(struct, (ctypes.Structure,), {"_fields_": members})()
    for f in STRUCTS[struct]:
        v = values[f.name]
        if f.kind == "table":
            keep.append((ctypes.c_int32 * max(len(v), 1))(*v))
            v = ctypes.cast(keep[-1], ctypes.POINTER(ctypes.c_int32))
        elif f.kind == "pairs":
            v = ((ctypes.c_int32 * 2) * f.length)(*[(ctypes.c_int32 * 2)(*pair) for pair in v])
        elif f.kind == "array":
            v = (ctypes.c_int32 * f.length)(*v)
        setattr(instance, f.name, v)
    return instance


@dataclass(frozen=True)
class Placement:
    """One op laid out in a pool whose end the first input (wrap="input") or the output straddles near its
    middle (at a byte that splits pixels and rows): bases, the pool image holding the inputs, the call."""

    pool: int
    bases: dict[int, int]
    image: np.ndarray
    binding: SegBinding

    def output(self, graph: Graph, op: Op, memory: np.ndarray) -> bytes:
        out = graph.tensors[op.outputs[0]]
        return memory[(self.bases[out.index] + np.arange(out.nbytes)) % self.pool].tobytes()


def place_across_wrap(graph: Graph, op: Op, arrays: list[np.ndarray | None], wrap: str, variant: str) -> Placement:
    acts = [t for t in dict.fromkeys(op.inputs) if t != NO_TENSOR and not graph.tensors[t].is_const]
    order = [op.outputs[0], *acts] if wrap == "output" else [*acts, op.outputs[0]]
    sizes = {t: graph.tensors[t].nbytes for t in order}
    pool = sum(sizes.values()) + 5
    bases, at = {}, pool - sizes[order[0]] // 2 - 1
    for t in order:
        bases[t] = at % pool
        at += sizes[t]
    image = np.zeros(pool, np.uint8)
    for t, a in zip(op.inputs, arrays, strict=True):
        if t in bases:
            raw = np.ascontiguousarray(a).reshape(-1).view(np.uint8)
            image[(bases[t] + np.arange(raw.size)) % pool] = raw
    out = graph.tensors[op.outputs[0]]
    unit = unit_bytes(graph, op)
    step = SegmentStep(op.index, op.type, op.inputs, tuple(bases.get(t, -1) for t in op.inputs), out.index,
                       bases[out.index], -1, 0, 0, 1, unit, out.nbytes // unit, pool, 0)
    return Placement(pool, bases, image, segment_binding(graph, op, step, variant))


def run_ctypes(lib: ctypes.CDLL, graph: Graph, op: Op, arrays: list[np.ndarray | None], wrap: str) -> bytes:
    """The portable seg kernel on a placement across the wrap, called through ctypes."""
    placed = place_across_wrap(graph, op, arrays, wrap, "ref")
    b = placed.binding
    memory = placed.image.copy()
    keep: list = [memory]

    def view(t: int, data: np.ndarray | None) -> View:
        if t in placed.bases:
            return View(memory.ctypes.data + placed.bases[t], memory.ctypes.data, placed.pool - placed.bases[t])
        keep.append(np.ascontiguousarray(data))
        return View(keep[-1].ctypes.data, keep[-1].ctypes.data, 2**31 - 1)

    def buffer(n: int) -> ctypes.c_void_p | None:
        keep.append(np.zeros(n // 4 + 1, np.uint32))
        return ctypes.c_void_p(keep[-1].ctypes.data) if n else None

    args: list = [ctypes.byref(params_struct(b.params.struct, b.params.values, keep))]
    for role in b.args:
        if role == "output":
            args.append(view(op.outputs[0], None))
        elif role in ("stage", "scratch"):
            args.append(buffer(b.stage_bytes if role == "stage" else b.scratch_bytes))
        elif role == "views":
            keep.append((View * len(op.inputs))(*[view(t, a) for t, a in zip(op.inputs, arrays, strict=True)]))
            args.append(keep[-1])
        else:
            kind, n = role.split(":")
            a = arrays[int(n)] if int(n) < len(arrays) else None
            if kind == "view":
                args.append(view(op.inputs[int(n)], a))
            else:
                keep.append(np.ascontiguousarray(a) if a is not None else None)
                args.append(ctypes.c_void_p(keep[-1].ctypes.data) if a is not None else None)
    getattr(lib, b.symbol)(*args)
    return placed.output(graph, op, memory)


def q(scale: float, zero_point: int = 0) -> Quant:
    return Quant((float(np.float32(scale)),), (zero_point,))


def one_op(op_type: str, inputs: list[tuple], output: tuple, **options: object) -> tuple[Graph, Op]:
    """A one-op graph; each tensor is (shape, dtype, quant[, constant data])."""
    specs = [*inputs, output]
    tensors = tuple(Tensor(i, f"t{i}", tuple(t[0]), t[1], t[2], t[3] if len(t) > 3 else None)
                    for i, t in enumerate(specs))
    op = Op(0, op_type, tuple(range(len(inputs))), (len(inputs),), dict(options))
    graph = Graph(op_type.lower(), tensors, (op,), tuple(i for i, t in enumerate(tensors[:-1]) if t.data is None),
                  (len(inputs),))
    return graph, op


def windowed(op_type: str, h: int, w: int, cin: int, cout: int, k: tuple[int, int], stride: int = 1,
             dilation: int = 1, padding: str = "SAME", mult: int = 1) -> tuple[Graph, Op]:
    """CONV_2D or DEPTHWISE_CONV_2D with per-channel weights and a bias."""
    rng = np.random.default_rng(h * w + cin)
    depthwise = op_type == "DEPTHWISE_CONV_2D"
    cout = cin * mult if depthwise else cout
    fshape = (1, *k, cout) if depthwise else (cout, *k, cin)
    wq = Quant(tuple(float(np.float32(v)) for v in rng.uniform(0.002, 0.02, cout)), (0,) * cout, 3 if depthwise else 0)
    size = [(n - (kk - 1) * dilation - 1) // stride + 1 if padding == "VALID" else -(-n // stride)
            for n, kk in zip((h, w), k, strict=True)]
    taps = k[0] * k[1] * (1 if depthwise else cin)
    options = {"padding": padding, "stride_h": stride, "stride_w": stride, "dilation_h": dilation,
               "dilation_w": dilation, "activation": "NONE", "depth_multiplier": mult}
    return one_op(op_type, [((1, h, w, cin), "int8", q(0.05, -5)),
                            (fshape, "int8", wq, rng.integers(-127, 128, fshape).astype(np.int8)),
                            ((cout,), "int32", None, rng.integers(-3000, 3000, cout).astype(np.int32))],
                  ((1, *size, cout), "int8", q(0.05 * math.sqrt(taps), 3)), **options)


def single_op_cases() -> dict[str, tuple[Graph, Op]]:
    """Op variants the shared models do not all have: dilations, odd channel counts, depth multipliers,
    batches, broadcasts against constants, int16 softmax, float boundaries, data movement."""
    i8 = q(0.05, -2)
    fc_w = np.random.default_rng(3).integers(-127, 128, (5, 37)).astype(np.int8)
    ramp = np.arange(5, dtype=np.int8).reshape(1, 1, 5, 1)
    return {
        "conv 3x3 s2 C3": windowed("CONV_2D", 9, 7, 3, 8, (3, 3), stride=2),
        "conv 1x1 C8": windowed("CONV_2D", 6, 7, 8, 6, (1, 1)),
        "conv 1x1 C12": windowed("CONV_2D", 7, 6, 12, 20, (1, 1)),
        "conv 3x3 C8": windowed("CONV_2D", 5, 7, 8, 12, (3, 3)),
        "conv 3x2 dilated": windowed("CONV_2D", 10, 9, 5, 3, (3, 2), dilation=2, padding="VALID"),
        "conv 5x5 C12": windowed("CONV_2D", 6, 6, 12, 9, (5, 5)),
        "depthwise 3x3": windowed("DEPTHWISE_CONV_2D", 6, 7, 8, 0, (3, 3)),
        "depthwise 5x5 x2": windowed("DEPTHWISE_CONV_2D", 8, 8, 3, 0, (5, 5), mult=2),
        "depthwise dilated": windowed("DEPTHWISE_CONV_2D", 10, 9, 16, 0, (3, 3), dilation=2, padding="VALID"),
        "fully connected": one_op("FULLY_CONNECTED", [((3, 37), "int8", q(0.05, 7)), ((5, 37), "int8", q(0.01), fc_w),
                                                      ((5,), "int32", None, np.arange(5, dtype=np.int32))],
                                  ((3, 5), "int8", q(0.2, -9)), activation="RELU"),
        "average pool": one_op("AVERAGE_POOL_2D", [((2, 7, 9, 5), "int8", i8)], ((2, 4, 5, 5), "int8", i8),
                               padding="SAME", stride_h=2, stride_w=2, filter_h=3, filter_w=3, activation="NONE"),
        "max pool": one_op("MAX_POOL_2D", [((1, 6, 5, 6), "int8", i8)], ((1, 6, 5, 6), "int8", i8),
                           padding="SAME", stride_h=1, stride_w=1, filter_h=3, filter_w=3, activation="RELU6"),
        "add broadcast": one_op("ADD", [((1, 4, 5, 8), "int8", q(0.05, -3)), ((1, 1, 1, 8), "int8", q(0.03, 10))],
                                ((1, 4, 5, 8), "int8", q(0.06, 2)), activation="NONE"),
        "mul constant": one_op("MUL", [((2, 3, 1, 4), "int8", q(0.05, -3)), ((1, 1, 5, 1), "int8", q(0.03, 4), ramp)],
                               ((2, 3, 5, 4), "int8", q(0.02, 1)), activation="NONE"),
        "mean": one_op("MEAN", [((2, 5, 7, 6), "int8", q(0.05, -7)), ((2,), "int32", None, np.array([1, 2], np.int32))],
                       ((2, 1, 1, 6), "int8", q(0.03, 4)), keep_dims=True),
        "softmax": one_op("SOFTMAX", [((3, 4, 10), "int8", q(0.1, 5))], ((3, 4, 10), "int8", q(1 / 256, -128)),
                          beta=1.0),
        "softmax int16": one_op("SOFTMAX", [((3, 4, 10), "int8", q(0.25, 5))],
                                ((3, 4, 10), "int16", q(1 / 65536, -32768)), beta=1.0),
        "logistic": one_op("LOGISTIC", [((4, 64), "int8", q(0.1, 0))], ((4, 64), "int8", q(1 / 256, -128))),
        "quantize": one_op("QUANTIZE", [((3, 50), "int8", q(0.03, 5))], ((3, 50), "int8", q(0.0174, -3))),
        "quantize float": one_op("QUANTIZE", [((3, 50), "float32", None)], ((3, 50), "int8", q(0.0174, -3))),
        "dequantize": one_op("DEQUANTIZE", [((3, 50), "int8", q(0.0174, -3))], ((3, 50), "float32", None)),
        "pad": one_op("PAD", [((1, 3, 4), "int8", i8), ((3, 2), "int32", None, np.array([[0, 1], [1, 2], [3, 0]],
                                                                                            np.int32))],
                      ((2, 6, 7), "int8", i8)),
        "reshape": one_op("RESHAPE", [((2, 3, 4), "int8", i8)], ((6, 4), "int8", i8)),
        "transpose": one_op("TRANSPOSE", [((2, 3, 4, 5), "int8", i8), ((4,), "int32", None,
                                                                     np.array([0, 3, 1, 2], np.int32))],
                            ((2, 5, 3, 4), "int8", i8)),
        "concatenation": one_op("CONCATENATION", [((1, 2, 3, 4), "int8", i8), ((1, 2, 5, 4), "int8", i8)],
                                ((1, 2, 8, 4), "int8", i8), axis=2),
    }


CASES = single_op_cases()


def random_arrays(graph: Graph, op: Op, rng: np.random.Generator) -> list[np.ndarray]:
    """The op's inputs: constants as stored, int8 activations uniform, floats around the quantized range."""
    arrays = []
    for t in (graph.tensors[i] for i in op.inputs):
        if t.is_const:
            arrays.append(np.asarray(t.data))
        elif t.dtype == "float32":
            arrays.append(rng.uniform(-2.5, 2.5, t.shape).astype(np.float32))
        else:
            arrays.append(rng.integers(-128, 128, t.shape).astype(NUMPY_DTYPES[t.dtype]))
    return arrays


def reference(graph: Graph, op: Op, arrays: list[np.ndarray]) -> bytes:
    out = graph.tensors[op.outputs[0]]
    return np.asarray(REFERENCE_KERNELS[op.type](op_params(graph, op), arrays), dtype=NUMPY_DTYPES[out.dtype]).tobytes()


@pytest.mark.parametrize("wrap", ["input", "output"])
@pytest.mark.parametrize("case", list(CASES))
def test_portable_kernel_across_the_pool_end(seglib: ctypes.CDLL, case: str, wrap: str) -> None:
    graph, op = CASES[case]
    arrays = random_arrays(graph, op, np.random.default_rng(7))
    assert run_ctypes(seglib, graph, op, arrays, wrap) == reference(graph, op, arrays)


def c_view(graph: Graph, t: int, name: str, placed: Placement, offset: int, defs: list[str]) -> str:
    """The initializer of a view of tensor t: in the pool image at `offset` of `buf`, or of a constant
    array `name` (defined in `defs`)."""
    data = graph.tensors[t].data
    if data is None:
        base = placed.bases[t]
        return f"{{buf + {offset + base}, buf + {offset}, {placed.pool - base}}}"
    defs.append(f"static const int8_t {name}[] = {{{', '.join(map(str, data.reshape(-1).tolist()))}}};\n")
    return f"{{{name}, {name}, INT32_MAX}}"


def qemu_source(cases: list[tuple[Graph, Op, list, str]]) -> tuple[str, bytes, list[tuple[int, Placement]]]:
    """One Cortex-M program running the DSP variant of every case on its placement: all pool images are read
    into one buffer (each at a different offset mod 4), the kernels run on views of it, and the buffer is
    written back. Returns the source, the input blob and each case's (pool offset, placement)."""
    defs, calls, blob, where = [], [], bytearray(), []
    stage = scratch = 4
    for i, (graph, op, arrays, wrap) in enumerate(cases):
        placed = place_across_wrap(graph, op, arrays, wrap, "arm")
        b = placed.binding
        blob += bytes(-len(blob) % 4 + i % 4)
        offset = len(blob)
        blob += placed.image.tobytes()
        where.append((offset, placed))
        stage, scratch = max(stage, b.stage_bytes), max(scratch, b.scratch_bytes)
        defs.append(b.definition(f"p{i}"))

        args = []
        for role in b.args:
            if role in ("stage", "scratch"):
                args.append(role if (b.stage_bytes if role == "stage" else b.scratch_bytes) else "NULL")
            elif role == "output":
                init = c_view(graph, op.outputs[0], "", placed, offset, defs)
                defs.append(f"static const vmcu_seg_dst_t out{i} = {init};\n")
                args.append(f"out{i}")
            elif role == "views":
                items = ", ".join(c_view(graph, t, f"c{i}_{j}", placed, offset, defs) for j, t in enumerate(op.inputs))
                defs.append(f"static const vmcu_seg_src_t in{i}[] = {{{items}}};\n")
                args.append(f"in{i}")
            else:
                kind, n = role.split(":")
                t = op.inputs[int(n)] if int(n) < len(op.inputs) else NO_TENSOR
                if t == NO_TENSOR:
                    args.append("NULL")
                elif kind == "view":
                    init = c_view(graph, t, f"c{i}_{n}", placed, offset, defs)
                    defs.append(f"static const vmcu_seg_src_t in{i}_{n} = {init};\n")
                    args.append(f"in{i}_{n}")
                else:
                    data = np.asarray(graph.tensors[t].data)
                    ctype = "int32_t" if data.dtype == np.int32 else "int8_t"
                    body = ", ".join(map(str, data.reshape(-1).tolist()))
                    defs.append(f"static const {ctype} c{i}_{n}[] __attribute__((aligned(4))) = {{{body}}};\n")
                    args.append(f"c{i}_{n}")
        calls.append(f"    vmcu_mark({i});\n    {b.symbol}(&p{i}, {', '.join(args)});\n")
    src = ("#include <stdint.h>\n#include \"vmcu_seg.h\"\n#include \"vmcu_platform.h\"\n"
           f"static int8_t buf[{len(blob)}] __attribute__((aligned(4)));\n"
           f"static int8_t stage[{stage}];\nstatic int8_t scratch[{scratch}] __attribute__((aligned(4)));\n"
           + "".join(defs) + "int vmcu_main(void) {\n    (void)stage;\n    (void)scratch;\n"
           "    vmcu_read_input(buf, sizeof buf);\n" + "".join(calls)
           + "    vmcu_mark(-1);\n    vmcu_write_output(buf, sizeof buf);\n    return 0;\n}\n")
    return src, bytes(blob), where


@needs_arm
@pytest.mark.qemu
def test_dsp_kernels_across_the_pool_end(tmp_path: Path) -> None:
    """The DSP conv, depthwise and FC kernels (and the portable rest of the arm variant) on every single-op
    case, input or output across the pool end, in one Cortex-M4 program."""
    from vmcu.run.execute import build_program, run_program

    rng = np.random.default_rng(9)
    cases = [(graph, op, random_arrays(graph, op, rng), wrap) for graph, op in CASES.values()
             for wrap in ("input", "output")]
    src, blob, where = qemu_source(cases)
    (tmp_path / "main.c").write_text(src)
    target = get_target("cortex-m4")
    includes = [include_dir(), kernel_dir() / "ref", kernel_dir() / "arm"]
    binary = build_program(target, None, [*segment_sources("arm"), tmp_path / "main.c"], includes, tmp_path / "build")
    memory = np.frombuffer(run_program(target, binary, blob, len(blob)).output, np.uint8)
    for (graph, op, arrays, wrap), (offset, placed) in zip(cases, where, strict=True):
        want = reference(graph, op, arrays)
        got = placed.output(graph, op, memory[offset:offset + placed.pool])
        assert got == want, f"{graph.name} op {op.type}, {wrap} across the pool end"
