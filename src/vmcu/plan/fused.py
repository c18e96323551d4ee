"""The fused inverted-bottleneck schedule of vMCU: loop order, workspace, MACs and its NumPy arithmetic.

Notation: X (H, W, C_in) is the block input, E (He, We, C_mid) the expanded tensor (1x1 conv, stride se:
E[y, x] reads X[y*se, x*se]), D the depthwise output, Y (Ho, Wo, C_out) the block output (project,
+ X when residual). One kernel step per output pixel t = oy*Wo + ox, in row-major order. The depthwise
window of step t covers E rows r0 .. r0+kh-1, r0 = oy*sh - pad_top, and columns c0 .. c0+kw-1,
c0 = ox*sw - pad_left, where sh/sw are the depthwise stride times the project stride and the padding is
the depthwise's plus an absorbed PAD's. Taps outside E are skipped (they would contribute 0).

Step t: (1) expand the E pixels it needs that the workspace lacks, reading one X pixel each, into the ring
slot [row % Rh][col % Rw]; (2) compute the depthwise pixel from the window into a C_mid buffer; (3) compute
each projected channel, add the residual X[t] channel, store it to Y. The output is stored straight into
the pool: every X byte of step t is read before its first store (the residual channel c just before
output channel c, and with the output at or before the input the store of channel c lands on input
bytes of channels <= c, already read). E and D never exist in full. Two variants:

- "recompute": the ring is the window, Rh x Rw = min(kh, He) x min(kw, We) pixels. Moving right by one
  output pixel keeps the kw - sw overlapping columns and expands only the new ones (all at ox = 0);
  each E pixel is expanded again for every output row whose window covers it (about kh/sh times).
  Workspace = (Rh*Rw + 1) * C_mid bytes: vMCU's "R*R + 2 segments of C_mid" without the output segment.
- "cache": the ring holds Rh = min(kh, He) rows of E, a stream buffer, each of the Rw columns some window
  needs (Rw = We but for columns right of the last window). E pixels are expanded once each, in row-major
  order over those columns, lazily: step t expands every pixel up to the last one its window needs (row
  min(r0+kh-1, He-1), column min(c0+kw-1, Rw-1)). Workspace = (Rh*Rw + 1) * C_mid. No extra MACs; every
  input pixel is read no later than "recompute" first reads it, so the gap is never larger.

Blocks fuse only when sh <= kh and sw <= kw (vmcu.ir.fusion): then every E row and column up to the
last window's is needed by some window.

The gap comes from `input_lows` (the lowest X byte each step reads) by the enumeration of segment_gap.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from vmcu.ir.analysis import op_macs
from vmcu.ir.fusion import VARIANTS, FusedBlock
from vmcu.ir.graph import Graph
from vmcu.ir.params import AddParams, Conv2DParams, DepthwiseConv2DParams, op_params
from vmcu.kernels.scratch import SCRATCH_MAX, scratch_bytes
from vmcu.reference.kernels_conv import conv2d, depthwise_conv2d
from vmcu.reference.kernels_misc import add

NO_READ = np.iinfo(np.int64).max
DW_ROW_MIN = 8  # FUSED_DW_ROW_MIN of kernels/seg/fused_ib_arm.c


@dataclass(frozen=True)
class FusedGeometry:
    """Shapes and strides of a fused block in the coordinates of its loops (see the module docstring)."""

    in_h: int
    in_w: int
    in_c: int
    mid_h: int
    mid_w: int
    mid_c: int
    out_h: int
    out_w: int
    out_c: int
    kernel_h: int
    kernel_w: int
    expand_stride_h: int
    expand_stride_w: int
    step_h: int
    step_w: int
    pad_top: int
    pad_left: int
    residual: bool

    @property
    def steps(self) -> int:
        return self.out_h * self.out_w

    @property
    def ring_h(self) -> int:
        return min(self.kernel_h, self.mid_h)

    def ring_w(self, variant: str) -> int:
        """Columns of the E ring: the window's for "recompute", every column a window needs for "cache"."""
        if variant == "recompute":
            return min(self.kernel_w, self.mid_w)
        return min((self.out_w - 1) * self.step_w - self.pad_left + self.kernel_w, self.mid_w)


