"""How far back an op's output may start from its input: the vMCU gap, by enumeration and in closed form.

A segment kernel runs in steps, one per output unit, in row-major order of the output tensor. The unit
is an output pixel (all channels) for CONV_2D, DEPTHWISE_CONV_2D, AVERAGE/MAX_POOL_2D; an output row
(batch) for FULLY_CONNECTED; the output's last axis for every other op (one pixel of PAD, ADD, MUL,
LOGISTIC, QUANTIZE, DEQUANTIZE; one softmax row; one MEAN output row; one RESHAPE row). Step t reads
every input byte its unit depends on, computes the unit into a workspace and only then stores it at
output bytes [t*U, (t+1)*U), so the output is written front to back. (Elementwise kernels whose
output elements are no wider than their input's store each element as soon as it is computed, without
a workspace; with gap >= 0 that is the same constraint, see `stages_units`.) Input is freed in layout
order: after step t the bytes below the lowest offset any later step reads are dead.

With the output at `b_out = b_in - gap` (mod pool), the store of step t must not reach an input byte a
later step reads (paper Eq. 1). The least such gap, for one input of size-U steps, is

    gap = max(0, max_{t < T-1} ((t+1)*U - min_{t' > t} low(t')))         low(t') = lowest byte read at t'

which `enumerated_gap` computes literally. Since (t+1)*U grows with t, the best t for a given t' is
t'-1, so gap = max(0, max_{t'>=1} (t'*U - low(t'))). For windowed ops t' and low(t') are sums of one
term per axis, so the max separates into one max per axis; each axis is linear in its index except
over the padded border (at most ceil(pad/stride) positions), which gives `window_closed_form`; PAD,
MEAN, FC and elementwise ops separate the same way (`closed_form_gap`).
TRANSPOSE and CONCATENATION (and any op without a schedule here) have no segment kernel: their output
may not overlap their inputs at all (`overlap` is False and the gap is the whole output); the same holds
for single-step kernels that stage their unit (see `op_schedule`). A fused inverted bottleneck
(FUSED_OP, vmcu.ir.fusion) is one more kind: one step per output pixel, its gap enumerated from the
lowest input byte each step of its loop reads (`fused_schedule`, vmcu.plan.fused).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vmcu.errors import PlanError
from vmcu.ir.fusion import FUSED_OP, fused_block
from vmcu.ir.graph import DTYPE_BYTES, NO_TENSOR, Graph, Op, Tensor
from vmcu.ir.params import op_params
from vmcu.plan.fused import fused_geometry, input_lows, workspace_bytes

WINDOWED_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "AVERAGE_POOL_2D", "MAX_POOL_2D")
ELEMENTWISE_OPS = ("ADD", "MUL", "LOGISTIC", "QUANTIZE", "DEQUANTIZE", "RESHAPE", "SOFTMAX")
SEGMENT_OPS = WINDOWED_OPS + ELEMENTWISE_OPS + ("FULLY_CONNECTED", "MEAN", "PAD")
NO_READ = np.iinfo(np.int64).max  # `low` of a step that reads nothing from an input


@dataclass(frozen=True)
class WindowGeometry:
    """The addressing of a windowed op on NHWC tensors; `in_bytes`/`out_bytes` are bytes per element."""

    batches: int
    in_h: int
    in_w: int
    in_c: int
    out_h: int
    out_w: int
    out_c: int
    kernel_h: int
    kernel_w: int
    stride_h: int = 1
    stride_w: int = 1
    dilation_h: int = 1
    dilation_w: int = 1
    pad_top: int = 0
    pad_left: int = 0
    in_bytes: int = 1
    out_bytes: int = 1

    @property
    def unit_bytes(self) -> int:
        return self.out_c * self.out_bytes


@dataclass(frozen=True)
class OpSchedule:
    """One op's segment kernel reduced to what planning needs.

    `gaps` maps each distinct activation input to the least gap in bytes (not yet rounded to segments);
    `segment_bytes` is the default segment size; `steps` x `unit_bytes` is the output size;
    `workspace_bytes` is what the kernel needs to stage a unit when its output overlaps an input;
    `scratch_bytes` what it needs in any case (a fused block's expanded pixels and depthwise pixel).
    """

    op: int
    overlap: bool
    steps: int
    unit_bytes: int
    segment_bytes: int
    gaps: tuple[tuple[int, int], ...]
    workspace_bytes: int
    scratch_bytes: int = 0

    def gap(self, tensor: int) -> int:
        return dict(self.gaps)[tensor]


def round_up(n: int, multiple: int) -> int:
    """`n` rounded up to a whole number of segments."""
    return -(-n // multiple) * multiple


def enumerated_gap(lows: np.ndarray, unit_bytes: int) -> int:
    """The least gap, straight from its definition: for every step t, the end of the output stored at or
    before t minus the lowest input byte read after t (linear time)."""
    lows = np.asarray(lows, dtype=np.int64)
    if lows.size < 2:
        return 0
    later = np.minimum.accumulate(lows[::-1])[::-1][1:]  # lowest byte read at any step after t
    ends = np.arange(1, lows.size, dtype=np.int64) * unit_bytes
    read = later != NO_READ
    return max(0, int((ends[read] - later[read]).max())) if read.any() else 0


def first_taps(out_n: int, in_n: int, kernel: int, stride: int, dilation: int, pad: int) -> np.ndarray:
    """Per output position along one axis, the first in-bounds input position its window reads (or -1)."""
    start = np.arange(out_n, dtype=np.int64) * stride - pad
    skip = np.where(start < 0, (-start + dilation - 1) // dilation, 0)  # taps that fall before the input
    first = start + skip * dilation
    return np.where((skip < kernel) & (first < in_n) & (first >= 0), first, -1)


def window_lows(g: WindowGeometry) -> np.ndarray:
    """Lowest input byte each output pixel reads, in step order (NO_READ for a window fully in padding)."""
    rows = first_taps(g.out_h, g.in_h, g.kernel_h, g.stride_h, g.dilation_h, g.pad_top)
    cols = first_taps(g.out_w, g.in_w, g.kernel_w, g.stride_w, g.dilation_w, g.pad_left)
    n = np.arange(g.batches, dtype=np.int64)[:, None, None]
    pixel = (n * g.in_h + rows[None, :, None]) * g.in_w + cols[None, None, :]
    valid = np.broadcast_to((rows[:, None] >= 0) & (cols[None, :] >= 0), pixel.shape)
    return np.where(valid, pixel * g.in_c * g.in_bytes, NO_READ).reshape(-1)


def _axis_max(out_n: int, in_n: int, kernel: int, stride: int, dilation: int, pad: int,
              out_step: int, in_step: int) -> int | None:
    """max over output positions o of (o*out_step - first(o)*in_step); None if no position reads input.

    Past the padded border first(o) = o*stride - pad, a linear function, so only its two ends count; the
    border holds at most ceil(pad/stride) positions, each checked on its own.
    """
    inner = min(-(-pad // stride), out_n)
    last = min(out_n - 1, (in_n - 1 + pad) // stride)  # last position whose window starts inside
    values = []
    for o in range(inner):
        start = o * stride - pad
        skip = -(start // dilation)
        first = start + skip * dilation
        if skip < kernel and first < in_n:
            values.append(o * out_step - first * in_step)
    if inner <= last:
        values += [o * out_step - (o * stride - pad) * in_step for o in (inner, last)]
    return max(values) if values else None


def window_closed_form(g: WindowGeometry) -> int:
    """The least gap of a windowed op without enumerating its pixels (see the module docstring).

    gap = max(0, max_oy [oy*Wo*U - r(oy)*W*Ci] + max_ox [ox*U - c(ox)*Ci] + max(0, (N-1)*(|Out_1|-|In_1|)))
    with U the output pixel bytes, r/c the first input row/column a window reads, |X_1| one image.
    E.g. kxk stride 1 SAME with Ci = Co = C: ((k//2)*W + k//2)*C, (W+1)*C for 3x3; stride >= 2: about 0.
    """
    ci = g.in_c * g.in_bytes
    rows = _axis_max(g.out_h, g.in_h, g.kernel_h, g.stride_h, g.dilation_h, g.pad_top,
                     g.out_w * g.unit_bytes, g.in_w * ci)
    cols = _axis_max(g.out_w, g.in_w, g.kernel_w, g.stride_w, g.dilation_w, g.pad_left, g.unit_bytes, ci)
    if rows is None or cols is None:
        return 0
    image = g.out_h * g.out_w * g.unit_bytes - g.in_h * g.in_w * ci
    return max(0, rows + cols + max(0, (g.batches - 1) * image))


def element_bytes(t: Tensor) -> int:
    return DTYPE_BYTES[t.dtype]


def window_geometry(graph: Graph, op: Op) -> WindowGeometry:
    """The geometry of a CONV_2D, DEPTHWISE_CONV_2D or pooling op, from its TFLite parameters."""
    p = op_params(graph, op)
    n, h, w, c = p.input_shape
    _, oh, ow, oc = p.output_shape
    if op.type in ("CONV_2D", "DEPTHWISE_CONV_2D"):
        kh, kw, dh, dw = p.filter_shape[1], p.filter_shape[2], p.dilation_h, p.dilation_w
    else:
        kh, kw, dh, dw = p.filter_h, p.filter_w, 1, 1
    inp, out = graph.tensors[op.inputs[0]], graph.tensors[op.outputs[0]]
    return WindowGeometry(n, h, w, c, oh, ow, oc, kh, kw, p.stride_h, p.stride_w, dh, dw, p.pad_top,
                          p.pad_left, element_bytes(inp), element_bytes(out))


def _last_axis(t: Tensor) -> int:
    return t.shape[-1] if t.shape else 1


def activation_inputs(graph: Graph, op: Op) -> list[int]:
    """The op's distinct non-constant input tensors, in input order."""
    return list(dict.fromkeys(i for i in op.inputs if i != NO_TENSOR and not graph.tensors[i].is_const))


def unit_bytes(graph: Graph, op: Op) -> int:
    """Output bytes one kernel step stores: a pixel, an FC row or the output's last axis."""
    out = graph.tensors[op.outputs[0]]
    if op.type == "FULLY_CONNECTED":
        return graph.tensors[op.inputs[1]].shape[0] * element_bytes(out)
    return _last_axis(out) * element_bytes(out)


def _element_sources(graph: Graph, op: Op, tensor: int) -> np.ndarray:
    """For each output element (flat order), the input elements of `tensor` it reads: shape (out, k)."""
    inp, out = graph.tensors[tensor], graph.tensors[op.outputs[0]]
    index = np.arange(inp.size, dtype=np.int64).reshape(inp.shape)
    if op.type == "MEAN":
        axes = op_params(graph, op).axes
        kept = [a for a in range(len(inp.shape)) if a not in axes]
        return index.transpose(kept + list(axes)).reshape(out.size, -1)
    if op.type == "PAD":
        p = op_params(graph, op)
        full = np.full(out.shape, NO_READ, dtype=np.int64)
        full[tuple(slice(b, b + d) for (b, _), d in zip(p.paddings, inp.shape, strict=True))] = index
        return full.reshape(-1, 1)
    if op.type in ("ADD", "MUL"):
        shape = (1,) * (len(out.shape) - len(inp.shape)) + tuple(inp.shape)
        return np.broadcast_to(index.reshape(shape), out.shape).reshape(-1, 1)
    return index.reshape(-1, 1)


def read_lows(graph: Graph, op: Op) -> dict[int, np.ndarray]:
    """Per distinct activation input, the lowest byte offset each kernel step reads (NO_READ if none)."""
    if op.type in WINDOWED_OPS:
        return {op.inputs[0]: window_lows(window_geometry(graph, op))}
    if op.type == "FULLY_CONNECTED":
        inp = graph.tensors[op.inputs[0]]
        depth = graph.tensors[op.inputs[1]].shape[1]
        return {inp.index: np.arange(inp.size // depth, dtype=np.int64) * depth * element_bytes(inp)}
    out = graph.tensors[op.outputs[0]]
    per_unit = _last_axis(out)
    lows = {}
    for t in activation_inputs(graph, op):
        first = _element_sources(graph, op, t).min(axis=1).reshape(-1, per_unit).min(axis=1)
        lows[t] = np.where(first == NO_READ, NO_READ, first * element_bytes(graph.tensors[t]))
    return lows


def closed_form_gap(graph: Graph, op: Op, tensor: int) -> int | None:
    """The least gap for input `tensor` from shapes alone; None where only enumeration applies.

    FC: max(0, (B-1)*(N-K)) bytes, 0 for one row. Same-shape elementwise, softmax, reshape: max(0,
    (T-1)*(Uout-Uin)). Input broadcast along all but the last axis: (T-1)*U (read by every step). PAD:
    each axis a adds max(0, (D_a-1)*(stride_out_a - stride_in_a)) plus the bytes of padding before the
    first input pixel. MEAN: the same sum over the kept axes other than the output row's. Windowed ops:
    `window_closed_form`.
    """
    out = graph.tensors[op.outputs[0]]
    inp = graph.tensors[tensor]
    ei, eo = element_bytes(inp), element_bytes(out)
    if op.type in WINDOWED_OPS:
        return window_closed_form(window_geometry(graph, op))
    if op.type == "FULLY_CONNECTED":
        n, k = graph.tensors[op.inputs[1]].shape
        return max(0, (inp.size // k - 1) * (n * eo - k * ei))
    unit = unit_bytes(graph, op)
    steps = out.size * eo // unit if unit else 0
    if op.type == "MEAN":
        return _mean_closed_form(graph, op, unit)
    if op.type == "PAD":
        return _pad_closed_form(graph, op, unit)
    if op.type not in ELEMENTWISE_OPS:
        return None
    if inp.size == out.size:
        return max(0, (steps - 1) * (unit - _last_axis(out) * ei))
    if inp.size == _last_axis(out) and inp.shape and inp.shape[-1] == inp.size:
        return max(0, (steps - 1) * unit)
    return None


def _row_major_strides(shape: tuple[int, ...], element: int) -> list[int]:
    strides, step = [], element
    for d in reversed(shape):
        strides.append(step)
        step *= d
    return strides[::-1]


def _mean_closed_form(graph: Graph, op: Op, unit: int) -> int:
    """MEAN: a step is one output row (the output's last axis); it first reads the input element with
    every reduced index and its row index at 0, so t'*U - low is linear along each other kept axis."""
    p = op_params(graph, op)
    inp = graph.tensors[op.inputs[0]]
    kept = [a for a in range(len(inp.shape)) if a not in p.axes]
    row_is_kept_axis = bool(kept) and (kept[-1] == len(inp.shape) - 1 or not p.keep_dims)
    step_axes = kept[:-1] if row_is_kept_axis else kept
    in_strides = _row_major_strides(inp.shape, element_bytes(inp))
    total, out_stride = 0, unit
    for axis in reversed(step_axes):
        total += max(0, (inp.shape[axis] - 1) * (out_stride - in_strides[axis]))
        out_stride *= inp.shape[axis]
    return total


def _pad_closed_form(graph: Graph, op: Op, unit: int) -> int:
    """PAD: step t' of interior pixel i reads input pixel i; t'*U - low is a sum of one linear term per
    axis, each at its maximum at the first or the last input index."""
    p = op_params(graph, op)
    inp = graph.tensors[op.inputs[0]]
    if inp.size == 0:
        return 0
    in_pixel = p.input_shape[-1] * element_bytes(inp)
    total = 0
    out_stride, in_stride = unit, in_pixel
    for axis in range(len(p.input_shape) - 2, -1, -1):
        before = p.paddings[axis][0]
        total += max(0, (p.input_shape[axis] - 1) * (out_stride - in_stride)) + before * out_stride
        out_stride *= p.output_shape[axis]
        in_stride *= p.input_shape[axis]
    return max(0, total)


def default_segment_bytes(graph: Graph, op: Op) -> int:
    """vMCU's segment size: min(C_in, C_out) pixel bytes for conv-like ops, min(row_in, row_out) for FC,
    the smaller last-axis bytes of input and output for the rest."""
    out = graph.tensors[op.outputs[0]]
    if op.type in WINDOWED_OPS:
        g = window_geometry(graph, op)
        return min(g.in_c * g.in_bytes, g.unit_bytes)
    if op.type == "FULLY_CONNECTED":
        k = graph.tensors[op.inputs[1]].shape[1]
        return min(k * element_bytes(graph.tensors[op.inputs[0]]), unit_bytes(graph, op))
    tensors = [out] + [graph.tensors[t] for t in activation_inputs(graph, op)]
    sizes = [_last_axis(t) * element_bytes(t) for t in tensors]
    return max(1, min(sizes))


def stages_units(graph: Graph, op: Op) -> bool:
    """Whether the kernel computes each unit into a workspace before storing it.

    Reductions (windowed ops, FC, MEAN, SOFTMAX) and PAD must: storing part of a unit could overwrite
    input bytes the rest of it reads. Elementwise ops whose output elements are no wider than their
    input's store each element right after reading it: with the output at or before the input
    (gap >= 0), element j lands on bytes of elements <= j, already read.
    """
    if op.type in ELEMENTWISE_OPS and op.type != "SOFTMAX":
        out = element_bytes(graph.tensors[op.outputs[0]])
        return any(out > element_bytes(graph.tensors[t]) for t in activation_inputs(graph, op))
    return True


def op_schedule(graph: Graph, op: Op) -> OpSchedule:
    """The schedule facts of one op.

    Ops without a segment kernel get `overlap=False`, one step and segment 1: their kernel addresses
    every element modulo the pool, and their output may not overlap their inputs. So do single-step
    kernels that stage their unit (an FC or softmax on one row, a global MEAN): their output depends
    on all of their input, and overlapping it would save no more than the workspace costs.
    """
    if len(op.outputs) != 1:
        raise PlanError(f"{graph.name}: op {op.index} {op.type} has {len(op.outputs)} outputs; segment "
                        "planning needs exactly one")
    if op.type == FUSED_OP:
        return fused_schedule(graph, op)
    out = graph.tensors[op.outputs[0]]
    inputs = activation_inputs(graph, op)
    unit = unit_bytes(graph, op) if op.type in SEGMENT_OPS else 0
    steps = out.nbytes // unit if unit else 1
    staged = stages_units(graph, op)
    if op.type not in SEGMENT_OPS or (steps <= 1 and staged):
        return OpSchedule(op.index, False, 1, out.nbytes, 1, tuple((t, out.nbytes) for t in inputs), 0)
    gaps = tuple((t, enumerated_gap(lows, unit)) for t, lows in read_lows(graph, op).items())
    return OpSchedule(op.index, True, steps, unit, default_segment_bytes(graph, op), gaps,
                      unit if staged else 0)


def fused_schedule(graph: Graph, op: Op) -> OpSchedule:
    """A fused inverted bottleneck (vmcu.plan.fused): one step per output pixel, stored straight into the
    pool, the gap of its loop order by enumeration, the segment min(C_in, C_out) as for a conv, and the
    expanded pixels and depthwise pixel as scratch. One output pixel: no overlap, as for staged kernels."""
    g = fused_geometry(graph, fused_block(op))
    variant = op.options["variant"]
    x, out = op.inputs[0], graph.tensors[op.outputs[0]]
    scratch = workspace_bytes(g, variant)
    if g.steps <= 1:
        return OpSchedule(op.index, False, 1, out.nbytes, 1, ((x, out.nbytes),), 0, scratch)
    gap = enumerated_gap(input_lows(g, variant), g.out_c)
    return OpSchedule(op.index, True, g.steps, g.out_c, min(g.in_c, g.out_c), ((x, gap),), 0, scratch)
