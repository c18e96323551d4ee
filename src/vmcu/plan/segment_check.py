"""Independent check of a segment plan: replay every read and write of every kernel step on a shadow pool.

A gap one segment too small corrupts data silently, so nothing here trusts the planner or the gap
formulas: the access pattern of each op is re-derived from its shapes and TFLite parameters (which input
bytes each output unit reads), the kernels' order is replayed (units in row-major order, each unit's
reads before its store), and a shadow pool records which (tensor, byte) every pool byte holds. A read
passes only if its bytes still hold that tensor's bytes: not overwritten by an earlier op, and not by an
earlier step of the same op. Graph outputs must be intact at the end. Kernel scratch that the generated
code keeps in the pool's free bytes (`scratch`) is replayed as garbage written over its bytes when its op
starts, and must not touch that op's output.

Vectorised per op: the bytes an op's input held when it started are compared in one pass (prefix sums
give each read's verdict), and the first step at which the op itself overwrites each pool byte is
range-min queried (sparse table) over each read.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from vmcu.errors import PlanError
from vmcu.ir.fusion import FUSED_OP, fused_block
from vmcu.ir.graph import DTYPE_BYTES, NO_TENSOR, Graph, Op
from vmcu.ir.params import op_params
from vmcu.plan.segment import SegmentPlan
from vmcu.plan.segment_gap import stages_units

NEVER = np.iinfo(np.int64).max
SCRATCH = -2  # the shadow owner of pool bytes a kernel used as scratch
WINDOWED = ("CONV_2D", "DEPTHWISE_CONV_2D", "AVERAGE_POOL_2D", "MAX_POOL_2D")
ELEMENTWISE = ("ADD", "MUL", "LOGISTIC", "QUANTIZE", "DEQUANTIZE", "RESHAPE", "PAD", "MEAN")

Runs = tuple[np.ndarray, np.ndarray, np.ndarray]  # step, byte offset in the tensor, length


def check_segment_plan(graph: Graph, splan: SegmentPlan, scratch: Mapping[int, tuple[int, int]] | None = None
                       ) -> None:
    """Raise PlanError (one line) at the first read of a byte that no longer holds what it should.

    `scratch` maps an op to the (pool offset, bytes) of the buffers its kernel call takes in the pool."""
    where = f"{graph.name}: plan '{splan.plan.strategy}'"
    graph = _step_graph(graph, splan, where)
    bases = _check_structure(graph, splan, where)
    pool = splan.pool_bytes
    owner = np.full(pool, -1, dtype=np.int64)
    byte = np.full(pool, -1, dtype=np.int64)
    produced = {t for op in graph.ops for t in op.outputs}
    for t in sorted(t for t in bases if t not in produced):
        _store(owner, byte, bases[t], graph.tensors[t].nbytes, t, pool)
    for op_index in splan.plan.order:
        op = graph.ops[op_index]
        if scratch and op_index in scratch:
            _clobber(graph, op, *scratch[op_index], bases, owner, byte, pool, where)
        reads, writes = access_pattern(graph, op)
        _replay(graph, op, reads, writes, bases, owner, byte, pool, where)
    for t in graph.outputs:
        n = graph.tensors[t].nbytes
        addr = (bases[t] + np.arange(n)) % pool
        bad = np.flatnonzero((owner[addr] != t) | (byte[addr] != np.arange(n)))
        if bad.size:
            raise PlanError(f"{where}: graph output {_name(graph, t)} byte {bad[0]} at pool address "
                            f"{addr[bad[0]]} was overwritten by {_name(graph, int(owner[addr[bad[0]]]))}")


def _clobber(graph: Graph, op: Op, offset: int, n: int, bases: dict[int, int], owner: np.ndarray,
             byte: np.ndarray, pool: int, where: str) -> None:
    """The op's kernel scratch at pool bytes [offset, offset + n): inside the pool, off the op's output, and
    from now on holding nothing any later read may use."""
    out = op.outputs[0]
    if offset < 0 or offset + n > pool:
        raise PlanError(f"{where}: op {op.index} {op.type} kernel scratch [{offset}, {offset + n}) is not inside "
                        f"the pool of {pool} B")
    if n > 0 and ((offset - bases[out]) % pool < graph.tensors[out].nbytes or (bases[out] - offset) % pool < n):
        raise PlanError(f"{where}: op {op.index} {op.type} kernel scratch [{offset}, {offset + n}) overlaps its "
                        f"output {_name(graph, out)}")
    owner[offset:offset + n] = SCRATCH
    byte[offset:offset + n] = -1


def _check_structure(graph: Graph, splan: SegmentPlan, where: str) -> dict[int, int]:
    """Placements, steps and segment alignment agree with each other and with the graph."""
    pool = splan.pool_bytes
    if pool <= 0 or splan.plan.peak_bytes != pool:
        raise PlanError(f"{where}: pool of {pool} B does not match peak {splan.plan.peak_bytes} B")
    bases = {}
    for p in splan.plan.placements:
        if not 0 <= p.offset < pool or p.size_bytes != graph.tensors[p.tensor].nbytes or p.size_bytes > pool:
            raise PlanError(f"{where}: {_name(graph, p.tensor)} at {p.offset} ({p.size_bytes} B) does not "
                            f"fit the pool of {pool} B")
        bases[p.tensor] = p.offset
    if tuple(s.op for s in splan.steps) != tuple(splan.plan.order):
        raise PlanError(f"{where}: steps do not follow the plan's order")
    for s in splan.steps:
        op = graph.ops[s.op]
        touched = [t for t in op.inputs + op.outputs if t != NO_TENSOR and not graph.tensors[t].is_const]
        missing = [t for t in touched if t not in bases and graph.tensors[t].nbytes > 0]
        if missing:
            raise PlanError(f"{where}: op {op.index} {op.type} uses {_name(graph, missing[0])}, which is not "
                            "placed")
        seg = s.segment_bytes
        if seg <= 0 or pool % seg or s.pool_bytes != pool:
            raise PlanError(f"{where}: op {op.index} {op.type}: segment {seg} B does not divide the pool "
                            f"{pool} B")
        for t in touched:
            if t in bases and bases[t] % seg:
                raise PlanError(f"{where}: op {op.index} {op.type}: {_name(graph, t)} at {bases[t]} is not "
                                f"on a {seg} B segment boundary")
        recorded = dict(zip(s.inputs, s.input_bases, strict=True)) | {s.output: s.output_base}
        if any(bases.get(t, -1) != b for t, b in recorded.items() if t != NO_TENSOR and t in bases):
            raise PlanError(f"{where}: op {op.index} {op.type}: step bases disagree with the placements")
    return bases


def _store(owner: np.ndarray, byte: np.ndarray, base: int, n: int, t: int, pool: int) -> None:
    addr = (base + np.arange(n)) % pool
    owner[addr] = t
    byte[addr] = np.arange(n)


def _sources(graph: Graph, op: Op, t: int) -> tuple[np.ndarray, np.ndarray]:
    """(input element, output element reading it) pairs of an elementwise-style op, input-centric."""
    inp, out = graph.tensors[t], graph.tensors[op.outputs[0]]
    in_idx = np.unravel_index(np.arange(inp.size), inp.shape) if inp.shape else ()
    if op.type == "MEAN":
        axes = op_params(graph, op).axes
        kept = [i for i in range(len(inp.shape)) if i not in axes]
        out_elem = (np.ravel_multi_index([in_idx[i] for i in kept], [inp.shape[i] for i in kept]) if kept
                    else 0)
        return np.arange(inp.size), np.broadcast_to(out_elem, (inp.size,))
    if op.type == "PAD":
        pads = op_params(graph, op).paddings
        out_elem = np.ravel_multi_index([i + b for i, (b, _) in zip(in_idx, pads, strict=True)], out.shape)
        return np.arange(inp.size), out_elem
    if op.type in ("ADD", "MUL") and inp.size != out.size:
        out_idx = np.unravel_index(np.arange(out.size), out.shape)
        lead = len(out.shape) - len(inp.shape)
        src = np.ravel_multi_index([out_idx[lead + a] if d > 1 else np.zeros(out.size, dtype=np.int64)
                                    for a, d in enumerate(inp.shape)], inp.shape)
        return src, np.arange(out.size)
    return np.arange(inp.size), np.arange(inp.size)


def access_pattern(graph: Graph, op: Op) -> tuple[dict[int, Runs], Runs]:
    """Every read (per input tensor) and write of the op's segment kernel as (step, offset, length) runs.

    A step stores one unit: an output pixel or row, or the output's last axis; a single element for the
    elementwise kernels that do not stage units (`stages_units`), which read an element and store its
    result before the next. Ops without a segment kernel write at step 0 and read at step 1: their
    output may not overlap.
    """
    out = graph.tensors[op.outputs[0]]
    eo = DTYPE_BYTES[out.dtype]
    inputs = list(dict.fromkeys(t for t in op.inputs if t != NO_TENSOR and not graph.tensors[t].is_const))
    if op.type in WINDOWED:
        return _windowed(graph, op)
    if op.type == FUSED_OP:
        return _fused(graph, op)
    if op.type in ("FULLY_CONNECTED", "SOFTMAX"):
        inp = graph.tensors[op.inputs[0]]
        depth = graph.tensors[op.inputs[1]].shape[1] if op.type == "FULLY_CONNECTED" else inp.shape[-1]
        rows = np.arange(inp.size // depth)
        ei = DTYPE_BYTES[inp.dtype]
        unit = out.nbytes // len(rows)
        return ({inp.index: (rows, rows * depth * ei, np.full(len(rows), depth * ei))},
                (rows, rows * unit, np.full(len(rows), unit)))
    if op.type in ELEMENTWISE:
        unit = (out.shape[-1] if out.shape else 1) if stages_units(graph, op) else 1
        reads = {}
        for t in inputs:
            src, dst = _sources(graph, op, t)
            ei = DTYPE_BYTES[graph.tensors[t].dtype]
            reads[t] = (dst // unit, src * ei, np.full(len(src), ei))
        steps = np.arange(out.size // unit)
        return reads, (steps, steps * unit * eo, np.full(len(steps), unit * eo))
    one, zero = np.ones(1, dtype=np.int64), np.zeros(1, dtype=np.int64)
    return {t: (one, zero, graph.tensors[t].nbytes * one) for t in inputs}, (zero, zero, out.nbytes * one)


def _windowed(graph: Graph, op: Op) -> tuple[dict[int, Runs], Runs]:
    """Each output pixel (row-major) reads every in-bounds tap of its window: C_in bytes per tap."""
    p = op_params(graph, op)
    n, h, w, c = p.input_shape
    _, oh, ow, oc = p.output_shape
    if op.type in ("CONV_2D", "DEPTHWISE_CONV_2D"):
        kh, kw, dh, dw = p.filter_shape[1], p.filter_shape[2], p.dilation_h, p.dilation_w
    else:
        kh, kw, dh, dw = p.filter_h, p.filter_w, 1, 1
    bn, oy, ox, a, b = np.meshgrid(np.arange(n), np.arange(oh), np.arange(ow), np.arange(kh), np.arange(kw),
                                   indexing="ij")
    iy = oy * p.stride_h - p.pad_top + a * dh
    ix = ox * p.stride_w - p.pad_left + b * dw
    ok = (iy >= 0) & (iy < h) & (ix >= 0) & (ix < w)
    step = ((bn * oh + oy) * ow + ox)[ok]
    ei = DTYPE_BYTES[graph.tensors[op.inputs[0]].dtype]
    eo = DTYPE_BYTES[graph.tensors[op.outputs[0]].dtype]
    offset = (((bn * h + iy) * w + ix) * c * ei)[ok]
    pixels = np.arange(n * oh * ow)
    return ({op.inputs[0]: (step, offset, np.full(len(step), c * ei))},
            (pixels, pixels * oc * eo, np.full(len(pixels), oc * eo)))


def _step_graph(graph: Graph, splan: SegmentPlan, where: str) -> Graph:
    """The graph the plan's steps run; a fused op must stand for ops of `graph` itself."""
    stepped = splan.step_graph(graph)
    for op in stepped.ops:
        if op.type == FUSED_OP and any(graph.ops[o.index] != o for o in fused_block(op).ops):
            raise PlanError(f"{where}: fused op {op.index} does not match the ops of the graph")
    return stepped