def fused_depthwise_params(graph: Graph, block: FusedBlock) -> DepthwiseConv2DParams:
    """The depthwise conv stated on E itself: an absorbed PAD's padding is added to its own."""
    d: DepthwiseConv2DParams = op_params(graph, block.depthwise)
    if block.pad is None:
        return d
    (_, _), (top, bottom), (left, right), _ = op_params(graph, block.pad).paddings
    return replace(d, input_shape=graph.tensors[block.expand.outputs[0]].shape, pad_top=d.pad_top + top,
                   pad_bottom=d.pad_bottom + bottom, pad_left=d.pad_left + left, pad_right=d.pad_right + right)


def fused_geometry(graph: Graph, block: FusedBlock) -> FusedGeometry:
    """The geometry of a block, from the TFLite parameters of its ops."""
    e: Conv2DParams = op_params(graph, block.expand)
    d = fused_depthwise_params(graph, block)
    p: Conv2DParams = op_params(graph, block.project)
    _, h, w, c_in = e.input_shape
    _, mh, mw, c_mid = e.output_shape
    _, oh, ow, c_out = p.output_shape
    return FusedGeometry(h, w, c_in, mh, mw, c_mid, oh, ow, c_out, d.filter_shape[1], d.filter_shape[2],
                         e.stride_h, e.stride_w, d.stride_h * p.stride_h, d.stride_w * p.stride_w,
                         d.pad_top, d.pad_left, block.add is not None)


@dataclass(frozen=True)
class FusedIBParams:
    """What the C kernel vmcu_seg_fused_ib_s8 takes (vmcu_fused_ib_params_t): the sub-ops' params, the
    ADD's operand order and the ring of the variant; `workspace_bytes` is the plan's workspace (the
    kernel's `workspace` argument)."""

    expand: Conv2DParams
    depthwise: DepthwiseConv2DParams
    project: Conv2DParams
    add: AddParams | None
    residual_first: bool
    cache: bool
    ring_h: int
    ring_w: int
    workspace_bytes: int


def _pointwise_scratch(k: int, out_c: int, records: bool, staged: bool) -> tuple[int, int, int]:
    """A 1x1 conv's buffers in the arm kernel: the bytes that last the whole call (its channel table, or the
    one-pixel loops' records for k 8 or 16 when `records`, and the padded last weight row when k % 4), the
    bytes of its staging row (when `staged`) and column, and the column's pixels (4, or 2 when 4 take more
    than SCRATCH_MAX, as in the tensor kernel)."""
    groups = (k + 3) // 4
    rest = (8 * groups if k % 4 else 0) + 4 * (out_c + 2)
    px = 4 if 32 * groups + rest <= SCRATCH_MAX else 2
    table = 4 * (out_c + 2)
    if records and k in (8, 16) and out_c % 2 == 0 and (2 * k + 16) * out_c <= SCRATCH_MAX:
        table = max(table, (2 * k + 16) * out_c)
    return table + (4 * groups if k % 4 else 0), (4 * groups if staged else 0) + 8 * px * groups, px


