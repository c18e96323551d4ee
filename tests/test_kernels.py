"""The C kernel library against the NumPy reference kernels, bit for bit.

The ref variant is built with host gcc and called through ctypes on random data, for every op of the
shared models and for synthetic single-op graphs (shapes, strides, dilations, paddings, extreme zero
points, clamps), both with separate buffers and with the output overlapping the input at the least gap a
segment plan allows. The same tests rerun in a subprocess against an AddressSanitizer + UBSan build (the
ASan runtime must be preloaded into Python, hence the subprocess; buffers are malloc'ed to their exact
size so overruns are caught). The arm variant must compile cleanly with arm-none-eabi-gcc, and runs on
QEMU's Cortex-M4 (synthetic cases and all of MLPerf Tiny VWW, in place too) with instruction counts.
"""

from __future__ import annotations

import ctypes
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from vmcu.frontend.tflite import NUMPY_DTYPES, read_tflite
from vmcu.ir.graph import Graph, Op, Quant, Tensor
from vmcu.ir.params import op_params
from vmcu.kernels import STRUCTS, KernelBinding, c_definition, include_dir, kernel_binding, kernel_sources
from vmcu.reference.kernels import REFERENCE_KERNELS

MODELS = Path(__file__).resolve().parents[1].parent / "shared" / "models"
SANITIZE = os.environ.get("VMCU_KERNEL_SANITIZE") == "1"
CFLAGS = ["-std=c99", "-O2", "-Wall", "-Wextra", "-Werror"]
SAN_FLAGS = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-fno-omit-frame-pointer"]

# --- building and calling --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lib(tmp_path_factory: pytest.TempPathFactory) -> ctypes.CDLL:
    out = tmp_path_factory.mktemp("kernels") / "libvmcu_kernels.so"
    cmd = ["gcc", *CFLAGS, *(SAN_FLAGS if SANITIZE else []), "-shared", "-fPIC", f"-I{include_dir()}",
           *map(str, kernel_sources("ref")), "-o", str(out)]
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    return ctypes.CDLL(str(out))


_CTYPES = {"int": ctypes.c_int32, "double": ctypes.c_double, "table": ctypes.POINTER(ctypes.c_int32)}


def _struct(binding: KernelBinding, keep: list) -> ctypes.Structure:
    """A ctypes instance of the binding's params struct; tables are kept alive in `keep`."""
    layout = STRUCTS[binding.struct]
    members = []
    for f in layout:
        if f.kind == "array":
            members.append((f.name, ctypes.c_int32 * f.length))
        elif f.kind == "pairs":
            members.append((f.name, (ctypes.c_int32 * 2) * f.length))
        else:
            members.append((f.name, _CTYPES[f.kind]))
    cls = type(binding.struct, (ctypes.Structure,), {"_fields_": members})
    s = cls()
    for f in layout:
        v = binding.values[f.name]
        if f.kind == "table":
            table = (ctypes.c_int32 * max(len(v), 1))(*v)
            keep.append(table)
            setattr(s, f.name, ctypes.cast(table, ctypes.POINTER(ctypes.c_int32)))
        elif f.kind == "pairs":
            setattr(s, f.name, ((ctypes.c_int32 * 2) * f.length)(*[(ctypes.c_int32 * 2)(*pair) for pair in v]))
        elif f.kind == "array":
            setattr(s, f.name, (ctypes.c_int32 * f.length)(*v))
        else:
            setattr(s, f.name, v)
    return s


class _Heap:
    """Exact-size malloc'ed buffers (ASan sees one byte past the end as an overflow)."""

    def __init__(self) -> None:
        self.libc = ctypes.CDLL(None)
        self.libc.malloc.restype = ctypes.c_void_p
        self.libc.free.argtypes = [ctypes.c_void_p]
        self.blocks: list[int] = []

    def put(self, data: np.ndarray | None, nbytes: int | None = None) -> ctypes.c_void_p:
        n = data.nbytes if data is not None else nbytes
        ptr = self.libc.malloc(max(n, 1))
        self.blocks.append(ptr)
        if data is not None:
            ctypes.memmove(ptr, np.ascontiguousarray(data).ctypes.data, n)
        return ctypes.c_void_p(ptr)

    def free(self) -> None:
        for ptr in self.blocks:
            self.libc.free(ptr)