def _fused(graph: Graph, op: Op) -> tuple[dict[int, Runs], Runs]:
    """A fused inverted bottleneck, replayed as its kernel loops (vmcu.plan.fused): output pixels in
    row-major order; before each, the E pixels it expands ("recompute": the whole window at the row's
    first pixel, then the columns the window gains; "cache": row-major over the columns some window needs,
    up to the last pixel this window needs), each reading one C_in-byte input pixel; then the residual
    pixel. Every window tap must find its E pixel in the ring slot [row % Rh][col % Rw], or the
    workspace is too small."""
    block = fused_block(op)
    e, d, pr = (op_params(graph, o) for o in (block.expand, block.depthwise, block.project))
    pads = op_params(graph, block.pad).paddings if block.pad is not None else ((0, 0),) * 4
    _, _, w, c_in = e.input_shape
    _, mh, mw, _ = e.output_shape
    _, oh, ow, c_out = pr.output_shape
    kh, kw = d.filter_shape[1:3]
    sh, sw = d.stride_h * pr.stride_h, d.stride_w * pr.stride_w
    top, left = pads[1][0] + d.pad_top, pads[2][0] + d.pad_left
    cache = op.options["variant"] == "cache"
    ring_h, ring_w = min(kh, mh), (min((ow - 1) * sw - left + kw, mw) if cache else min(kw, mw))
    ring: dict[tuple[int, int], tuple[int, int]] = {}
    steps, offsets, done = [], [], -1
    for t in range(oh * ow):
        oy, ox = divmod(t, ow)
        r0, c0 = oy * sh - top, ox * sw - left
        rows = range(max(r0, 0), min(r0 + kh, mh))
        cols = range(max(c0, 0), min(c0 + kw, mw))
        if cache:
            last = rows[-1] * ring_w + cols[-1] if rows and cols else -1
            fresh = [divmod(i, ring_w) for i in range(done + 1, last + 1)]
            done = max(done, last)
        else:
            fresh = [(r, c) for c in cols if ox == 0 or c >= c0 + kw - sw for r in rows]
        for r, c in fresh:
            ring[r % ring_h, c % ring_w] = (r, c)
            steps.append(t)
            offsets.append(((r * e.stride_h) * w + c * e.stride_w) * c_in)
        if any(ring.get((r % ring_h, c % ring_w)) != (r, c) for r in rows for c in cols):
            raise PlanError(f"op {op.index} {op.type}: step {t} finds an expanded pixel evicted from its "
                            f"{ring_h}x{ring_w} ring")
        if block.add is not None:
            steps.append(t)
            offsets.append(t * c_in)
    pixels = np.arange(oh * ow)
    reads = (np.asarray(steps, dtype=np.int64), np.asarray(offsets, dtype=np.int64), np.full(len(steps), c_in))
    return {op.inputs[0]: reads}, (pixels, pixels * c_out, np.full(len(pixels), c_out))