def kernel_scratch_bytes(p: FusedIBParams, kernels: str) -> int:
    """The C kernel's `scratch` (4-byte aligned) beyond the plan's workspace: none for the portable
    kernel; for the arm one (kernels/seg/fused_ib_arm.c) the tables of both 1x1 convs, the depthwise records
    it builds once for the rows it hands the DSP depthwise kernel (at most SCRATCH_MAX bytes of them), the
    project's column and block of output pixels, then the expand's column, which shares its bytes with the
    depthwise output row and the DSP depthwise kernel's scratch for that row ("cache" with rows of DW_ROW_MIN
    pixels or more) or with two words per depthwise tap."""
    if kernels == "ref":
        return 0
    in_c, mid_c = p.expand.input_shape[3], p.depthwise.input_shape[3]
    _, _, out_w, out_c = p.project.output_shape
    _, kh, kw, _ = p.depthwise.filter_shape
    rowwise = p.cache and out_w >= DW_ROW_MIN
    project, project_columns, px = _pointwise_scratch(mid_c, out_c, rowwise, rowwise and mid_c % 4 != 0)
    expand, expand_columns, _ = _pointwise_scratch(in_c, mid_c, True, True)
    record = 4 * (16 + 2 * kh * kw)  # a depthwise group's record: the first groups' are built once
    records = record * min(mid_c // 4, SCRATCH_MAX // record) if rowwise else 0
    size = project + expand + records + project_columns + (px * out_c + 3) // 4 * 4
    if not rowwise:
        return size + max(expand_columns, 8 * kh * kw)
    row = replace(p.depthwise, input_shape=(1, p.ring_h, p.ring_w, mid_c), output_shape=(1, 1, out_w, mid_c),
                  stride_w=p.depthwise.stride_w * p.project.stride_w)
    depthwise = (out_w * mid_c + 3) // 4 * 4 + scratch_bytes("DEPTHWISE_CONV_2D", row, "arm")
    return size + max(expand_columns, depthwise)


def fused_params(graph: Graph, block: FusedBlock, variant: str) -> FusedIBParams:
    """The C kernel's params of `block` run as `variant`."""
    g = fused_geometry(graph, block)
    add_params = op_params(graph, block.add) if block.add is not None else None
    first = block.add is not None and block.add.inputs[0] == block.input
    return FusedIBParams(op_params(graph, block.expand), fused_depthwise_params(graph, block),
                         op_params(graph, block.project), add_params, first, variant == "cache", g.ring_h,
                         g.ring_w(variant), workspace_bytes(g, variant))


def _check_variant(variant: str) -> None:
    if variant not in VARIANTS:
        raise ValueError(f"fused variant must be one of {VARIANTS}, not {variant!r}")


def expanded_pixels(g: FusedGeometry, variant: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(step, row, col) of every E pixel the kernel expands, in the order it expands them."""
    _check_variant(variant)
    oy, ox = np.divmod(np.arange(g.steps, dtype=np.int64), g.out_w)
    r0, c0 = oy * g.step_h - g.pad_top, ox * g.step_w - g.pad_left
    if variant == "cache":
        width = g.ring_w(variant)
        r_last = np.minimum(r0 + g.kernel_h - 1, g.mid_h - 1)
        c_last = np.minimum(c0 + g.kernel_w - 1, width - 1)
        empty = (r_last < np.maximum(r0, 0)) | (c_last < np.maximum(c0, 0))
        done = np.maximum.accumulate(np.where(empty, -1, r_last * width + c_last))
        counts = np.diff(done, prepend=-1)
        first = np.repeat(done - counts + 1, counts)
        index = first + np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
        return np.repeat(np.arange(g.steps), counts), index // width, index % width
    a = np.arange(g.kernel_h)
    j = np.arange(g.kernel_w)
    t = np.arange(g.steps)[:, None, None]
    row = r0[:, None, None] + a[None, None, :]
    col = c0[:, None, None] + j[None, :, None]
    new = (ox[:, None, None] == 0) | (j[None, :, None] >= g.kernel_w - g.step_w)
    keep = new & (row >= 0) & (row < g.mid_h) & (col >= 0) & (col < g.mid_w)
    shape = (g.steps, g.kernel_w, g.kernel_h)
    return (np.broadcast_to(t, shape)[keep], np.broadcast_to(row, shape)[keep],
            np.broadcast_to(col, shape)[keep])


def input_offsets(g: FusedGeometry, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Byte offset in X of the pixel each E pixel (row, col) is expanded from."""
    return ((rows * g.expand_stride_h) * g.in_w + cols * g.expand_stride_w) * g.in_c


def input_lows(g: FusedGeometry, variant: str) -> np.ndarray:
    """Per step, the lowest X byte it reads (an expanded pixel's or the residual's; NO_READ if none)."""
    steps, rows, cols = expanded_pixels(g, variant)
    lows = np.full(g.steps, NO_READ, dtype=np.int64)
    np.minimum.at(lows, steps, input_offsets(g, rows, cols))
    if g.residual:
        lows = np.minimum(lows, np.arange(g.steps, dtype=np.int64) * g.in_c)
    return lows


def workspace_bytes(g: FusedGeometry, variant: str) -> int:
    """The E ring plus one depthwise pixel (the output pixel goes straight to the pool)."""
    return (g.ring_h * g.ring_w(variant) + 1) * g.mid_c


def fused_macs(g: FusedGeometry, variant: str) -> int:
    """MACs of the fused kernel: every expansion it does, one depthwise pixel (all kh*kw taps, as
    `op_macs` counts) and one projected pixel per step."""
    expanded = len(expanded_pixels(g, variant)[0])
    return (expanded * g.in_c * g.mid_c + g.steps * g.kernel_h * g.kernel_w * g.mid_c
            + g.steps * g.mid_c * g.out_c)


def unfused_macs(graph: Graph, block: FusedBlock) -> int:
    """MACs of the block's three convolutions run layer by layer."""
    return sum(op_macs(graph, op) for op in (block.expand, block.depthwise, block.project))


@dataclass(frozen=True)
class FusedArithmetic:
    """The int8 arithmetic of one step's pieces, by TFLM's reference kernels on a few pixels."""

    params: FusedIBParams
    weights: tuple[np.ndarray | None, ...]

    @classmethod
    def of(cls, graph: Graph, block: FusedBlock, variant: str) -> FusedArithmetic:
        weights = tuple(None if t < 0 else graph.tensors[t].data for t in block.constants())
        return cls(fused_params(graph, block, variant), weights)

    def expand_pixels(self, x: np.ndarray) -> np.ndarray:
        """(n, C_in) input pixels -> (n, C_mid) expanded pixels."""
        n, c = x.shape
        e = self.params.expand
        p = replace(e, input_shape=(1, 1, n, c), output_shape=(1, 1, n, e.output_shape[3]), stride_h=1, stride_w=1)
        return conv2d(p, [x.reshape(1, 1, n, c), *self.weights[0:2]]).reshape(n, -1)

    @property
    def mid_zero_point(self) -> int:
        """The E value of a skipped tap: (value + input offset) * weight is 0."""
        return -self.params.depthwise.input_offset

    def depthwise_pixel(self, window: np.ndarray) -> np.ndarray:
        """(kh, kw, C_mid) window, skipped taps holding `mid_zero_point` -> (C_mid,)."""
        kh, kw, c = window.shape
        p = replace(self.params.depthwise, input_shape=(1, kh, kw, c), output_shape=(1, 1, 1, c), stride_h=1,
                    stride_w=1, pad_top=0, pad_left=0, pad_bottom=0, pad_right=0)
        return depthwise_conv2d(p, [window.reshape(1, kh, kw, c), *self.weights[2:4]]).reshape(-1)

    def project_pixel(self, d: np.ndarray) -> np.ndarray:
        c_out = self.params.project.output_shape[3]
        p = replace(self.params.project, input_shape=(1, 1, 1, d.size), output_shape=(1, 1, 1, c_out),
                    stride_h=1, stride_w=1)
        return conv2d(p, [d.reshape(1, 1, 1, -1), *self.weights[4:6]]).reshape(-1)

    def residual_pixel(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """ADD of the block input pixel and the projected pixel, in the ADD's operand order."""
        shape = (1, 1, 1, y.size)
        p = replace(self.params.add, input1_shape=shape, input2_shape=shape, output_shape=shape)
        pair = [x.reshape(shape), y.reshape(shape)]
        return add(p, pair if self.params.residual_first else pair[::-1]).reshape(-1)
