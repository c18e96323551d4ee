"""Stream buffers (StreamNet): the patch stage run in raster order, every intermediate pixel computed once.

Patch-based inference recomputes the halo of every tile. Streaming runs the same stage (ops [0, n), see
`vmcu.plan.receptive`) as full-width bands of rows, top to bottom. Each step completes the next
`rows_per_step` rows of the stage output; every stage op computes only the rows of its output that no
earlier step computed and that the step needs (the last step finishes every tensor). The rows of an
intermediate tensor that later steps still read stay in a ring buffer (row y in slot y mod capacity): its
capacity is the most rows ever held between the producer writing a band and the consumers' next window, the
k - s rows of overlap plus the new rows. So the stage costs the sum of the rings plus the full stage output
(and the image, kept apart as in patch-based figures), and no MAC is repeated.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from vmcu.ir.analysis import graph_macs, op_macs
from vmcu.ir.graph import Graph
from vmcu.plan.lifetimes import align_up
from vmcu.plan.patch import RestPlan, pixel_bytes, plan_layerwise, plan_rest, stage_bytes
from vmcu.plan.receptive import AxisMap, OpTile, Region, Stage, build_stage, legal_splits, op_tiles
from vmcu.plan.tensor import TENSOR_ALIGNMENT


@dataclass(frozen=True)
class RingBuffer:
    """Ring of the last `rows` full-width rows of one stage tensor, at `offset` of the stream arena;
    row y lives in slot y % rows."""

    tensor: int
    rows: int
    row_bytes: int
    offset: int

    @property
    def size_bytes(self) -> int:
        return align_up(self.rows * self.row_bytes, TENSOR_ALIGNMENT)


@dataclass(frozen=True)
class StreamStep:
    """One step: the stage ops it runs in order, each on the new rows of its output (full width)."""

    index: int
    ops: tuple[OpTile, ...]


@dataclass(frozen=True)
class StreamPlan:
    """A stream schedule and its memory figures; the value object code generation follows.

    The stream arena holds the rings of every intermediate stage tensor for the whole stage; the stage
    output (`stage_output_bytes`) and the image (`input_bytes`) are separate, as in `PatchPlan`.
    """

    graph_name: str
    split: int
    rows_per_step: int
    image: int
    stage_output: int
    folded_pads: tuple[int, ...]
    steps: tuple[StreamStep, ...]
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
        """Extra MACs as a fraction of the model's: zero, every pixel is computed once."""
        return self.macs / self.model_macs - 1.0 if self.model_macs else 0.0


def row_ends(graph: Graph, stage: Stage, rows_per_step: int) -> list[dict[int, int]]:
    """Per step, for every stage tensor, how many of its rows exist once the step is done: what the
    stage output rows so far need, and every row at the last step."""
    height = graph.tensors[stage.output].shape[1]
    ends = list(range(rows_per_step, height, rows_per_step)) + [height]
    out = [{t: b for t, (_, b) in stage.intervals(0, 0, end).items()} for end in ends[:-1]]
    out.append({t: graph.tensors[t].shape[1] for t in stage.intervals(0, 0, height)})
    return out


def _schedule(graph: Graph, stage: Stage, ends: list[dict[int, int]]) -> tuple[StreamStep, ...]:
    steps = []
    done = {t: 0 for t in ends[0]}
    for k, now in enumerate(ends):
        regions = {s.output: Region(done[s.output], now[s.output], 0, graph.tensors[s.output].shape[2])
                   for s in stage.steps}
        steps.append(StreamStep(k, op_tiles(graph, stage, regions)))
        done = now
    return tuple(steps)


def ring_rows(stage: Stage, ends: list[dict[int, int]]) -> dict[int, int]:
    """Capacity in rows of each intermediate tensor's ring: after the producer writes its rows of a step,
    the ring holds them and every older row a consumer's window still starts at or after."""
    readers: dict[int, list[tuple[int, AxisMap]]] = {}
    for s in stage.steps:
        for i in s.inputs:
            readers.setdefault(i.tensor, []).append((s.output, i.map.rows))
    cap: dict[int, int] = {}
    for s in stage.steps:
        t = s.output
        if t == stage.output:
            continue
        prev = {u: 0 for u in ends[0]}
        for now in ends:
            first_kept = min(m.start(prev[out]) for out, m in readers[t])
            cap[t] = max(cap.get(t, 1), now[t] - first_kept)
            prev = now
    return cap