def _first_writes(graph: Graph, op: Op, writes: Runs, where: str) -> np.ndarray:
    """Per output byte, the step that stores it; every byte must be stored exactly once."""
    n = graph.tensors[op.outputs[0]].nbytes
    steps, offsets, lengths = writes
    total = int(lengths.sum())
    each = np.repeat(offsets - np.cumsum(lengths) + lengths, lengths) + np.arange(total)
    first = np.full(n, NEVER, dtype=np.int64)
    if total != n or each.min(initial=0) < 0 or each.max(initial=0) >= n:
        raise PlanError(f"{where}: op {op.index} {op.type} does not store each of its {n} output bytes once")
    np.minimum.at(first, each, np.repeat(steps, lengths))
    if (first == NEVER).any():
        raise PlanError(f"{where}: op {op.index} {op.type} leaves output bytes unwritten")
    return first


def _range_min_table(values: np.ndarray, longest: int) -> np.ndarray:
    """table[j, i] = min(values[i : i + 2**j]) (clipped at the end), for 2**j <= longest."""
    levels = max(1, int(longest).bit_length())
    table = np.full((levels, len(values)), NEVER, dtype=np.int64)
    table[0] = values
    for j in range(1, levels):
        half = 1 << (j - 1)
        table[j] = table[j - 1]
        table[j, :-half] = np.minimum(table[j - 1, :-half], table[j - 1, half:])
    return table


