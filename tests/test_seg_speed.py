"""The DSP depthwise kernel with its output overlapping its input, as segment plans place it: the output
`gap` bytes before the input in a circular pool. When the gap is a whole number of pixels, the kernel runs
channel group after channel group over the whole op (a group's stores land on its own channels' inputs
only), else row by row; both on views of the pool, wrapping or not. Every case runs at its least gap on
Cortex-M4 and must match the reference; at one pixel less, where the plan checker rejects the plan, the
grouped kernel must compute exactly what the checker's pixel-by-pixel model computes."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from vmcu.frontend.tflite import NUMPY_DTYPES
from vmcu.ir.graph import Graph, Op, Quant, Tensor
from vmcu.ir.params import op_params
from vmcu.kernels import include_dir, kernel_dir, segment_sources
from vmcu.kernels.segbind import SegBinding, segment_binding
from vmcu.plan.segment import SegmentStep
from vmcu.plan.segment_gap import op_schedule, round_up, unit_bytes
from vmcu.reference.kernels import REFERENCE_KERNELS
from vmcu.run.toolchain import arm_toolchain_missing
from vmcu.targets import get_target

needs_arm = pytest.mark.skipif(arm_toolchain_missing() is not None, reason=str(arm_toolchain_missing()))


def q(scale: float, zero_point: int = 0) -> Quant:
    return Quant((float(np.float32(scale)),), (zero_point,))


def depthwise(h: int, w: int, c: int, k: tuple[int, int], stride: int = 1, dilation: int = 1, padding: str = "SAME",
              mult: int = 1, activation: str = "NONE", batch: int = 1) -> tuple[Graph, Op]:
    """A one-op DEPTHWISE_CONV_2D graph with per-channel weights and a bias."""
    rng = np.random.default_rng(h * w * c + k[0])
    cout = c * mult
    fshape = (1, *k, cout)
    wq = Quant(tuple(float(np.float32(v)) for v in rng.uniform(0.002, 0.02, cout)), (0,) * cout, 3)
    size = [(n - (kk - 1) * dilation - 1) // stride + 1 if padding == "VALID" else -(-n // stride)
            for n, kk in zip((h, w), k, strict=True)]
    specs = [((batch, h, w, c), "int8", q(0.05, -5), None),
             (fshape, "int8", wq, rng.integers(-127, 128, fshape).astype(np.int8)),
             ((cout,), "int32", None, rng.integers(-3000, 3000, cout).astype(np.int32)),
             ((batch, *size, cout), "int8", q(0.05 * math.sqrt(k[0] * k[1]), 3), None)]
    tensors = tuple(Tensor(i, f"t{i}", s[0], s[1], s[2], s[3]) for i, s in enumerate(specs))
    options = {"padding": padding, "stride_h": stride, "stride_w": stride, "dilation_h": dilation,
               "dilation_w": dilation, "activation": activation, "depth_multiplier": mult}
    op = Op(0, "DEPTHWISE_CONV_2D", (0, 1, 2), (3,), options)
    return Graph("depthwise", tensors, (op,), (0,), (3,)), op


CASES = {
    "wide 3x3": depthwise(7, 10, 8, (3, 3)),
    "wide 3x3 stride 2": depthwise(9, 17, 12, (3, 3), stride=2),
    "wide 5x5 dilated, relu6": depthwise(9, 12, 8, (5, 5), dilation=2, activation="RELU6"),
    "narrow 3x3": depthwise(9, 5, 16, (3, 3)),
    "narrow tall, dilated": depthwise(40, 5, 8, (3, 3), dilation=2),  # too tall to stage whole
    "one column 5x1": depthwise(12, 1, 8, (5, 1), padding="VALID"),
    "six channels": depthwise(6, 9, 6, (3, 3), activation="RELU"),
    "depth multiplier 2": depthwise(6, 9, 4, (3, 3), mult=2),
    "two images": depthwise(5, 8, 8, (3, 3), batch=2),
}


@dataclass(frozen=True)
class Call:
    """One kernel call: the op, its pool image (the input at in_base) and the seg binding."""

    graph: Graph
    op: Op
    pool: int
    in_base: int
    out_base: int
    image: np.ndarray
    arrays: list[np.ndarray]
    binding: SegBinding

    def output(self, memory: np.ndarray) -> bytes:
        out = self.graph.tensors[self.op.outputs[0]]
        return memory[(self.out_base + np.arange(out.nbytes)) % self.pool].tobytes()


def least_gap(graph: Graph, op: Op) -> int:
    """The planner's gap rounded up to whole input pixels, as segment plans place the output."""
    return round_up(op_schedule(graph, op).gap(op.inputs[0]), graph.tensors[op.inputs[0]].shape[3])


