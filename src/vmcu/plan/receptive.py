"""Receptive fields of spatially local ops, and the stages that patch-based and stream execution cut off.

Patch-based inference (MCUNetV2) and stream buffers (StreamNet) run the first ops of a network on one part
of the image at a time. Both rest on one fact per op: which rows and columns of each input an output tile
reads, and which padding the whole-image op applies at that tile's border. Running the op's kernel on the
clipped input region with exactly that padding gives the whole-image result bit for bit, so a tiled
schedule needs nothing but these maps. An explicit PAD op is the same kind of map (a 1x1 window shifted by
its padding); when only convolutions read it, it folds into their padding and its output never exists.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

from vmcu.errors import PlanError, UnsupportedOpError
from vmcu.ir.analysis import op_macs
from vmcu.ir.graph import NO_TENSOR, Graph, Op
from vmcu.ir.params import Conv2DParams, DepthwiseConv2DParams, PadParams, Pool2DParams, op_params

WINDOW_OPS = frozenset({"CONV_2D", "DEPTHWISE_CONV_2D", "AVERAGE_POOL_2D", "MAX_POOL_2D"})
PAD_OPS = frozenset({"PAD", "PADV2"})
ELEMENTWISE_OPS = frozenset({
    "ADD", "SUB", "MUL", "MAXIMUM", "MINIMUM", "QUANTIZE", "DEQUANTIZE", "LOGISTIC", "TANH", "RELU", "RELU6",
    "RELU_N1_TO_1", "LEAKY_RELU", "HARD_SWISH",
})
# Ops whose out-of-image taps contribute nothing, exactly as a zero-point pad value would: a PAD read only
# by them can be folded into their padding.
ZERO_PAD_READERS = frozenset({"CONV_2D", "DEPTHWISE_CONV_2D"})


@dataclass(frozen=True)
class Region:
    """Rows [y0, y1) and columns [x0, x1) of an NHWC tensor (all batches and channels)."""

    y0: int
    y1: int
    x0: int
    x1: int

    @property
    def height(self) -> int:
        return self.y1 - self.y0

    @property
    def width(self) -> int:
        return self.x1 - self.x0

    @property
    def area(self) -> int:
        return self.height * self.width

    def union(self, other: Region | None) -> Region:
        """Bounding box of both regions; an empty region adds nothing."""
        if other is None or other.area == 0:
            return self
        if self.area == 0:
            return other
        return Region(min(self.y0, other.y0), max(self.y1, other.y1), min(self.x0, other.x0),
                      max(self.x1, other.x1))

    def contains(self, other: Region) -> bool:
        return (other.area == 0 or self.y0 <= other.y0 and other.y1 <= self.y1
                and self.x0 <= other.x0 and other.x1 <= self.x1)


@dataclass(frozen=True)
class Padding:
    """Rows/columns of padding a kernel adds around an input region (taps that fall outside the image)."""

    top: int = 0
    bottom: int = 0
    left: int = 0
    right: int = 0


@dataclass(frozen=True)
class AxisMap:
    """Along one spatial axis, output index o reads input indices o*stride - offset + t*dilation, t < kernel.

    `offset` is the padding before the input (a conv's SAME padding, a PAD op's leading pad, or both when a
    PAD is folded into a conv). stride 0 is a broadcast: every output index reads input index 0.
    """

    kernel: int
    stride: int
    dilation: int
    offset: int
    in_size: int

    @property
    def extent(self) -> int:
        """Input indices one output index spans."""
        return (self.kernel - 1) * self.dilation + 1

    def start(self, lo: int) -> int:
        """First input index output `lo` reads, clipped to the input."""
        return min(max(lo * self.stride - self.offset, 0), self.in_size)

    def needed(self, lo: int, hi: int) -> tuple[int, int, int, int]:
        """Input range [a, b) that outputs [lo, hi) read, clipped to the input, and the padding
        (before, after) the clipping implies; for an empty output range, an empty input range."""
        if hi <= lo:
            a = self.start(lo)
            return a, a, 0, 0
        first = lo * self.stride - self.offset
        last = (hi - 1) * self.stride - self.offset + self.extent
        a = min(max(first, 0), self.in_size)
        b = max(min(last, self.in_size), a)
        return a, b, max(min(0, last) - first, 0), max(last - max(self.in_size, first), 0)

    def after_pad(self, pad: AxisMap) -> AxisMap:
        """This map reading the output of `pad` (a shifted 1x1 map), as one map reading the pad's input."""
        return AxisMap(self.kernel, self.stride, self.dilation, self.offset + pad.offset, pad.in_size)


