"""Stream buffers (StreamNet): the patch stage run in raster order, every intermediate pixel computed once.

Patch-based inference recomputes the halo of every tile. Streaming runs the same stage (ops [0, n), see
`vmcu.plan.receptive`) in raster order, one chunk of a row at a time, driven by demand: to emit the next
chunk of the stage output, each op first makes sure its inputs hold the pixels its window needs, producing
them chunk by chunk the same way. Every intermediate tensor lives in a ring buffer in raster order (pixel
(y, x) in slot (y * W + x) mod capacity) whose capacity is the most pixels held at once: from the oldest
pixel a reader's next window starts at to the newest pixel written. With one chunk per row (1D stream) a
k x k window keeps k rows; with c chunks per row (2D stream: rows and columns) it keeps k - 1 rows plus a
chunk and its halo. A tensor a residual reads later than its other reader keeps the rows in between. The
stage costs the sum of the rings plus the full stage output (the image is kept apart, as in patch-based
figures). No pixel is computed twice, and pixels no window reads are never computed, so the MAC overhead
is zero or below.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from vmcu.errors import PlanError
from vmcu.ir.analysis import graph_macs, op_macs
from vmcu.ir.graph import Graph
from vmcu.plan.lifetimes import align_up
from vmcu.plan.patch import RestPlan, cuts, pixel_bytes, plan_layerwise, plan_rest, stage_bytes
from vmcu.plan.receptive import OpTile, Region, SpatialMap, Stage, build_stage, legal_splits, step_tile
from vmcu.plan.tensor import TENSOR_ALIGNMENT

DEFAULT_COLUMN_CHUNKS = (1, 2, 4, 8)


@dataclass(frozen=True)
class RingBuffer:
    """Ring of the last `pixels` pixels, in raster order, of one stage tensor of width `width`, at `offset`
    of the stream arena: pixel (y, x) lives in slot (y * width + x) % pixels."""

    tensor: int
    pixels: int
    width: int
    pixel_bytes: int
    offset: int

    @property
    def size_bytes(self) -> int:
        return align_up(self.pixels * self.pixel_bytes, TENSOR_ALIGNMENT)


@dataclass(frozen=True)
class StreamPlan:
    """A stream schedule and its memory figures; the value object code generation follows.

    `steps` run in order, each one op on one chunk of one row of its output (`column_chunks` chunks per
    row). The stream arena holds the rings of every intermediate stage tensor for the whole stage; the
    stage output (`stage_output_bytes`) and the image (`input_bytes`) are separate, as in `PatchPlan`.
    """

    graph_name: str
    split: int
    column_chunks: int
    image: int
    stage_output: int
    folded_pads: tuple[int, ...]
    steps: tuple[OpTile, ...]
    rings: tuple[RingBuffer, ...]
    ring_bytes: int
    stage_output_bytes: int
    input_bytes: int
    stage_peak_bytes: int
    rest: RestPlan | None
    rest_peak_bytes: int
    peak_bytes: int
    peak_bytes_with_input: int
    layerwise_peak_bytes: int
    macs: int
    model_macs: int

    @property
    def mac_overhead(self) -> float:
        """Extra MACs as a fraction of the model's: zero, or below zero if some pixels are never read."""
        return self.macs / self.model_macs - 1.0 if self.model_macs else 0.0


def stream_schedule(graph: Graph, stage: Stage,
                    column_chunks: int) -> tuple[tuple[OpTile, ...], dict[int, int]]:
    """The demand-driven raster schedule of a stage and the ring capacity (pixels) of each intermediate."""
    producer = {s.output: s for s in stage.steps}
    readers: dict[int, list[tuple[int, SpatialMap]]] = {}
    for s in stage.steps:
        for i in s.inputs:
            readers.setdefault(i.tensor, []).append((s.output, i.map))
    shape = {t: graph.tensors[t].shape for t in producer}
    bounds = {t: cuts(shape[t][2], min(column_chunks, shape[t][2])) for t in producer}
    done = {t: 0 for t in producer}  # pixels computed, in raster order
    steps: list[OpTile] = []
    capacity: dict[int, int] = {}

    def chunk(t: int) -> tuple[int, int, int]:
        """Row and columns [x0, x1) of the next chunk of t."""
        row, x0 = divmod(done[t], shape[t][2])
        return row, x0, next(b for b in bounds[t] if b > x0)

    def ensure(t: int, pixels: int) -> None:
        while t in producer and done[t] < pixels:
            emit(t)

    def oldest_read(t: int, reader: int, m: SpatialMap) -> int:
        """Raster index of the oldest pixel of t the reader's remaining chunks read."""
        row, x0, _ = chunk(reader)
        width = shape[t][2]
        return min(m.rows.start(row) * width + m.cols.start(x0), m.rows.start(row + 1) * width)

    def emit(t: int) -> None:
        step = producer[t]
        row, x0, x1 = chunk(t)
        for i in step.inputs:
            a, b, _, _ = i.map.rows.needed(row, row + 1)
            ca, cb, _, _ = i.map.cols.needed(x0, x1)
            if b > a and cb > ca and i.tensor in producer:
                ensure(i.tensor, (b - 1) * shape[i.tensor][2] + cb)
        steps.append(step_tile(graph, step, Region(row, row + 1, x0, x1)))
        done[t] = row * shape[t][2] + x1
        if t != stage.output:
            held = done[t] - min(oldest_read(t, r, m) for r, m in readers[t] if done[r] < _pixels(shape[r]))
            capacity[t] = max(capacity.get(t, 1), held)

    ensure(stage.output, _pixels(shape[stage.output]))
    return tuple(steps), capacity