def place(graph: Graph, op: Op, gap: int, where: str, rng: np.random.Generator) -> Call:
    """The output `gap` bytes before the input in a pool just big enough, the input or the output across the
    pool end at a byte that splits a pixel (or neither)."""
    inp, out = (graph.tensors[op.inputs[0]], graph.tensors[op.outputs[0]])
    pool = max(out.nbytes, gap + inp.nbytes) + 3
    if where == "input":
        in_base = pool - inp.nbytes // 2 - 1
    elif where == "output":
        in_base = (pool - out.nbytes // 2 - 1 + gap) % pool
    else:
        in_base = gap
    out_base = (in_base - gap) % pool
    arrays = [rng.integers(-128, 128, inp.shape).astype(np.int8),
              *(np.asarray(graph.tensors[t].data) for t in op.inputs[1:])]
    image = rng.integers(0, 256, pool).astype(np.uint8)
    image[(in_base + np.arange(inp.nbytes)) % pool] = arrays[0].reshape(-1).view(np.uint8)
    step = SegmentStep(op.index, op.type, op.inputs, (in_base, -1, -1), out.index, out_base, inp.index, gap, gap,
                       inp.shape[3], unit_bytes(graph, op), out.nbytes // unit_bytes(graph, op), pool, 0)
    return Call(graph, op, pool, in_base, out_base, image, arrays, segment_binding(graph, op, step, "arm"))


def reference(call: Call) -> bytes:
    out = call.graph.tensors[call.op.outputs[0]]
    y = REFERENCE_KERNELS[call.op.type](op_params(call.graph, call.op), call.arrays)
    return np.asarray(y, dtype=NUMPY_DTYPES[out.dtype]).tobytes()


def pixel_by_pixel(call: Call) -> bytes:
    """What the plan checker assumes: output pixel t computed from the pool as it is after pixels < t were
    stored, then stored."""
    graph, op, pool = call.graph, call.op, call.pool
    inp, out = graph.tensors[op.inputs[0]], graph.tensors[op.outputs[0]]
    memory = call.image.copy()
    unit = unit_bytes(graph, op)
    for t in range(out.nbytes // unit):
        x = memory[(call.in_base + np.arange(inp.nbytes)) % pool].view(np.int8).reshape(inp.shape)
        y = np.asarray(REFERENCE_KERNELS[op.type](op_params(graph, op), [x, *call.arrays[1:]]), np.int8).reshape(-1)
        memory[(call.out_base + t * unit + np.arange(unit)) % pool] = y[t * unit:(t + 1) * unit].view(np.uint8)
    return call.output(memory)


CANARY = 16  # bytes past each call's scratch that must come back untouched


def run_on_m4(calls: list[Call], work: Path) -> list[bytes]:
    """Every call in one Cortex-M4 program (each pool at a different offset mod 4, each call with a scratch
    of exactly its binding's size, followed by canary bytes); their outputs."""
    from vmcu.run.execute import build_program, run_program

    defs, body, blob, offsets = [], [], bytearray(), []
    for i, call in enumerate(calls):
        b = call.binding
        blob += bytes(-len(blob) % 4 + i % 4)
        offsets.append(len(blob))
        blob += call.image.tobytes() + bytes(CANARY)
        assert b.stage_bytes == 0
        defs.append(b.definition(f"p{i}"))
        defs.append(f"static int8_t scratch{i}[{b.scratch_bytes + CANARY}] __attribute__((aligned(4)));\n")
        for n in (1, 2):
            data = np.asarray(call.graph.tensors[call.op.inputs[n]].data).reshape(-1)
            ctype = "int32_t" if data.dtype == np.int32 else "int8_t"
            defs.append(f"static const {ctype} c{i}_{n}[] __attribute__((aligned(4))) = "
                        f"{{{', '.join(map(str, data.tolist()))}}};\n")
        at, size = offsets[-1], b.scratch_bytes
        body.append(f"    memset(scratch{i} + {size}, 0x5a, {CANARY});\n"
                    f"    {b.symbol}(&p{i}, vmcu_seg_src(buf + {at}, {call.pool}, {call.in_base}), c{i}_1, c{i}_2, "
                    f"vmcu_seg_dst(buf + {at}, {call.pool}, {call.out_base}), NULL, scratch{i});\n"
                    f"    memcpy(buf + {at + call.pool}, scratch{i} + {size}, {CANARY});\n")
    src = ("#include <stdint.h>\n#include <string.h>\n#include \"vmcu_seg.h\"\n#include \"vmcu_platform.h\"\n"
           f"static int8_t buf[{len(blob)}] __attribute__((aligned(4)));\n" + "".join(defs)
           + "int vmcu_main(void) {\n    vmcu_read_input(buf, sizeof buf);\n" + "".join(body)
           + "    vmcu_write_output(buf, sizeof buf);\n    return 0;\n}\n")
    (work / "main.c").write_text(src)
    target = get_target("cortex-m4")
    includes = [include_dir(), kernel_dir() / "ref", kernel_dir() / "arm"]
    binary = build_program(target, None, [*segment_sources("arm"), work / "main.c"], includes, work / "build")
    memory = np.frombuffer(run_program(target, binary, bytes(blob), len(blob)).output, np.uint8)
    for call, at in zip(calls, offsets, strict=True):
        assert memory[at + call.pool:at + call.pool + CANARY].tobytes() == b"\x5a" * CANARY, "scratch overrun"
    return [call.output(memory[at:at + call.pool]) for call, at in zip(calls, offsets, strict=True)]


@needs_arm
@pytest.mark.qemu
def test_dsp_depthwise_overlapping_its_input(tmp_path: Path) -> None:
    rng = np.random.default_rng(11)
    calls, names = [], []
    for name, (graph, op) in CASES.items():
        gap = least_gap(graph, op)
        for where in ("none", "input", "output"):
            calls.append(place(graph, op, gap, where, rng))
            names.append(f"{name}, gap {gap}, {where} across the pool end")
        calls.append(place(graph, op, gap + 1, "input", rng))  # not whole pixels apart: row by row
        names.append(f"{name}, gap {gap + 1}, input across the pool end")
    graph, op = CASES["wide 3x3"]
    short = place(graph, op, least_gap(graph, op) - graph.tensors[op.inputs[0]].shape[3], "none", rng)
    got = run_on_m4([*calls, short], tmp_path)
    for name, call, out in zip(names, calls, got, strict=False):
        assert out == reference(call), name
    assert got[-1] == pixel_by_pixel(short) != reference(short)