def _plan(graph: Graph, stage: Stage, rows_per_step: int, rest: RestPlan | None, layerwise: int,
          model_macs: int) -> StreamPlan:
    ends = row_ends(graph, stage, rows_per_step)
    steps = _schedule(graph, stage, ends)
    rings = []
    offset = 0
    for t, rows in sorted(ring_rows(stage, ends).items()):
        ring = RingBuffer(t, rows, graph.tensors[t].shape[2] * pixel_bytes(graph, t), offset)
        rings.append(ring)
        offset += ring.size_bytes
    out_bytes, in_bytes = stage_bytes(graph, stage)
    rest_peak = rest.peak_bytes if rest is not None else 0
    macs = (model_macs - sum(op_macs(graph, op) for op in graph.ops[:stage.split])
            + sum(o.macs for s in steps for o in s.ops))
    return StreamPlan(
        graph_name=graph.name, split=stage.split, rows_per_step=rows_per_step, image=stage.image,
        stage_output=stage.output, folded_pads=stage.folded_pads, steps=steps, rings=tuple(rings),
        ring_bytes=offset, stage_output_bytes=out_bytes, input_bytes=in_bytes,
        stage_peak_bytes=offset + out_bytes, rest=rest, rest_peak_bytes=rest_peak,
        peak_bytes=max(offset + out_bytes, rest_peak),
        peak_bytes_with_input=max(offset + out_bytes + in_bytes, rest_peak), layerwise_peak_bytes=layerwise,
        macs=macs, model_macs=model_macs)


def plan_stream(graph: Graph, *, split: int, rows_per_step: int = 1,
                rest_strategy: str = "tensor") -> StreamPlan:
    """Stream plan running ops [0, split) in bands of `rows_per_step` stage-output rows; the rest runs
    layer by layer, planned with `rest_strategy` ("tensor" or "segment")."""
    stage = build_stage(graph, split)
    return _plan(graph, stage, rows_per_step, plan_rest(graph, split, rest_strategy),
                 plan_layerwise(graph, rest_strategy).peak_bytes, graph_macs(graph))


@dataclass(frozen=True)
class StreamCandidate:
    """One (split, rows per step) the search evaluated, with the figures of its plan."""

    split: int
    rows_per_step: int
    peak_bytes: int
    peak_bytes_with_input: int
    stage_peak_bytes: int
    rest_peak_bytes: int
    mac_overhead: float


@dataclass(frozen=True)
class StreamSearch:
    """Every candidate, and the best: least peak (input image excluded), then most rows per step (fewer,
    longer kernel calls), then the earliest split."""

    graph_name: str
    rest_strategy: str
    layerwise_peak_bytes: int
    candidates: tuple[StreamCandidate, ...]
    best: StreamCandidate | None


def search_stream_plans(graph: Graph, *, splits: Iterable[int] | None = None,
                        rows_per_step: Sequence[int] = (1,), rest_strategy: str = "tensor") -> StreamSearch:
    """Evaluate every legal split (or `splits`) with each band height in `rows_per_step`."""
    layerwise = plan_layerwise(graph, rest_strategy).peak_bytes
    model_macs = graph_macs(graph)
    candidates = []
    for n in legal_splits(graph) if splits is None else splits:
        stage = build_stage(graph, n)
        rest = plan_rest(graph, n, rest_strategy)
        for rows in rows_per_step:
            plan = _plan(graph, stage, rows, rest, layerwise, model_macs)
            candidates.append(StreamCandidate(n, rows, plan.peak_bytes, plan.peak_bytes_with_input,
                                              plan.stage_peak_bytes, plan.rest_peak_bytes, plan.mac_overhead))
    best = min(candidates, key=lambda c: (c.peak_bytes, -c.rows_per_step, c.split), default=None)
    return StreamSearch(graph.name, rest_strategy, layerwise, tuple(candidates), best)
