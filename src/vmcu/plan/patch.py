"""Patch-based inference (MCUNetV2): the memory-heavy first stage runs once per tile of a p x q grid.

The stage (ops [0, n), see `vmcu.plan.receptive`) is run tile by tile: each tile of the stage output is
computed from the image region its receptive field covers and written straight into the full stage-output
tensor, which is live throughout the stage. Inside a tile the intermediates are tile-sized; they share one
tile arena, planned tensor-level (sized for the largest tile). Neighbouring tiles overlap (the halo), so
the stage recomputes pixels: that is the price in MACs. After the stage the rest of the graph runs layer by
layer (`plan_rest`). Figures follow MCUNetV2 and TinyEngine, which read the image from a buffer of its
own: `peak_bytes` leaves the input image out, `peak_bytes_with_input` counts it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from vmcu.errors import PlanError
from vmcu.ir.analysis import graph_macs, op_macs
from vmcu.ir.graph import Graph
from vmcu.plan.allocate import Buffer, search_placement
from vmcu.plan.lifetimes import align_up
from vmcu.plan.plan import MemoryPlan, Placement
from vmcu.plan.receptive import (
    OpTile,
    Padding,
    Region,
    Stage,
    build_stage,
    legal_splits,
    macs_per_pixel,
    op_tiles,
)
from vmcu.plan.segment import SegmentPlan, plan_segments
from vmcu.plan.tensor import TENSOR_ALIGNMENT, plan_tensors

DEFAULT_MAX_GRID = 8
REST_STRATEGIES = ("tensor", "segment")


@dataclass(frozen=True)
class RestPlan:
    """A graph run layer by layer: the part after a stage (`rest_graph(graph, split)`, whose op k is op
    split + k of the model) or a whole model, planned tensor-level (`plan_tensors`) or segment-level
    (`plan_segments`). `peak_bytes` is the plan's arena plus, for a segment plan, the kernel workspace
    that lives outside its pool."""

    strategy: str
    graph: Graph
    plan: MemoryPlan | SegmentPlan
    peak_bytes: int


def rest_graph(graph: Graph, split: int) -> Graph:
    """Ops [split, end) as a graph of their own, fed by the one tensor that crosses the cut."""
    stage = build_stage(graph, split)
    ops = tuple(replace(op, index=k) for k, op in enumerate(graph.ops[split:]))
    return Graph(f"{graph.name}[{split}:]", graph.tensors, ops, (stage.output,), graph.outputs)


def plan_layerwise(graph: Graph, strategy: str = "tensor") -> RestPlan:
    """Plan a whole graph layer by layer with one of `REST_STRATEGIES`."""
    if strategy == "tensor":
        plan = plan_tensors(graph)
        return RestPlan(strategy, graph, plan, plan.peak_bytes)
    if strategy == "segment":
        splan = plan_segments(graph)
        return RestPlan(strategy, graph, splan, splan.pool_bytes + splan.workspace_bytes)
    raise PlanError(f"unknown layer-by-layer strategy '{strategy}' "
                    f"(choose from {', '.join(REST_STRATEGIES)})")


def plan_rest(graph: Graph, split: int, strategy: str = "tensor") -> RestPlan | None:
    """Plan of the layer-by-layer part after the cut (None if nothing follows the stage)."""
    return plan_layerwise(rest_graph(graph, split), strategy) if split < len(graph.ops) else None


@dataclass(frozen=True)
class Tile:
    """One tile of the grid: its region of the stage output, the stage ops it runs in order, the bytes of
    each tile buffer (tensor, bytes) and its halo: how far its image region reaches past the tile's own
    share of the image (the tile's output region scaled to the image)."""

    row: int
    col: int
    output: Region
    ops: tuple[OpTile, ...]
    buffer_bytes: tuple[tuple[int, int], ...]
    halo: Padding
    macs: int


@dataclass(frozen=True)
class PatchPlan:
    """A patch-based schedule and its memory figures; the value object code generation follows.

    `tile_buffers` places every tile-sized intermediate in the tile arena (steps are positions in the
    stage's steps). The stage output (`stage_output_bytes`) sits apart from the tile arena for the whole
    stage. Byte figures are 4-byte aligned like the tensor-level plan; `layerwise_peak_bytes` is the whole
    model planned layer by layer with the same strategy as `rest`.
    """

    graph_name: str
    split: int
    grid: tuple[int, int]
    image: int
    stage_output: int
    folded_pads: tuple[int, ...]
    tiles: tuple[Tile, ...]
    tile_buffers: tuple[Placement, ...]
    tile_arena_bytes: int
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
        """Extra MACs of the recomputed halos, as a fraction of the model's MACs."""
        return self.macs / self.model_macs - 1.0 if self.model_macs else 0.0


def cuts(size: int, parts: int) -> list[int]:
    """Boundaries splitting [0, size) into `parts` ranges whose lengths differ by at most one."""
    return [k * size // parts for k in range(parts + 1)]


def pixel_bytes(graph: Graph, tensor: int) -> int:
    """Bytes of one pixel (all channels) of an NHWC tensor."""
    t = graph.tensors[tensor]
    return t.nbytes // (t.shape[1] * t.shape[2])


def stage_bytes(graph: Graph, stage: Stage) -> tuple[int, int]:
    """Aligned bytes of the stage output and of the input image."""
    return (align_up(graph.tensors[stage.output].nbytes, TENSOR_ALIGNMENT),
            align_up(graph.tensors[stage.image].nbytes, TENSOR_ALIGNMENT))


def _halo(graph: Graph, stage: Stage, out: Region, image_region: Region) -> Padding:
    _, h, w, _ = graph.tensors[stage.output].shape
    _, ih, iw, _ = graph.tensors[stage.image].shape
    core = Region(out.y0 * ih // h, out.y1 * ih // h, out.x0 * iw // w, out.x1 * iw // w)
    return Padding(max(core.y0 - image_region.y0, 0), max(image_region.y1 - core.y1, 0),
                   max(core.x0 - image_region.x0, 0), max(image_region.x1 - core.x1, 0))


def tile_arena(stage: Stage, sizes: dict[int, int]) -> tuple[tuple[Placement, ...], int]:
    """Tensor-level placement of the tile buffers (`sizes`: tensor -> bytes); steps are positions in
    `stage.steps`."""
    tensors = sorted(sizes)
    first = {s.output: k for k, s in enumerate(stage.steps) if s.output in sizes}
    last = {i.tensor: k for k, s in enumerate(stage.steps) for i in s.inputs if i.tensor in sizes}
    buffers = [Buffer(align_up(sizes[t], TENSOR_ALIGNMENT), first[t], last.get(t, first[t])) for t in tensors]
    if not buffers:
        return (), 0
    live = [sum(b.size for b in buffers if b.first <= k <= b.last) for k in range(len(stage.steps))]
    offsets = search_placement(buffers, target=max(live))
    placements = tuple(Placement(t, o, b.size, b.first, b.last)
                       for t, o, b in zip(tensors, offsets, buffers, strict=True))
    return placements, max(p.end for p in placements)


@dataclass(frozen=True)
class _Layout:
    """A grid's ranges per tile row and column (tensor -> range), and what the figures need of them."""

    rows: tuple[dict[int, tuple[int, int]], ...]
    cols: tuple[dict[int, tuple[int, int]], ...]
    buffer_sizes: dict[int, int]
    stage_macs: int


def _layout(graph: Graph, stage: Stage, grid: tuple[int, int]) -> _Layout:
    p, q = grid
    _, h, w, _ = graph.tensors[stage.output].shape
    if not (1 <= p <= h and 1 <= q <= w):
        raise PlanError(f"{graph.name}: a {p}x{q} grid does not fit a {h}x{w} stage output")
    ys, xs = cuts(h, p), cuts(w, q)
    rows = tuple(stage.intervals(0, ys[i], ys[i + 1]) for i in range(p))
    cols = tuple(stage.intervals(1, xs[j], xs[j + 1]) for j in range(q))
    materialized = [s.output for s in stage.steps if s.output != stage.output]
    sizes = {t: max(b - a for a, b in (r[t] for r in rows)) * max(b - a for a, b in (c[t] for c in cols))
             * pixel_bytes(graph, t) for t in materialized}
    # Areas are products of a row and a column length, so summing over the grid factorises.
    macs = sum(sum(r[s.output][1] - r[s.output][0] for r in rows)
               * sum(c[s.output][1] - c[s.output][0] for c in cols) * macs_per_pixel(graph, s.op)
               for s in stage.steps)
    return _Layout(rows, cols, sizes, macs)


def _plan(graph: Graph, stage: Stage, grid: tuple[int, int], rest: RestPlan | None, layerwise: int,
          model_macs: int, with_tiles: bool) -> PatchPlan:
    layout = _layout(graph, stage, grid)
    tiles = []
    for i, rows in enumerate(layout.rows if with_tiles else ()):
        for j, cols in enumerate(layout.cols):
            regions = {t: Region(*rows[t], *cols[t]) for t in rows}
            ops = op_tiles(graph, stage, regions)
            buffers = tuple((t, regions[t].area * pixel_bytes(graph, t)) for t in layout.buffer_sizes)
            tiles.append(Tile(i, j, regions[stage.output], ops, buffers,
                              _halo(graph, stage, regions[stage.output], regions[stage.image]),
                              sum(o.macs for o in ops)))
    placements, arena = tile_arena(stage, layout.buffer_sizes)
    out_bytes, in_bytes = stage_bytes(graph, stage)
    rest_peak = rest.peak_bytes if rest is not None else 0
    macs = model_macs - sum(op_macs(graph, op) for op in graph.ops[:stage.split]) + layout.stage_macs
    return PatchPlan(
        graph_name=graph.name, split=stage.split, grid=grid, image=stage.image, stage_output=stage.output,
        folded_pads=stage.folded_pads, tiles=tuple(tiles), tile_buffers=placements, tile_arena_bytes=arena,
        stage_output_bytes=out_bytes, input_bytes=in_bytes, stage_peak_bytes=out_bytes + arena, rest=rest,
        rest_peak_bytes=rest_peak, peak_bytes=max(out_bytes + arena, rest_peak),
        peak_bytes_with_input=max(out_bytes + arena + in_bytes, rest_peak), layerwise_peak_bytes=layerwise,
        macs=macs, model_macs=model_macs)


def plan_patches(graph: Graph, *, split: int, grid: tuple[int, int],
                 rest_strategy: str = "tensor") -> PatchPlan:
    """Patch-based plan running ops [0, split) on a grid (p rows x q columns) of stage-output tiles; the
    rest runs layer by layer, planned with `rest_strategy` ("tensor" or "segment")."""
    stage = build_stage(graph, split)
    return _plan(graph, stage, grid, plan_rest(graph, split, rest_strategy),
                 plan_layerwise(graph, rest_strategy).peak_bytes, graph_macs(graph), with_tiles=True)


@dataclass(frozen=True)
class PatchCandidate:
    """One (split, grid) the search evaluated, with the figures of its plan."""

    split: int
    grid: tuple[int, int]
    peak_bytes: int
    peak_bytes_with_input: int
    stage_peak_bytes: int
    rest_peak_bytes: int
    mac_overhead: float


@dataclass(frozen=True)
class PatchSearch:
    """Every candidate, and the best one within the MAC budget: least peak (input image excluded), then
    least overhead, then fewest tiles. None if no candidate is within budget."""

    graph_name: str
    rest_strategy: str
    layerwise_peak_bytes: int
    max_mac_overhead: float
    candidates: tuple[PatchCandidate, ...]
    best: PatchCandidate | None


def default_grids(max_grid: int = DEFAULT_MAX_GRID) -> list[tuple[int, int]]:
    """Square and near-square grids up to max_grid x max_grid."""
    return [(p, q) for p in range(1, max_grid + 1) for q in range(1, max_grid + 1) if abs(p - q) <= 1]


def search_patch_plans(graph: Graph, *, max_mac_overhead: float = 0.10, splits: Iterable[int] | None = None,
                       grids: Sequence[tuple[int, int]] | None = None,
                       rest_strategy: str = "tensor") -> PatchSearch:
    """Evaluate every legal split (or `splits`) with every grid that fits (default: `default_grids()`)."""
    layerwise = plan_layerwise(graph, rest_strategy).peak_bytes
    model_macs = graph_macs(graph)
    candidates = []
    for n in legal_splits(graph) if splits is None else splits:
        stage = build_stage(graph, n)
        rest = plan_rest(graph, n, rest_strategy)
        _, h, w, _ = graph.tensors[stage.output].shape
        for p, q in default_grids() if grids is None else grids:
            if p > h or q > w:
                continue
            plan = _plan(graph, stage, (p, q), rest, layerwise, model_macs, with_tiles=False)
            candidates.append(PatchCandidate(n, (p, q), plan.peak_bytes, plan.peak_bytes_with_input,
                                             plan.stage_peak_bytes, plan.rest_peak_bytes, plan.mac_overhead))
    within = [c for c in candidates if c.mac_overhead <= max_mac_overhead + 1e-12]
    best = min(within, key=lambda c: (c.peak_bytes, c.mac_overhead, c.grid[0] * c.grid[1], c.split),
               default=None)
    return PatchSearch(graph.name, rest_strategy, layerwise, max_mac_overhead, tuple(candidates), best)