def run_c(lib: ctypes.CDLL, graph: Graph, op: Op, arrays: list[np.ndarray | None],
          gap: int | None = None) -> np.ndarray:
    """Run the op's ref C kernel on `arrays` (the op's inputs, constants included). With `gap`, input 0 and
    the output share one buffer, the output starting `gap` bytes before the input (a segment plan)."""
    binding = kernel_binding(op.type, op_params(graph, op), "ref")
    out_t = graph.tensors[op.outputs[0]]
    out = np.zeros(out_t.shape, dtype=NUMPY_DTYPES[out_t.dtype])
    heap, keep = _Heap(), []
    try:
        if gap is None:
            out_ptr = heap.put(None, out.nbytes)
        else:
            shared = heap.put(None, max(out.nbytes, gap + arrays[0].nbytes))
            out_ptr = shared
            ctypes.memmove(shared.value + gap, np.ascontiguousarray(arrays[0]).ctypes.data, arrays[0].nbytes)
        args: list = [ctypes.byref(_struct(binding, keep))]
        for role in binding.args:
            if role == "inputs":
                ptrs = (ctypes.c_void_p * len(arrays))(*[heap.put(a).value for a in arrays])
                keep.append(ptrs)
                args.append(ptrs)
            elif role.startswith("input"):
                i = int(role[5:])
                a = arrays[i] if i < len(arrays) else None
                if gap is not None and i == 0:
                    args.append(ctypes.c_void_p(shared.value + gap))
                else:
                    args.append(heap.put(a) if a is not None else None)
            elif role == "output":
                args.append(out_ptr)
            else:
                args.append(heap.put(None, binding.scratch_bytes) if binding.scratch_bytes else None)
        getattr(lib, binding.symbol)(*args)
        ctypes.memmove(out.ctypes.data, out_ptr, out.nbytes)
    finally:
        heap.free()
    return out


def random_arrays(graph: Graph, op: Op, rng: np.random.Generator) -> list[np.ndarray | None]:
    """The op's inputs: constants as stored, int8 activations uniform, floats over the quantized range."""
    arrays: list[np.ndarray | None] = []
    for t in graph.op_inputs(op):
        if t is None:
            arrays.append(None)
        elif t.is_const:
            arrays.append(np.asarray(t.data))
        elif t.dtype == "float32":
            out_q = graph.tensors[op.outputs[0]].quant
            lo, hi = (out_q.scale[0] * (-140 - out_q.zero_point[0]), out_q.scale[0] * (140 - out_q.zero_point[0]))
            arrays.append(rng.uniform(lo, hi, t.shape).astype(np.float32))
        else:
            info = np.iinfo(NUMPY_DTYPES[t.dtype])
            arrays.append(rng.integers(info.min, info.max, t.shape, endpoint=True).astype(NUMPY_DTYPES[t.dtype]))
    return arrays


def in_place_gap(graph: Graph, op: Op) -> int | None:
    """The least gap at which a segment plan may put the op's output before its only activation input."""
    from vmcu.plan.segment_gap import activation_inputs, op_schedule

    schedule = op_schedule(graph, op)
    if schedule.overlap and activation_inputs(graph, op) == [op.inputs[0]]:
        return schedule.gap(op.inputs[0])
    return None


def check_op(lib: ctypes.CDLL, graph: Graph, op: Op, seed: int = 0, trials: int = 2) -> None:
    """The C kernel equals the reference on random inputs, also run in place where a plan may overlap."""
    rng = np.random.default_rng(seed)
    gap = in_place_gap(graph, op)
    for _ in range(trials):
        arrays = random_arrays(graph, op, rng)
        want = np.asarray(REFERENCE_KERNELS[op.type](op_params(graph, op), arrays))
        for g in (None, gap) if gap is not None else (None,):
            got = run_c(lib, graph, op, arrays, g)
            _assert_equal(got, want.reshape(got.shape), f"op {op.index} {op.type}" + (f" at gap {g}" if g else ""))


def _assert_equal(got: np.ndarray, want: np.ndarray, what: str) -> None:
    if not np.array_equal(got, want):
        bad = np.flatnonzero(got.reshape(-1) != want.reshape(-1))
        raise AssertionError(f"{what}: {bad.size} of {got.size} differ, first at {bad[0]}: "
                             f"C {got.reshape(-1)[bad[0]]} vs reference {want.reshape(-1)[bad[0]]}")

# --- synthetic single-op graphs --------------------------------------------------------------------


def q(scale: float, zero_point: int = 0) -> Quant:
    return Quant((float(np.float32(scale)),), (zero_point,))