@dataclass(frozen=True)
class SpatialMap:
    """How one activation input of a spatially local op feeds the op's output."""

    rows: AxisMap
    cols: AxisMap

    def input_region(self, out: Region) -> tuple[Region, Padding]:
        """The input region an output region reads, and the padding the kernel must add around it."""
        y0, y1, top, bottom = self.rows.needed(out.y0, out.y1)
        x0, x1, left, right = self.cols.needed(out.x0, out.x1)
        return Region(y0, y1, x0, x1), Padding(top, bottom, left, right)

    def after_pad(self, pad: SpatialMap) -> SpatialMap:
        return SpatialMap(self.rows.after_pad(pad.rows), self.cols.after_pad(pad.cols))


def _window_map(p: Conv2DParams | DepthwiseConv2DParams | Pool2DParams) -> SpatialMap:
    if isinstance(p, Pool2DParams):
        kh, kw, dh, dw = p.filter_h, p.filter_w, 1, 1
    else:
        kh, kw, dh, dw = p.filter_shape[1], p.filter_shape[2], p.dilation_h, p.dilation_w
    return SpatialMap(AxisMap(kh, p.stride_h, dh, p.pad_top, p.input_shape[1]),
                      AxisMap(kw, p.stride_w, dw, p.pad_left, p.input_shape[2]))


def _elementwise_map(in_shape: tuple[int, ...], out_shape: tuple[int, ...]) -> SpatialMap | None:
    """Identity for an input of the output's height and width, broadcast for a 1x1 one, else None."""
    if len(in_shape) > 4:
        return None
    _, h, w, _ = (1,) * (4 - len(in_shape)) + tuple(in_shape)
    if (h, w) == out_shape[1:3]:
        return SpatialMap(AxisMap(1, 1, 1, 0, h), AxisMap(1, 1, 1, 0, w))
    if (h, w) == (1, 1):
        return SpatialMap(AxisMap(1, 0, 1, 0, 1), AxisMap(1, 0, 1, 0, 1))
    return None


def op_input_maps(graph: Graph, op: Op) -> dict[int, SpatialMap] | None:
    """Spatial map of each activation input (by position in `op.inputs`); None if the op is not spatially
    local: another op type, an op vmcu cannot execute, a non-NHWC output, or padding of batch or channels."""
    if len(op.outputs) != 1 or len(graph.tensors[op.outputs[0]].shape) != 4:
        return None
    if op.type not in WINDOW_OPS | PAD_OPS | ELEMENTWISE_OPS:
        return None
    out_shape = graph.tensors[op.outputs[0]].shape
    if op.type in ELEMENTWISE_OPS:
        maps = {}
        for pos, t in enumerate(op.inputs):
            if t == NO_TENSOR or graph.tensors[t].is_const:
                continue
            m = _elementwise_map(graph.tensors[t].shape, out_shape)
            if m is None:
                return None
            maps[pos] = m
        return maps
    try:
        params = op_params(graph, op)
    except UnsupportedOpError:
        return None
    if isinstance(params, PadParams):
        (nb, na), (top, _), (left, _), (cb, ca) = params.paddings
        if (nb, na, cb, ca) != (0, 0, 0, 0):
            return None
        return {0: SpatialMap(AxisMap(1, 1, 1, top, params.input_shape[1]),
                              AxisMap(1, 1, 1, left, params.input_shape[2]))}
    return {0: _window_map(params)}


_MAPS: weakref.WeakKeyDictionary[Graph, list[dict[int, SpatialMap] | None]] = weakref.WeakKeyDictionary()