def _range_min(table: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """min(values[lo:hi]) per query; NEVER where the range is empty."""
    out = np.full(len(lo), NEVER, dtype=np.int64)
    some = hi > lo
    span = (hi - lo)[some]
    j = np.floor(np.log2(np.maximum(span, 1))).astype(np.int64)
    start, stop = lo[some], hi[some]
    out[some] = np.minimum(table[j, start], table[j, stop - (1 << j)])
    return out


def _replay(graph: Graph, op: Op, reads: dict[int, Runs], writes: Runs, bases: dict[int, int],
            owner: np.ndarray, byte: np.ndarray, pool: int, where: str) -> None:
    out = op.outputs[0]
    n_out = graph.tensors[out].nbytes
    first = _first_writes(graph, op, writes, where)
    longest = max((int(r[2].max(initial=1)) for r in reads.values()), default=1)
    table = _range_min_table(first, longest)
    failures = []
    for t, (steps, offsets, lengths) in reads.items():
        size = graph.tensors[t].nbytes
        if len(offsets) and (offsets.min() < 0 or (offsets + lengths).max() > size):
            raise PlanError(f"{where}: op {op.index} {op.type} reads outside {_name(graph, t)}")
        addr = (bases[t] + np.arange(size)) % pool
        held = (owner[addr] == t) & (byte[addr] == np.arange(size))
        broken = np.concatenate(([0], np.cumsum(~held)))
        stale = broken[offsets + lengths] > broken[offsets]
        start = (bases[t] + offsets - bases[out]) % pool
        end = start + lengths
        mine = np.minimum(_range_min(table, start, np.minimum(np.minimum(end, pool), n_out)),
                          _range_min(table, np.zeros_like(start), np.minimum(end - pool, n_out)))
        clobbered = mine < steps
        bad = np.flatnonzero(stale | clobbered)
        if bad.size:
            k = bad[np.argmin(steps[bad])]
            failures.append((int(steps[k]), t, int(offsets[k]), int(lengths[k]), bool(stale[k])))
    if failures:
        step, t, offset, length, stale = min(failures)
        _raise(graph, op, t, offset, length, step, stale, bases, owner, byte, first, pool, where)
    _store(owner, byte, bases[out], n_out, out, pool)


def _raise(graph: Graph, op: Op, t: int, offset: int, length: int, step: int, stale: bool,
           bases: dict[int, int], owner: np.ndarray, byte: np.ndarray, first: np.ndarray, pool: int,
           where: str) -> None:
    """Name the first byte of the failing read and what overwrote it."""
    out = op.outputs[0]
    i, addr, culprit = offset, (bases[t] + offset) % pool, "an unknown write"
    for i in range(offset, offset + length):
        addr = (bases[t] + i) % pool
        rel = (addr - bases[out]) % pool
        if stale and (owner[addr] != t or byte[addr] != i):
            culprit = f"{_name(graph, int(owner[addr]))}" if owner[addr] != -1 else "nothing (never written)"
            break
        if not stale and rel < len(first) and first[rel] < step:
            culprit = f"{_name(graph, out)} (its own output, stored at step {first[rel]})"
            break
    raise PlanError(f"{where}: op {op.index} {op.type} step {step} reads {_name(graph, t)} byte {i} at pool "
                    f"address {addr}, overwritten by {culprit}")


def _name(graph: Graph, t: int) -> str:
    if t == SCRATCH:
        return "kernel scratch"
    return f"tensor {t} '{graph.tensors[t].name}'" if 0 <= t < len(graph.tensors) else f"tensor {t}"