def _pixels(shape: tuple[int, ...]) -> int:
    return shape[1] * shape[2]


def _plan(graph: Graph, stage: Stage, column_chunks: int, rest: RestPlan | None, layerwise: int,
          model_macs: int) -> StreamPlan:
    steps, capacity = stream_schedule(graph, stage, column_chunks)
    rings = []
    offset = 0
    for t, pixels in sorted(capacity.items()):
        ring = RingBuffer(t, pixels, graph.tensors[t].shape[2], pixel_bytes(graph, t), offset)
        rings.append(ring)
        offset += ring.size_bytes
    out_bytes, in_bytes = stage_bytes(graph, stage)
    rest_peak = rest.peak_bytes if rest is not None else 0
    macs = (model_macs - sum(op_macs(graph, op) for op in graph.ops[:stage.split])
            + sum(o.macs for o in steps))
    return StreamPlan(
        graph_name=graph.name, split=stage.split, column_chunks=column_chunks, image=stage.image,
        stage_output=stage.output, folded_pads=stage.folded_pads, steps=steps, rings=tuple(rings),
        ring_bytes=offset,
        stage_output_bytes=out_bytes, input_bytes=in_bytes, stage_peak_bytes=offset + out_bytes, rest=rest,
        rest_peak_bytes=rest_peak, peak_bytes=max(offset + out_bytes, rest_peak),
        peak_bytes_with_input=max(offset + out_bytes + in_bytes, rest_peak), layerwise_peak_bytes=layerwise,
        macs=macs, model_macs=model_macs)


def plan_stream(graph: Graph, *, split: int, column_chunks: int = 1,
                rest_strategy: str = "tensor") -> StreamPlan:
    """Stream plan running ops [0, split) in raster order, `column_chunks` chunks per row (1: a 1D
    stream of whole rows); the rest runs layer by layer, planned with `rest_strategy`."""
    if column_chunks < 1:
        raise PlanError(f"{graph.name}: column_chunks must be at least 1, got {column_chunks}")
    stage = build_stage(graph, split)
    return _plan(graph, stage, column_chunks, plan_rest(graph, split, rest_strategy),
                 plan_layerwise(graph, rest_strategy).peak_bytes, graph_macs(graph))


@dataclass(frozen=True)
class StreamCandidate:
    """One (split, column chunks) the search evaluated, with the figures of its plan."""

    split: int
    column_chunks: int
    peak_bytes: int
    peak_bytes_with_input: int
    stage_peak_bytes: int
    rest_peak_bytes: int
    mac_overhead: float


@dataclass(frozen=True)
class StreamSearch:
    """Every candidate, and the best: least peak (input image excluded), then fewest chunks per row (fewer
    kernel calls), then the earliest split."""

    graph_name: str
    rest_strategy: str
    layerwise_peak_bytes: int
    candidates: tuple[StreamCandidate, ...]
    best: StreamCandidate | None


def search_stream_plans(graph: Graph, *, splits: Iterable[int] | None = None,
                        column_chunks: Sequence[int] = DEFAULT_COLUMN_CHUNKS,
                        rest_strategy: str = "tensor") -> StreamSearch:
    """Evaluate every legal split (or `splits`) with each number of chunks per row."""
    layerwise = plan_layerwise(graph, rest_strategy).peak_bytes
    model_macs = graph_macs(graph)
    candidates = []
    for n in legal_splits(graph) if splits is None else splits:
        stage = build_stage(graph, n)
        rest = plan_rest(graph, n, rest_strategy)
        for chunks in column_chunks:
            plan = _plan(graph, stage, chunks, rest, layerwise, model_macs)
            candidates.append(StreamCandidate(n, chunks, plan.peak_bytes, plan.peak_bytes_with_input,
                                              plan.stage_peak_bytes, plan.rest_peak_bytes, plan.mac_overhead))
    best = min(candidates, key=lambda c: (c.peak_bytes, c.column_chunks, c.split), default=None)
    return StreamSearch(graph.name, rest_strategy, layerwise, tuple(candidates), best)