def single_op(op_type: str, inputs: list[tuple], output: tuple, **options: object) -> tuple[Graph, Op]:
    """A one-op graph; each tensor is (shape, dtype, quant[, constant data])."""
    specs = [*inputs, output]
    tensors = tuple(Tensor(i, f"t{i}", tuple(s[0]), s[1], s[2], s[3] if len(s) > 3 else None)
                    for i, s in enumerate(specs))
    n = len(inputs)
    op = Op(0, op_type, tuple(range(n)), (n,), dict(options))
    graph = Graph(op_type.lower(), tensors, (op,), tuple(i for i in range(n) if tensors[i].data is None), (n,))
    return graph, op


def _out_size(size: int, k: int, stride: int, dilation: int, padding: str) -> int:
    eff = (k - 1) * dilation + 1
    return -(-size // stride) if padding == "SAME" else (size - eff) // stride + 1


def conv_case(rng: np.random.Generator, op_type: str, h: int, w: int, cin: int, cout: int, k: tuple[int, int],
              stride: int = 1, dilation: int = 1, padding: str = "SAME", activation: str = "NONE",
              in_zp: int = -5, out_zp: int = 3, out_scale: float | None = None, bias: bool = True,
              batches: int = 1, mult: int = 1) -> tuple[Graph, Op]:
    """CONV_2D (cout filters OHWI) or DEPTHWISE_CONV_2D (1HWO, cout = cin * mult) with per-channel weights."""
    depthwise = op_type == "DEPTHWISE_CONV_2D"
    cout = cin * mult if depthwise else cout
    fshape = (1, *k, cout) if depthwise else (cout, *k, cin)
    wq = Quant(tuple(float(np.float32(s)) for s in rng.uniform(0.002, 0.02, cout)), (0,) * cout,
               3 if depthwise else 0)
    in_scale = 0.05
    taps = k[0] * k[1] * (1 if depthwise else cin)
    out_scale = out_scale or in_scale * 0.01 * math.sqrt(taps) * 100
    oh, ow = (_out_size(h, k[0], stride, dilation, padding), _out_size(w, k[1], stride, dilation, padding))
    inputs = [((batches, h, w, cin), "int8", q(in_scale, in_zp)),
              (fshape, "int8", wq, rng.integers(-127, 128, fshape).astype(np.int8))]
    if bias:
        inputs.append(((cout,), "int32", None, rng.integers(-3000, 3000, cout).astype(np.int32)))
    options = {"padding": padding, "stride_h": stride, "stride_w": stride, "dilation_h": dilation,
               "dilation_w": dilation, "activation": activation}
    if depthwise:
        options["depth_multiplier"] = mult
    return single_op(op_type, inputs, ((batches, oh, ow, cout), "int8", q(out_scale, out_zp)), **options)


CONV_CASES = [
    dict(h=6, w=7, cin=8, cout=6, k=(1, 1)),
    dict(h=5, w=5, cin=3, cout=5, k=(1, 1), stride=2),
    dict(h=9, w=8, cin=16, cout=7, k=(1, 1), in_zp=-128, out_zp=127),
    dict(h=7, w=7, cin=3, cout=8, k=(3, 3), stride=2),
    dict(h=8, w=6, cin=4, cout=4, k=(3, 3), activation="RELU6", in_zp=127, out_zp=-128, out_scale=0.05),
    dict(h=10, w=9, cin=5, cout=3, k=(3, 2), dilation=2, padding="VALID"),
    dict(h=6, w=6, cin=12, cout=9, k=(5, 5), padding="SAME", bias=False),
    dict(h=5, w=4, cin=1, cout=2, k=(3, 3), stride=1, activation="RELU", batches=2),
    dict(h=4, w=4, cin=33, cout=5, k=(2, 2), stride=2, padding="VALID"),
    dict(h=5, w=6, cin=4, cout=12, k=(1, 1)),  # output pixels wider than input ones: in place needs staging
    dict(h=5, w=5, cin=8, cout=12, k=(1, 1), activation="RELU6", out_scale=0.05),  # arm: Cin 8 records
    dict(h=4, w=7, cin=16, cout=8, k=(1, 1), in_zp=-128),  # arm: Cin 16 records
    dict(h=5, w=4, cin=40, cout=7, k=(3, 3)),  # arm: columns too long for four pixels, channel pairs
    dict(h=6, w=5, cin=16, cout=10, k=(3, 3), out_scale=0.0005),  # arm: shifts >= 0 take the exact path
]

DEPTHWISE_CASES = [
    dict(h=6, w=7, cin=8, cout=0, k=(3, 3)),
    dict(h=9, w=9, cin=12, cout=0, k=(3, 3), stride=2, activation="RELU6", out_scale=0.05, out_zp=-128),
    dict(h=7, w=5, cin=6, cout=0, k=(3, 3), in_zp=-128, out_zp=127),
    dict(h=8, w=8, cin=3, cout=0, k=(5, 5), mult=2),
    dict(h=10, w=9, cin=16, cout=0, k=(3, 3), dilation=2, padding="VALID", bias=False),
    dict(h=6, w=6, cin=4, cout=0, k=(2, 3), stride=2, padding="SAME", batches=2, in_zp=127),
    dict(h=9, w=10, cin=1, cout=0, k=(3, 3), stride=2, mult=8),  # arm: gathered inputs, staged rows
    dict(h=5, w=12, cin=8, cout=0, k=(3, 3), out_scale=0.0005),  # arm: shifts >= 0 take the exact path
]


@pytest.mark.parametrize("case", CONV_CASES, ids=lambda c: "-".join(f"{v}" for v in c.values()))
def test_conv_2d(lib: ctypes.CDLL, case: dict) -> None:
    graph, op = conv_case(np.random.default_rng(1), "CONV_2D", **case)
    check_op(lib, graph, op)


@pytest.mark.parametrize("case", DEPTHWISE_CASES, ids=lambda c: "-".join(f"{v}" for v in c.values()))
def test_depthwise_conv_2d(lib: ctypes.CDLL, case: dict) -> None:
    graph, op = conv_case(np.random.default_rng(2), "DEPTHWISE_CONV_2D", **case)
    check_op(lib, graph, op)


def fc_case(rng: np.random.Generator, batches: int, depth: int, units: int, per_channel: bool,
            weights_zp: int = 0, activation: str = "NONE") -> tuple[Graph, Op]:
    wq = (Quant(tuple(float(np.float32(s)) for s in rng.uniform(0.002, 0.02, units)), (0,) * units)
          if per_channel else q(0.01, weights_zp))
    inputs = [((batches, depth), "int8", q(0.05, 7)),
              ((units, depth), "int8", wq, rng.integers(-127, 128, (units, depth)).astype(np.int8)),
              ((units,), "int32", None, rng.integers(-3000, 3000, units).astype(np.int32))]
    out_scale = 0.05 * 0.01 * math.sqrt(depth) * 60
    return single_op("FULLY_CONNECTED", inputs, ((batches, units), "int8", q(out_scale, -9)), activation=activation)


@pytest.mark.parametrize("shape", [(1, 64, 10, False, 0), (3, 37, 5, True, 0), (2, 8, 1, False, 3),
                                   (1, 250, 12, False, -4)])
def test_fully_connected(lib: ctypes.CDLL, shape: tuple) -> None:
    batches, depth, units, per_channel, weights_zp = shape
    graph, op = fc_case(np.random.default_rng(3), batches, depth, units, per_channel, weights_zp, "RELU")
    check_op(lib, graph, op)


BINARY_SHAPES = [((1, 4, 5, 8), (1, 4, 5, 8)), ((1, 4, 5, 8), (1, 1, 1, 8)), ((1, 1, 1, 8), (1, 4, 5, 8)),
                 ((2, 3, 1, 4), (1, 1, 5, 1)), ((8,), (1, 3, 2, 8)), ((2, 1, 3, 1, 2), (1, 4, 1, 5, 2))]


@pytest.mark.parametrize("op_type", ["ADD", "MUL"])
@pytest.mark.parametrize("shapes", BINARY_SHAPES, ids=str)
def test_binary(lib: ctypes.CDLL, op_type: str, shapes: tuple) -> None:
    a, b = shapes
    out = tuple(np.broadcast_shapes(a, b))
    for zps, act in (((-3, 10, 2), "NONE"), ((-128, 127, -128), "RELU6")):
        out_scale = 0.06 if op_type == "ADD" else 0.02
        graph, op = single_op(op_type, [(a, "int8", q(0.05, zps[0])), (b, "int8", q(0.031, zps[1]))],
                              (out, "int8", q(out_scale, zps[2])), activation=act)
        check_op(lib, graph, op)


@pytest.mark.parametrize("op_type", ["AVERAGE_POOL_2D", "MAX_POOL_2D"])
@pytest.mark.parametrize("geometry", [(8, 8, 2, 2, "VALID"), (7, 9, 3, 2, "SAME"), (5, 5, 5, 1, "VALID"),
                                      (6, 5, 3, 1, "SAME")])
def test_pool(lib: ctypes.CDLL, op_type: str, geometry: tuple) -> None:
    h, w, k, s, padding = geometry
    out = (2, _out_size(h, k, s, 1, padding), _out_size(w, k, s, 1, padding), 5)
    graph, op = single_op(op_type, [((2, h, w, 5), "int8", q(0.05, -3))], (out, "int8", q(0.05, -3)),
                          padding=padding, stride_h=s, stride_w=s, filter_h=k, filter_w=k,
                          activation="RELU6" if s == 1 else "NONE")
    check_op(lib, graph, op)


@pytest.mark.parametrize("axes,keep", [((1, 2), True), ((1, 2), False), ((3,), False), ((0, 2), True),
                                       ((-1, 1), False)])
def test_mean(lib: ctypes.CDLL, axes: tuple, keep: bool) -> None:
    shape = (2, 5, 7, 6)
    norm = sorted({a % 4 for a in axes})
    out = tuple(1 if i in norm else d for i, d in enumerate(shape)) if keep else tuple(
        d for i, d in enumerate(shape) if i not in norm)
    axes_t = ((len(axes),), "int32", None, np.array(axes, dtype=np.int32))
    graph, op = single_op("MEAN", [(shape, "int8", q(0.05, -7)), axes_t], (out, "int8", q(0.03, 4)),
                          keep_dims=keep)
    check_op(lib, graph, op)


@pytest.mark.parametrize("scale,beta,out_dtype", [(0.1, 1.0, "int8"), (0.5, 1.0, "int8"), (0.02, 2.0, "int8"),
                                                  (0.25, 1.0, "int16")])
def test_softmax(lib: ctypes.CDLL, scale: float, beta: float, out_dtype: str) -> None:
    out_q = q(1 / 256, -128) if out_dtype == "int8" else q(1 / 65536, -32768)
    graph, op = single_op("SOFTMAX", [((3, 4, 10), "int8", q(scale, 5))], ((3, 4, 10), out_dtype, out_q),
                          beta=beta)
    check_op(lib, graph, op)


@pytest.mark.parametrize("scale,zp", [(0.1, 0), (0.02, -20), (0.5, 100)])
def test_logistic(lib: ctypes.CDLL, scale: float, zp: int) -> None:
    graph, op = single_op("LOGISTIC", [((4, 64), "int8", q(scale, zp))], ((4, 64), "int8", q(1 / 256, -128)))
    check_op(lib, graph, op, trials=3)


def test_quantize_dequantize(lib: ctypes.CDLL) -> None:
    for scale, zp in ((0.0174, -3), (0.5, 127), (1e-3, -128)):
        check_op(lib, *single_op("QUANTIZE", [((3, 50), "float32", None)], ((3, 50), "int8", q(scale, zp))))
        check_op(lib, *single_op("QUANTIZE", [((3, 50), "int8", q(0.03, 5))], ((3, 50), "int8", q(scale, zp))))
        check_op(lib, *single_op("DEQUANTIZE", [((3, 50), "int8", q(scale, zp))], ((3, 50), "float32", None)))


def test_quantize_rounds_half_away(lib: ctypes.CDLL) -> None:
    graph, op = single_op("QUANTIZE", [((8,), "float32", None)], ((8,), "int8", q(0.5, 0)))
    x = np.array([0.25, -0.25, 0.75, -0.75, 1e9, -1e9, 63.25, -64.25], dtype=np.float32)
    assert run_c(lib, graph, op, [x]).tolist() == [1, -1, 2, -2, 127, -128, 127, -128]


def test_data_movement(lib: ctypes.CDLL) -> None:
    i8 = q(0.05, -2)
    check_op(lib, *single_op("PAD", [((1, 3, 4), "int8", i8), ((3, 2), "int32", None,
                                                               np.array([[0, 1], [1, 2], [3, 0]], np.int32))],
                             ((2, 6, 7), "int8", i8)))
    check_op(lib, *single_op("PAD", [((1, 2, 2, 3), "int8", i8), ((4, 2), "int32", None,
                                                                  np.array([[0, 0], [1, 1], [2, 0], [0, 0]],
                                                                           np.int32))],
                             ((1, 4, 4, 3), "int8", i8)))
    check_op(lib, *single_op("RESHAPE", [((2, 3, 4), "int8", i8)], ((6, 4), "int8", i8)))
    for perm in ((0, 3, 1, 2), (2, 0, 1), (1, 0)):
        shape = (2, 3, 4, 5)[:len(perm)]
        out = tuple(shape[p] for p in perm)
        perm_t = ((len(perm),), "int32", None, np.array(perm, dtype=np.int32))
        check_op(lib, *single_op("TRANSPOSE", [(shape, "int8", i8), perm_t], (out, "int8", i8)))
    for axis in (0, 1, 3, -1):
        shapes = [(1, 2, 3, 4), (1, 2, 3, 4)]
        a = axis % 4
        shapes[1] = tuple(d + (2 if i == a else 0) for i, d in enumerate(shapes[1]))
        out = tuple(d + (shapes[1][i] if i == a else 0) for i, d in enumerate(shapes[0]))
        check_op(lib, *single_op("CONCATENATION", [(s, "int8", i8) for s in shapes], (out, "int8", i8), axis=axis))


# --- every op of the shared models ------------------------------------------------------------------

MODEL_FILES = sorted(p for p in MODELS.glob("*.tflite")
                     if not any(k in p.stem for k in ("lstm", "dtln", "scrambled")))


@pytest.mark.parametrize("path", MODEL_FILES, ids=lambda p: p.stem)
def test_model_ops(lib: ctypes.CDLL, path: Path) -> None:
    graph = read_tflite(path)
    for op in graph.ops:
        check_op(lib, graph, op, seed=op.index, trials=1)


# --- fixed point, sanitizers, the arm build ---------------------------------------------------------

REQUANT_HARNESS = r"""
#include "vmcu_fixedpoint.h"
void requantize_both(const int32_t *acc, const int32_t *mult, const int32_t *shift, int32_t n,
                     int32_t *fused, int32_t *plain) {
    for (int32_t i = 0; i < n; ++i) {
        fused[i] = vmcu_requantize(acc[i], mult[i], shift[i]);
        plain[i] = vmcu_multiply_by_quantized_multiplier(acc[i], mult[i], shift[i]);
    }
}
"""


def test_fused_requantize_is_exact(tmp_path: Path) -> None:
    """vmcu_requantize (one 64-bit floor division, used by the arm kernels) equals TFLite's two-step
    MultiplyByQuantizedMultiplier on the whole int32 range, and both equal the Python reference."""
    from vmcu.ir.quant import multiply_by_quantized_multiplier

    src, so = tmp_path / "requant.c", tmp_path / "requant.so"
    src.write_text(REQUANT_HARNESS)
    subprocess.run(["gcc", *CFLAGS, "-shared", "-fPIC", f"-I{include_dir()}", str(src), "-o", str(so)], check=True)
    rng = np.random.default_rng(4)
    n = 200_000
    edges = np.array([0, 1, -1, 2**31 - 1, -2**31, 2**30, -2**30, 12345, -12345], dtype=np.int64)
    acc = np.concatenate([rng.integers(-2**31, 2**31, n), rng.integers(-2**20, 2**20, n), np.tile(edges, 100)])
    m = len(acc)
    mult = np.where(rng.random(m) < 0.9, rng.integers(2**30, 2**31, m), rng.integers(0, 2**31, m))
    shift = rng.integers(-31, 1, m)
    args = [np.ascontiguousarray(a, dtype=np.int32) for a in (acc, mult, shift)]
    fused, plain = np.zeros(m, np.int32), np.zeros(m, np.int32)
    ptr = [a.ctypes.data_as(ctypes.c_void_p) for a in (*args, fused, plain)]
    ctypes.CDLL(str(so)).requantize_both(ptr[0], ptr[1], ptr[2], ctypes.c_int32(m), ptr[3], ptr[4])
    assert np.array_equal(fused, plain)
    assert np.array_equal(plain, multiply_by_quantized_multiplier(acc, mult, shift))


@pytest.mark.skipif(SANITIZE, reason="this is the sanitized run")
def test_under_sanitizers() -> None:
    """The tests above again (but the largest model's ops, for time) against a -fsanitize=address,undefined
    build of the kernels."""
    asan = subprocess.run(["gcc", "-print-file-name=libasan.so"], capture_output=True, text=True).stdout.strip()
    env = os.environ | {"VMCU_KERNEL_SANITIZE": "1", "LD_PRELOAD": asan, "ASAN_OPTIONS": "detect_leaks=0"}
    selection = "not sanitizers and not arm and not fused and not mcunetv2"
    run = subprocess.run([sys.executable, "-m", "pytest", __file__, "-q", "-s", "-x", "-p", "no:cacheprovider",
                          "-k", selection], env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]


ARM_GCC = shutil.which("arm-none-eabi-gcc")


@pytest.mark.skipif(ARM_GCC is None, reason="arm-none-eabi-gcc is not installed")
@pytest.mark.parametrize("flags", [("-mcpu=cortex-m4", "-O2"), ("-mcpu=cortex-m7", "-Os"),
                                   ("-mcpu=cortex-m4", "-O0", "-fno-omit-frame-pointer")], ids=" ".join)
def test_arm_variant_compiles(tmp_path: Path, flags: tuple[str, ...]) -> None:
    cmd = [ARM_GCC, *flags, "-mthumb", *CFLAGS[:1], *CFLAGS[2:], f"-I{include_dir()}", "-c",
           *map(str, kernel_sources("arm"))]
    run = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr


# --- the arm variant on QEMU -----------------------------------------------------------------------

Case = tuple[Graph, Op, list[np.ndarray | None]]


def _c_array(name: str, a: np.ndarray) -> str:
    ctype = {np.dtype(np.int8): "int8_t", np.dtype(np.int32): "int32_t"}[a.dtype]
    body = ", ".join(map(str, a.reshape(-1).tolist())) or "0"
    return f"static const {ctype} {name}[{max(a.size, 1)}] = {{{body}}};\n"


def qemu_program(cases: list[Case], variant: str, in_place: bool) -> tuple[str, bytes, list[tuple[int, int]]]:
    """C source running every case's kernel between vmcu_mark(i) calls, the input blob it reads and
    each case's (output offset, output bytes). Activations start 1-3 bytes past word boundaries so
    that the kernels' unaligned loads are exercised (float and int16 data stay aligned, as C requires);
    scratch is word aligned, as the arm kernels require. With `in_place`, ops a segment plan may overlap
    write their output `gap` bytes before their input inside the input blob; it is copied out after the
    last mark."""
    defs, calls, copies, blob, outputs = [], [], [], bytearray(), []
    out_size = scratch = 0
    for i, (graph, op, arrays) in enumerate(cases):
        binding = kernel_binding(op.type, op_params(graph, op), variant)
        defs.append(c_definition(binding, f"p{i}"))
        scratch = max(scratch, binding.scratch_bytes)
        out_t = graph.tensors[op.outputs[0]]
        gap = in_place_gap(graph, op) if in_place else None
        ptrs = {}
        for j, (t, a) in enumerate(zip(graph.op_inputs(op), arrays, strict=True)):
            if t is None or a is None or (t.is_const and f"input{j}" not in binding.args):
                ptrs[f"input{j}"] = "NULL"
            elif t.is_const:
                defs.append(_c_array(f"c{i}_{j}", np.asarray(a)))
                ptrs[f"input{j}"] = f"c{i}_{j}"
            else:
                blob += bytes(-len(blob) % 4 + ((i + j) % 4 if t.dtype == "int8" else 0))
                if gap is not None:
                    region = len(blob)
                    blob += bytes(gap)
                ptrs[f"input{j}"] = f"(const void *)(in_buf + {len(blob)})"
                blob += np.ascontiguousarray(a).tobytes()
                if gap is not None:
                    blob += bytes(max(0, out_t.nbytes - gap - a.nbytes))
        out_size += -out_size % 4 + (i % 4 if out_t.dtype == "int8" else 0)
        outputs.append((out_size, out_t.nbytes))
        target = f"out_buf + {out_size}" if gap is None else f"in_buf + {region}"
        if gap is not None:
            copies.append(f"    memcpy(out_buf + {out_size}, in_buf + {region}, {out_t.nbytes});\n")
        roles = {"output": f"(void *)({target})", "scratch": "scratch" if binding.scratch_bytes else "NULL"}
        out_size += out_t.nbytes
        args = [roles.get(r) or ptrs.get(r, "NULL") for r in binding.args]
        calls.append(f"    vmcu_mark({i});\n    {binding.symbol}(&p{i}, {', '.join(args)});\n")
    src = ("#include <stddef.h>\n#include <stdint.h>\n#include <string.h>\n#include \"vmcu_kernels.h\"\n"
           "#include \"vmcu_platform.h\"\n"
           f"static uint8_t in_buf[{max(len(blob), 1)}] __attribute__((aligned(4)));\n"
           f"static uint8_t out_buf[{max(out_size, 1)}] __attribute__((aligned(4)));\n"
           f"static int8_t scratch[{max(scratch, 4)}] __attribute__((aligned(4)));\n" + "".join(defs)
           + "int vmcu_main(void) {\n    (void)scratch;\n    vmcu_read_input(in_buf, sizeof in_buf);\n"
           + "".join(calls) + "    vmcu_mark(-1);\n" + "".join(copies)
           + "    vmcu_write_output(out_buf, sizeof out_buf);\n    return 0;\n}\n")
    return src, bytes(blob), outputs


def run_on_qemu(cases: list[Case], tmp: Path, variant: str = "arm",
                in_place: bool = False) -> tuple[list[np.ndarray], dict[int, int]]:
    """Each case's output and instructions per region (case index)."""
    from vmcu.run.execute import build_program, run_program
    from vmcu.targets import get_target

    src, blob, outputs = qemu_program(cases, variant, in_place)
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "main.c").write_text(src)
    target = get_target("cortex-m4")
    binary = build_program(target, None, [*kernel_sources(variant), tmp / "main.c"], [include_dir()], tmp / "build")
    result = run_program(target, binary, blob, None, timeout_s=120)
    results = []
    for (graph, op, _), (offset, nbytes) in zip(cases, outputs, strict=True):
        t = graph.tensors[op.outputs[0]]
        raw = np.frombuffer(result.output[offset:offset + nbytes], dtype=NUMPY_DTYPES[t.dtype])
        results.append(raw.reshape(t.shape))
    return results, result.per_region


