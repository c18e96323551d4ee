"""Execute a segment plan on a flat circular byte pool with the NumPy reference kernels.

This is the ground truth the checker stands in for, before any C exists: every op's output is stored
unit by unit (the output's last axis: one pixel, one FC row, one softmax row; one element for the
elementwise kernels that store each result directly, see `stages_units`), in row-major order, at
`(output base + t * unit) mod pool`, and unit t is computed from the pool exactly as it is just before
that store. Whatever the kernel reads for unit t therefore includes every overwrite by earlier units and
earlier ops, and nothing here knows which bytes a unit reads: if a plan's gap is too small, the outputs
come out wrong; if it is right, they are bit-exact with `run_reference`.

Each unit recomputes the whole op on the current pool contents (only when those contents changed since
the previous unit), so the cost is (steps x op): for small graphs only. Ops without a segment kernel
(TRANSPOSE, CONCATENATION) compute once and store their whole output. A fused inverted bottleneck runs
its own loop (vmcu.plan.fused): it reads each input pixel from the pool when it expands it, keeps the
expanded pixels in a ring as the kernel does, and stores each output pixel in turn.
"""

from __future__ import annotations

import numpy as np

from vmcu.errors import UnsupportedOpError
from vmcu.frontend.tflite import NUMPY_DTYPES
from vmcu.ir.fusion import FUSED_OP, fused_block
from vmcu.ir.graph import DTYPE_BYTES, NO_TENSOR, Graph, Op, Tensor
from vmcu.ir.params import op_params
from vmcu.plan.fused import FusedArithmetic, expanded_pixels, fused_geometry, input_offsets
from vmcu.plan.segment import SegmentPlan
from vmcu.plan.segment_gap import stages_units
from vmcu.reference.kernels import REFERENCE_KERNELS

UNIT_BY_UNIT = ("CONV_2D", "DEPTHWISE_CONV_2D", "AVERAGE_POOL_2D", "MAX_POOL_2D", "FULLY_CONNECTED", "ADD",
                "MUL", "LOGISTIC", "QUANTIZE", "DEQUANTIZE", "RESHAPE", "SOFTMAX", "MEAN", "PAD")
FILL = 0xA5  # what the pool holds before anything is written


class Pool:
    """A circular byte pool: tensors are read and written at `base + i mod size`."""

    def __init__(self, size: int) -> None:
        self.data = np.full(size, FILL, dtype=np.uint8)

    def _addr(self, base: int, n: int) -> np.ndarray:
        return (base + np.arange(n)) % len(self.data)

    def read(self, base: int, t: Tensor) -> np.ndarray:
        raw = self.data[self._addr(base, t.nbytes)].copy()
        return raw.view(NUMPY_DTYPES[t.dtype]).reshape(t.shape)

    def pixels(self, base: int, offsets: np.ndarray, n: int) -> np.ndarray:
        """int8 runs of `n` bytes at `base + offset` (mod size), one row per offset."""
        addr = (base + offsets[:, None] + np.arange(n)[None, :]) % len(self.data)
        return self.data[addr].view(np.int8)

    def write(self, base: int, raw: np.ndarray) -> None:
        self.data[self._addr(base, raw.size)] = raw


def simulate_segment_plan(graph: Graph, splan: SegmentPlan,
                          inputs: list[np.ndarray]) -> dict[int, np.ndarray]:
    """Run `graph` in the plan's pool. Returns each op output as read back right after its op, and each
    graph output as read back at the end (what an application would find there)."""
    bases = splan.plan.offsets()
    pool = Pool(splan.pool_bytes)
    for idx, x in zip(graph.inputs, inputs, strict=True):
        t = graph.tensors[idx]
        pool.write(bases[idx], _bytes(np.asarray(x).astype(NUMPY_DTYPES[t.dtype]).reshape(t.shape)))
    values: dict[int, np.ndarray] = {}
    graph = splan.step_graph(graph)
    for op_index in splan.plan.order:
        op = graph.ops[op_index]
        if op.type == FUSED_OP:
            out = graph.tensors[op.outputs[0]]
            _run_fused(graph, op, pool, bases)
            values[out.index] = pool.read(bases[out.index], out)
            continue
        kernel = REFERENCE_KERNELS.get(op.type)
        if kernel is None:
            raise UnsupportedOpError(f"op {op.index}: operator {op.type} is not supported")
        params = op_params(graph, op)
        out = graph.tensors[op.outputs[0]]
        row = (out.shape[-1] if out.shape else 1) if stages_units(graph, op) else 1
        unit = row * DTYPE_BYTES[out.dtype]
        if op.type not in UNIT_BY_UNIT or unit == 0:
            unit = max(out.nbytes, 1)
        seen: list[np.ndarray] | None = None
        result = np.zeros(0, dtype=np.uint8)
        for t in range(out.nbytes // unit):
            now = [pool.read(bases[i], graph.tensors[i]) for i in op.inputs
                   if i != NO_TENSOR and not graph.tensors[i].is_const]
            if seen is None or any(not np.array_equal(a, b) for a, b in zip(now, seen, strict=True)):
                args, it = [], iter(now)
                for i in op.inputs:
                    args.append(None if i == NO_TENSOR else graph.tensors[i].data if graph.tensors[i].is_const
                                else next(it))
                value = np.asarray(kernel(params, args), dtype=NUMPY_DTYPES[out.dtype]).reshape(out.shape)
                result, seen = _bytes(value), now
            pool.write(bases[out.index] + t * unit, result[t * unit:(t + 1) * unit])
        values[out.index] = pool.read(bases[out.index], out)
    for idx in graph.outputs:
        values[idx] = pool.read(bases[idx], graph.tensors[idx])
    return values


def _run_fused(graph: Graph, op: Op, pool: Pool, bases: dict[int, int]) -> None:
    """One fused block, step by step on the pool (see vmcu.plan.fused for the loop)."""
    block = fused_block(op)
    g = fused_geometry(graph, block)
    variant = op.options["variant"]
    math = FusedArithmetic.of(graph, block, variant)
    steps, rows, cols = expanded_pixels(g, variant)
    bounds = np.searchsorted(steps, np.arange(g.steps + 1))
    offsets = input_offsets(g, rows, cols)
    x_base, y_base = bases[op.inputs[0]], bases[op.outputs[0]]
    ring_w = g.ring_w(variant)
    ring = np.zeros((g.ring_h, ring_w, g.mid_c), dtype=np.int8)
    for t in range(g.steps):
        now = slice(bounds[t], bounds[t + 1])
        if bounds[t + 1] > bounds[t]:
            x = pool.pixels(x_base, offsets[now], g.in_c)
            ring[rows[now] % g.ring_h, cols[now] % ring_w] = math.expand_pixels(x)
        oy, ox = divmod(t, g.out_w)
        r = oy * g.step_h - g.pad_top + np.arange(g.kernel_h)
        c = ox * g.step_w - g.pad_left + np.arange(g.kernel_w)
        inside = ((r >= 0) & (r < g.mid_h))[:, None] & ((c >= 0) & (c < g.mid_w))[None, :]
        window = np.where(inside[:, :, None], ring[(r % g.ring_h)[:, None], (c % ring_w)[None, :]],
                          np.int8(math.mid_zero_point))
        y = math.project_pixel(math.depthwise_pixel(window))
        if g.residual:
            y = math.residual_pixel(pool.pixels(x_base, np.array([t * g.in_c]), g.in_c)[0], y)
        pool.write(y_base + t * g.out_c, _bytes(y))


def _bytes(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a).reshape(-1).view(np.uint8)