def graph_maps(graph: Graph) -> list[dict[int, SpatialMap] | None]:
    """`op_input_maps` of every op, computed once per graph (deriving op params is not free)."""
    maps = _MAPS.get(graph)
    if maps is None:
        maps = _MAPS[graph] = [op_input_maps(graph, op) for op in graph.ops]
    return maps


@dataclass(frozen=True)
class StageInput:
    """An activation input of a stage op: its position in `op.inputs`, the tensor actually read (a folded
    PAD's input instead of its output) and the map from the op's output to that tensor."""

    position: int
    tensor: int
    map: SpatialMap
    folded_pad: int | None = None


@dataclass(frozen=True)
class StageStep:
    """One op of the stage as a tiled schedule runs it."""

    op: int
    output: int
    inputs: tuple[StageInput, ...]


@dataclass(frozen=True)
class Stage:
    """Ops [0, split) of a graph, run region by region: they read `image` (the graph input, kept in its own
    buffer) and only `output` leaves the stage. `steps` omit the PAD ops folded into convolutions."""

    split: int
    image: int
    output: int
    steps: tuple[StageStep, ...]
    folded_pads: tuple[int, ...]

    def intervals(self, axis: int, lo: int, hi: int) -> dict[int, tuple[int, int]]:
        """Along rows (axis 0) or columns (axis 1): the range of every stage tensor (image included) that
        computing [lo, hi) of the stage output needs. Regions are products of a row and a column range,
        so a grid of tiles costs one pass per tile row and one per tile column. A tensor the range does
        not reach (a tile wholly in a PAD's padding) gets an empty range."""
        need: dict[int, tuple[int, int]] = {self.output: (lo, hi)}
        for step in reversed(self.steps):
            span = need.get(step.output)
            if span is None or span[1] <= span[0]:
                continue
            for inp in step.inputs:
                a, b, _, _ = (inp.map.rows if axis == 0 else inp.map.cols).needed(*span)
                old = need.get(inp.tensor)
                if old is not None and old[1] > old[0] and b > a:
                    a, b = min(a, old[0]), max(b, old[1])
                elif old is not None and b <= a:
                    a, b = old
                need[inp.tensor] = (a, b)
        for step in self.steps:
            need.setdefault(step.output, (0, 0))
            for inp in step.inputs:
                need.setdefault(inp.tensor, (0, 0))
        return need

    def regions(self, out: Region) -> dict[int, Region]:
        """Region of every stage tensor (image included) that computing `out` of the stage output needs."""
        rows, cols = self.intervals(0, out.y0, out.y1), self.intervals(1, out.x0, out.x1)
        return {t: Region(*rows[t], *cols[t]) for t in rows}


def build_stage(graph: Graph, split: int) -> Stage:
    """The stage of ops [0, split); PlanError unless the cut is legal (see `split_problem`)."""
    problem = split_problem(graph, split)
    if problem:
        raise PlanError(f"{graph.name}: cannot split after op {split - 1}: {problem}")
    ops = graph.ops[:split]
    consumers = graph.consumers()
    producers = graph.producers()
    maps = graph_maps(graph)
    folded = {op.index for op in ops if _foldable_pad(graph, op, consumers, split)}
    steps = []
    for op in ops:
        if op.index in folded:
            continue
        inputs = []
        for pos, m in sorted(maps[op.index].items()):
            t = op.inputs[pos]
            pad = producers.get(t)
            if pad in folded:
                inputs.append(StageInput(pos, graph.ops[pad].inputs[0], m.after_pad(maps[pad][0]), pad))
            else:
                inputs.append(StageInput(pos, t, m))
        steps.append(StageStep(op.index, op.outputs[0], tuple(inputs)))
    image = next(t for t in graph.inputs if any(t in op.inputs for op in ops))
    return Stage(split, image, _crossing(graph, split)[0], tuple(steps), tuple(sorted(folded)))


def _foldable_pad(graph: Graph, op: Op, consumers: dict[int, list[int]], split: int) -> bool:
    """A PAD whose pad value is the zero point and whose every reader is a convolution of the stage."""
    if op.type not in PAD_OPS:
        return False
    out = graph.tensors[op.outputs[0]]
    params = op_params(graph, op)
    readers = consumers.get(out.index, [])
    return (out.quant is not None and params.pad_value == out.quant.zero_point[0] and bool(readers)
            and out.index not in graph.outputs
            and all(c < split and graph.ops[c].type in ZERO_PAD_READERS
                    and graph.ops[c].inputs[0] == out.index and out.index not in graph.ops[c].inputs[1:]
                    for c in readers))