def _assert_matches_reference(cases: list[Case], got: list[np.ndarray]) -> None:
    for (graph, op, arrays), out in zip(cases, got, strict=True):
        want = np.asarray(REFERENCE_KERNELS[op.type](op_params(graph, op), arrays)).reshape(out.shape)
        diff = int(np.count_nonzero(out != want))
        assert diff == 0, f"{graph.name} op {op.index} {op.type}: {diff} of {out.size} outputs differ on QEMU"


def macs(graph: Graph, op: Op) -> int:
    """Multiply-accumulates of a CONV_2D, DEPTHWISE_CONV_2D or FULLY_CONNECTED op."""
    p = op_params(graph, op)
    out = math.prod(graph.tensors[op.outputs[0]].shape)
    if op.type == "CONV_2D":
        return out * math.prod(p.filter_shape[1:])
    if op.type == "DEPTHWISE_CONV_2D":
        return out * p.filter_shape[1] * p.filter_shape[2]
    return out * p.accum_depth


QEMU = pytest.mark.skipif(shutil.which("qemu-system-arm") is None or ARM_GCC is None,
                          reason="needs arm-none-eabi-gcc and qemu-system-arm")


@QEMU
@pytest.mark.qemu
def test_arm_kernels_on_qemu(tmp_path: Path) -> None:
    """The arm variant (DSP conv, depthwise, FC; ref files for the rest) bit-exact on a Cortex-M4."""
    rng = np.random.default_rng(5)
    graphs = [conv_case(rng, "CONV_2D", **c) for c in CONV_CASES]
    graphs += [conv_case(rng, "DEPTHWISE_CONV_2D", **c) for c in DEPTHWISE_CASES]
    graphs += [fc_case(rng, 1, 64, 10, False), fc_case(rng, 3, 37, 5, True), fc_case(rng, 2, 250, 3, False, -4)]
    graphs += [single_op("QUANTIZE", [((3, 50), "float32", None)], ((3, 50), "int8", q(0.0174, -3))),
               single_op("DEQUANTIZE", [((3, 50), "int8", q(0.0174, -3))], ((3, 50), "float32", None)),
               single_op("SOFTMAX", [((3, 10), "int8", q(0.1, 5))], ((3, 10), "int8", q(1 / 256, -128))),
               single_op("LOGISTIC", [((64,), "int8", q(0.1, 0))], ((64,), "int8", q(1 / 256, -128)))]
    cases = [(g, op, random_arrays(g, op, rng)) for g, op in graphs]
    for in_place in (False, True):
        got, _ = run_on_qemu(cases, tmp_path / str(in_place), in_place=in_place)
        _assert_matches_reference(cases, got)