def _crossing(graph: Graph, split: int) -> list[int]:
    """Activation tensors that ops before the cut write or read as graph inputs and later ops or the
    graph's outputs need."""
    early = set(graph.inputs) | {t for op in graph.ops[:split] for t in op.outputs}
    late = set(graph.outputs) | {t for op in graph.ops[split:] for t in op.inputs if t != NO_TENSOR}
    return sorted(t for t in early & late if not graph.tensors[t].is_const)


def split_problem(graph: Graph, split: int) -> str:
    """Why ops [0, split) cannot form a patch stage, or '' if they can: every op spatially local, exactly
    one tensor (written by the stage, NHWC) crossing the cut, so no residual crosses it, and one graph
    input feeding the stage."""
    if not 1 <= split <= len(graph.ops):
        return f"the split must be in [1, {len(graph.ops)}]"
    maps = graph_maps(graph)
    for op in graph.ops[:split]:
        if maps[op.index] is None:
            return f"op {op.index} {op.type} is not spatially local"
    crossing = _crossing(graph, split)
    produced = {t for op in graph.ops[:split] for t in op.outputs}
    if len(crossing) != 1 or crossing[0] not in produced:
        return f"{len(crossing)} tensors cross the cut ({crossing}); exactly one written by the stage may"
    images = {t for op in graph.ops[:split] for t in op.inputs if t in graph.inputs}
    if len(images) != 1:
        return f"the stage reads {len(images)} graph inputs; it must read exactly one"
    if len(graph.tensors[next(iter(images))].shape) != 4:
        return "the graph input is not NHWC"
    readers = graph.consumers()
    for op in graph.ops[:split]:
        for t in op.inputs:
            if t != NO_TENSOR and not graph.tensors[t].is_const and t not in produced | images:
                return f"op {op.index} reads tensor {t}, which neither the stage nor the input provides"
        if op.outputs[0] != crossing[0] and not readers.get(op.outputs[0]):
            return f"op {op.index} writes tensor {op.outputs[0]}, which nothing reads"
    return ""


def legal_splits(graph: Graph) -> list[int]:
    """Every split n for which ops [0, n) can run as a patch stage."""
    return [n for n in range(1, len(graph.ops) + 1) if not split_problem(graph, n)]


@dataclass(frozen=True)
class TileInput:
    """What one activation input of a tiled op reads: `region` of `tensor`, with `padding` added around it
    (`position` is the input's index in `op.inputs`; `tensor` is a folded PAD's input, not its output)."""

    position: int
    tensor: int
    region: Region
    padding: Padding


@dataclass(frozen=True)
class OpTile:
    """One stage op run on one part of its output: the region it computes, what it reads, its MACs."""

    op: int
    output: Region
    inputs: tuple[TileInput, ...]
    macs: int


def macs_per_pixel(graph: Graph, op_index: int) -> int:
    """MACs of one output pixel (all channels) of an op: area times this is what a region costs."""
    out = graph.tensors[graph.ops[op_index].outputs[0]]
    return op_macs(graph, graph.ops[op_index]) // (out.shape[1] * out.shape[2])


def step_tile(graph: Graph, step: StageStep, out: Region) -> OpTile:
    """A stage op computing `out` of its output: the regions it reads and the padding it adds."""
    inputs = tuple(TileInput(i.position, i.tensor, *i.map.input_region(out)) for i in step.inputs)
    return OpTile(step.op, out, inputs, out.area * macs_per_pixel(graph, step.op))


def op_tiles(graph: Graph, stage: Stage, outputs: dict[int, Region]) -> tuple[OpTile, ...]:
    """The stage ops that computing these output regions (tensor -> region) runs, in stage order; ops
    with an empty or absent region are left out."""
    return tuple(step_tile(graph, step, outputs[step.output]) for step in stage.steps
                 if step.output in outputs and outputs[step.output].area > 0)