@QEMU
@pytest.mark.qemu
def test_arm_kernels_vww_on_qemu(tmp_path: Path) -> None:
    """Every op of MLPerf Tiny VWW through the arm variant on a Cortex-M4, in place where a segment plan
    may overlap, bit-exact; and the instruction counts stay where the DSP kernels put them (measured in
    place: 1.43 instructions per MAC at most for a pointwise layer, C_in 8 included, 0.22-1.31 for the
    others, dead channels skipped; 1.24 for all CONV/DEPTHWISE/FC)."""
    graph = read_tflite(MODELS / "mlperftiny__vww_96_int8.tflite")
    rng = np.random.default_rng(6)
    cases = [(graph, op, random_arrays(graph, op, rng)) for op in graph.ops]
    got, regions = run_on_qemu(cases, tmp_path, in_place=True)
    _assert_matches_reference(cases, got)
    weighted = [op for op in graph.ops if op.type in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")]
    per_mac = sum(regions[op.index] for op in weighted) / sum(macs(graph, op) for op in weighted)
    pointwise = [op for op in weighted if op.type == "CONV_2D" and graph.tensors[op.inputs[1]].shape[1:3] == (1, 1)]
    assert per_mac < 1.3
    assert all(regions[op.index] / macs(graph, op) < 1.5 for op in pointwise)
