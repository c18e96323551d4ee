"""Segment-level memory planning (vMCU): SRAM is one circular pool, and an op's output reuses the bytes
its input frees as the kernel walks it.

Every address is taken modulo the pool size P. A tensor A and a tensor B written later, both live at
once, need `d = (b_A - b_B) mod P` in [lo, P - |A|]: lo = |B| keeps them apart (an arc on the circle),
and when A is an input whose last reader is the op writing B, lo is that op's gap (segment_gap), so B
may start `gap` bytes before A and overwrite A as it is consumed. That makes the plan an interval
problem on a circle: for each new tensor the positions these constraints forbid are arcs, and the
planner takes the highest free position at or below the preferred one (`b_in - gap` for a chained
input, just below an input otherwise), so the chain marches backwards around the pool and jumps over
tensors that must stay alive (residual inputs, tensors with several readers, graph outputs, inputs of
ops without a segment kernel). The pool size is searched: the smallest multiple of the pool unit for
which this placement succeeds, starting from a lower bound.

Segments never straddle the wrap: an op with segment size s has every tensor it touches at a multiple
of s, and the pool size P is a multiple of s. So P is a multiple of the pool unit U, and every op's
segment divides U. vMCU's default sizes (min(C_in, C_out) and alike) can have a huge lcm (2,016,000 on
an MCUNet), so U is chosen, not derived: candidates are the lcm of the k most used default sizes, the
coarsest whose pool is within 1% of the pool found with 1-byte segments wins, and each op uses
gcd(default size, U), the largest divisor of its default that divides U. A finer segment costs wrap
checks, never bytes.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from vmcu.errors import PlanError
from vmcu.ir.fusion import FUSED_OP, VARIANTS, FusedBlock, find_fusable_blocks, fuse_graph
from vmcu.ir.graph import NO_TENSOR, Graph
from vmcu.plan.fused import fused_geometry, fused_macs, unfused_macs
from vmcu.plan.lifetimes import Lifetime, compute_lifetimes
from vmcu.plan.plan import MemoryPlan, Placement
from vmcu.plan.segment_gap import OpSchedule, activation_inputs, op_schedule, round_up

FUSE_OPTIONS = ("none", "recompute", "cache", "auto")
POOL_TOLERANCE = 0.01  # a coarser pool unit (bigger segments) is taken if the pool grows by at most 1%


@dataclass(frozen=True)
class SegmentStep:
    """What the code generator needs to run one op on the circular pool.

    `input_bases` follows `op.inputs` (-1 for a constant or absent input). `chained_input` is the input
    whose freed bytes the output overwrites (-1 if the output overlaps no input); then `gap_bytes` is
    `(base of that input - output_base) mod pool_bytes`, at least `min_gap_bytes`. The kernel stores
    `steps` units of `unit_bytes`, staged in a workspace of `workspace_bytes` (0: store directly, as the
    output overlaps no input or the op is elementwise), and touches the pool in whole `segment_bytes`
    segments, none of which straddles the wrap.
    """

    op: int
    op_type: str
    inputs: tuple[int, ...]
    input_bases: tuple[int, ...]
    output: int
    output_base: int
    chained_input: int
    gap_bytes: int
    min_gap_bytes: int
    segment_bytes: int
    unit_bytes: int
    steps: int
    pool_bytes: int
    workspace_bytes: int


@dataclass(frozen=True)
class SegmentPlan:
    """A segment-level plan: `plan.placements` hold pool bases (a tensor may wrap past `pool_bytes`).

    `pool_bytes` = `plan.peak_bytes`, a multiple of `pool_unit`. `workspace_bytes`, the largest step
    workspace, lives outside the pool: SRAM needed = pool_bytes + workspace_bytes. With fused inverted
    bottlenecks, `fused_graph` is the graph the steps and `plan.order` index (see `step_graph`).
    """

    plan: MemoryPlan
    steps: tuple[SegmentStep, ...]
    pool_bytes: int
    pool_unit: int
    workspace_bytes: int
    fused_graph: Graph | None = None

    @property
    def peak_bytes(self) -> int:
        return self.pool_bytes

    @property
    def strategy(self) -> str:
        return self.plan.strategy

    @property
    def lower_bound_bytes(self) -> int:
        return self.plan.lower_bound_bytes

    def step_graph(self, graph: Graph) -> Graph:
        """The graph whose ops the steps run: `graph` itself, or it with each fused block as one op
        (same tensors, so tensor indices are those of `graph`)."""
        if self.fused_graph is None:
            return graph
        if self.fused_graph.name != graph.name or len(self.fused_graph.tensors) != len(graph.tensors):
            raise PlanError(f"{graph.name}: the plan's fused graph was made from another graph")
        return self.fused_graph


@dataclass(frozen=True)
class _Analysis:
    """What does not depend on the segment sizes: order, lifetimes and each op's schedule."""

    graph: Graph
    order: tuple[int, ...]
    lifetimes: dict[int, Lifetime]
    schedules: dict[int, OpSchedule]


@dataclass(frozen=True)
class _Problem:
    """Everything the placement needs for one choice of segment sizes."""

    base: _Analysis
    segments: dict[int, int]
    unit: int
    align: dict[int, int]
    chains: tuple[dict[int, int], ...]  # per step: dying input -> least distance the output may precede it

    @property
    def graph(self) -> Graph:
        return self.base.graph

    def size(self, t: int) -> int:
        return self.base.graph.tensors[t].nbytes


def _analyse(graph: Graph) -> _Analysis:
    order = tuple(range(len(graph.ops)))
    schedules = {op.index: op_schedule(graph, op) for op in graph.ops}
    return _Analysis(graph, order, compute_lifetimes(graph, order), schedules)


def _problem(base: _Analysis, segments: dict[int, int], unit: int) -> _Problem:
    """Tensor alignments and the rounded chain gaps of every step, for these segment sizes.

    An input may be overwritten by the output of the op that reads it last, if that op has a segment
    kernel and the input is neither a graph output nor a variable; the least distance is the op's gap
    rounded up to whole segments.
    """
    graph, lifetimes = base.graph, base.lifetimes
    align = {t: 1 for t in lifetimes}
    chains = []
    for step, op_index in enumerate(base.order):
        op = graph.ops[op_index]
        for t in set(activation_inputs(graph, op)) | set(op.outputs):
            if t in align:
                align[t] = math.lcm(align[t], segments[op_index])
        sched = base.schedules[op_index]
        chains.append({a: round_up(g, segments[op_index]) for a, g in sched.gaps
                       if sched.overlap and a in lifetimes and lifetimes[a].last == step
                       and a not in graph.outputs and not graph.tensors[a].is_variable})
    return _Problem(base, segments, unit, align, tuple(chains))


def candidate_units(schedules: dict[int, OpSchedule], limit: int) -> list[int]:
    """Pool units to try, largest first: the lcm of the k most used default segment sizes, for each k
    (a size whose lcm would pass `limit` is left out)."""
    uses = Counter(s.segment_bytes for s in schedules.values() if s.overlap)
    units = [1]
    for size, _ in sorted(uses.items(), key=lambda kv: (-kv[1], -kv[0])):
        if units[-1] < math.lcm(units[-1], size) <= limit:
            units.append(math.lcm(units[-1], size))
    return units[::-1]


def _lower_bound(p: _Problem) -> int:
    """Bytes any pool needs at the busiest op: all live tensors, less the most the output can overlap
    its dying inputs (at most |Out| minus their smallest gap, at most their total size)."""
    lifetimes = p.base.lifetimes
    best = max((p.size(t) for t in lifetimes), default=0)
    for step, op_index in enumerate(p.base.order):
        total = sum(p.size(t) for t, life in lifetimes.items() if life.first <= step <= life.last)
        out = p.graph.ops[op_index].outputs[0]
        dying = p.chains[step]
        if out in lifetimes and dying:
            total -= max(0, min(sum(p.size(a) for a in dying), p.size(out) - min(dying.values())))
        best = max(best, total)
    return best


def _fit(preferred: int, align: int, arcs: list[tuple[int, int]], pool: int) -> tuple[int, int] | None:
    """Highest position at or below `preferred` (circularly) that is a multiple of `align` and outside
    every forbidden arc (start, length); returns (position, distance moved) or None if none exists."""
    pos = preferred % pool // align * align
    moved = (preferred - pos) % pool
    while True:
        hit = next((start for start, length in arcs if (pos - start) % pool < length), None)
        if hit is None:
            return pos, moved
        below = (hit - 1) % pool // align * align
        moved += (pos - below) % pool
        if moved >= pool:
            return None
        pos = below


def _arcs(p: _Problem, placed: dict[int, int], t: int, chain: dict[int, int],
          pool: int) -> list[tuple[int, int]] | None:
    """Arcs of positions forbidden for the base of `t`: each live placed tensor A allows only
    `(b_A - b_t) mod pool` in [lo, pool - |A|], lo = the chain gap if `t` may overwrite A, else |t|."""
    arcs = []
    life = p.base.lifetimes[t]
    for a, base in placed.items():
        other = p.base.lifetimes[a]
        if other.last < life.first or other.first > life.last:
            continue
        lo = chain.get(a, p.size(t))
        length = p.size(a) + lo - 1
        if length >= pool:
            return None
        if length > 0:
            arcs.append(((base - lo + 1) % pool, length))
    return arcs


def _place(p: _Problem, pool: int) -> dict[int, int] | None:
    """Bases of every planned tensor in a pool of `pool` bytes, or None if the greedy finds no room.

    Graph inputs go first, one below the other. Then each op's output takes the highest free position
    at or below one of its preferred positions (b_in - gap for each input it may overwrite, just below
    each input), whichever needs the shortest move.
    """
    lifetimes = p.base.lifetimes
    if max((p.size(t) for t in lifetimes), default=0) > pool:
        return None
    placed: dict[int, int] = {}
    produced = {t for op in p.graph.ops for t in op.outputs}
    last_base = 0
    for t in sorted(t for t in lifetimes if t not in produced):
        arcs = _arcs(p, placed, t, {}, pool)
        fit = None if arcs is None else _fit(last_base - p.size(t) if placed else 0, p.align[t], arcs, pool)
        if fit is None:
            return None
        placed[t] = last_base = fit[0]
    for step, op_index in enumerate(p.base.order):
        op = p.graph.ops[op_index]
        out = op.outputs[0]
        if out not in lifetimes:
            continue
        chain = p.chains[step]
        arcs = _arcs(p, placed, out, chain, pool)
        if arcs is None:
            return None
        inputs = [a for a in activation_inputs(p.graph, op) if a in placed]
        preferred = [placed[a] - chain[a] for a in inputs if a in chain]
        preferred += [placed[a] - p.size(out) for a in inputs] or [last_base - p.size(out)]
        fits = [f for f in (_fit(x, p.align[out], arcs, pool) for x in preferred) if f is not None]
        if not fits:
            return None
        placed[out] = last_base = min(fits, key=lambda f: f[1])[0]
    return placed


def _smallest_pool(p: _Problem, low: int, high: int) -> tuple[int, dict[int, int]] | None:
    """Smallest multiple of the unit in [low, high] the placement fits in (bisection), or None."""
    low, high = round_up(low, p.unit), high // p.unit * p.unit
    found = _place(p, high) if high >= low else None
    if found is None:
        return None
    while high > low:
        mid = (low + high) // 2 // p.unit * p.unit
        trial = _place(p, mid)
        if trial is None:
            low = mid + p.unit
        else:
            high, found = mid, trial
    return high, found


def _search_pool(p: _Problem) -> tuple[int, dict[int, int]]:
    """Smallest pool the placement fits in: double the headroom above the lower bound until it fits,
    then bisect."""
    lower = round_up(max(_lower_bound(p), 1), p.unit)
    limit = 4 * sum(p.size(t) for t in p.base.lifetimes) + 4 * p.unit
    low, headroom = lower, 0
    while True:
        result = _smallest_pool(p, low, lower + headroom)
        if result is not None:
            return result
        low, headroom = lower + headroom + p.unit, max(p.unit, 2 * headroom)
        if low > limit:
            raise PlanError(f"{p.graph.name}: no segment plan found up to a pool of {limit} B")


def plan_segments(graph: Graph, *, segment_bytes: int | None = None, fuse: str = "none",
                  arena: Callable[[Graph, SegmentPlan], int] | None = None) -> SegmentPlan:
    """Plan `graph` on a circular pool with vMCU's segment-level reuse (see the module docstring).

    `segment_bytes` forces one segment size on every op with a segment kernel (and makes it the pool
    unit). By default the pool is first sized with 1-byte segments (the least memory this placement
    reaches); then the coarsest candidate unit whose pool stays within POOL_TOLERANCE of that is taken,
    each op using gcd(its vMCU segment size, unit).

    `fuse` runs every fusable inverted bottleneck (vmcu.ir.fusion) as one kernel (vmcu.plan.fused):
    "recompute" or "cache" for all blocks, "none" for none. "auto" chooses per block among the three,
    least SRAM first, then fewest MACs: it starts from the best of the three uniform choices, then visits
    the blocks (most recomputation first) and takes any other choice of one block that improves the plan
    in that order. SRAM is `arena(graph, plan)` when given (the program's whole arena, with the kernels'
    scratch, which a fused kernel may need more of than its layers), else pool + workspace.
    """
    if not graph.ops:
        raise PlanError(f"{graph.name}: the graph has no ops, so there is nothing to plan")
    if fuse not in FUSE_OPTIONS:
        raise PlanError(f"{graph.name}: fuse must be one of {', '.join(FUSE_OPTIONS)}, not '{fuse}'")
    blocks = find_fusable_blocks(graph) if fuse != "none" else []
    if not blocks:
        return _plan_graph(graph, segment_bytes)
    if fuse != "auto":
        return _plan_fused(graph, blocks, [fuse] * len(blocks), segment_bytes)
    return _choose_variants(graph, blocks, segment_bytes, arena)


def _choose_variants(graph: Graph, blocks: list[FusedBlock], segment_bytes: int | None,
                     arena: Callable[[Graph, SegmentPlan], int] | None) -> SegmentPlan:
    """fuse="auto": the plan of least (SRAM, MACs) by one pass of single-block changes (see
    `plan_segments`)."""
    extra = []
    for b in blocks:
        g = fused_geometry(graph, b)
        extra.append({"none": 0} | {v: fused_macs(g, v) - unfused_macs(graph, b) for v in VARIANTS})

    def score(variants: list[str]) -> tuple[tuple[int, int], list[str], SegmentPlan]:
        splan = _plan_fused(graph, blocks, variants, segment_bytes)
        macs = sum(e[v] for e, v in zip(extra, variants, strict=True))
        sram = arena(graph, splan) if arena else splan.pool_bytes + splan.workspace_bytes
        return (sram, macs), variants, splan

    best = min((score([v] * len(blocks)) for v in ("none",) + VARIANTS), key=lambda s: s[0])
    for i in sorted(range(len(blocks)), key=lambda i: -extra[i]["recompute"]):
        for alternative in ("none",) + VARIANTS:
            if alternative != best[1][i]:
                trial = score(best[1][:i] + [alternative] + best[1][i + 1:])
                best = min(best, trial, key=lambda s: s[0])
    return best[2]


def _plan_fused(graph: Graph, blocks: list[FusedBlock], variants: list[str],
                segment_bytes: int | None) -> SegmentPlan:
    """The plan with each block fused as its variant says ("none": left as separate ops)."""
    kept = [(b, v) for b, v in zip(blocks, variants, strict=True) if v != "none"]
    return _plan_graph(fuse_graph(graph, [b for b, _ in kept], [v for _, v in kept]), segment_bytes)


def _plan_graph(graph: Graph, segment_bytes: int | None) -> SegmentPlan:
    """`plan_segments` of one graph, possibly rewritten by `fuse_graph`."""
    base = _analyse(graph)
    if segment_bytes is not None:
        if segment_bytes < 1:
            raise PlanError(f"{graph.name}: segment size must be a positive number of bytes, "
                            f"got {segment_bytes}")
        problem = _problem(base, _segments(base, lambda s: segment_bytes), segment_bytes)
        pool, bases = _search_pool(problem)
        return _assemble(problem, bases, pool)
    exact = _problem(base, _segments(base, lambda s: 1), 1)
    best, bases = _search_pool(exact)
    for unit in candidate_units(base.schedules, best):
        problem = _problem(base, _segments(base, lambda s, u=unit: math.gcd(s, u)), unit)
        found = _smallest_pool(problem, best, int(best * (1 + POOL_TOLERANCE)))
        if found is not None:
            return _assemble(problem, found[1], found[0])
    return _assemble(exact, bases, best)


def _segments(base: _Analysis, size: Callable[[int], int]) -> dict[int, int]:
    """Segment size per op: `size(default)` for ops with a segment kernel, 1 for the others."""
    return {i: size(s.segment_bytes) if s.overlap else 1 for i, s in base.schedules.items()}


def replace_bases(graph: Graph, splan: SegmentPlan, bases: dict[int, int]) -> SegmentPlan:
    """The same plan (segments, pool) with other tensor bases: how tests build plans the planner would
    not make (e.g. with a gap one segment too small) to see the checker reject them."""
    base = _analyse(splan.step_graph(graph))
    segments = {s.op: s.segment_bytes for s in splan.steps}
    return _assemble(_problem(base, segments, splan.pool_unit), bases, splan.pool_bytes)


def _assemble(p: _Problem, bases: dict[int, int], pool: int) -> SegmentPlan:
    """Record the placement as a MemoryPlan plus one SegmentStep per op."""
    g, lifetimes = p.graph, p.base.lifetimes
    steps = []
    aliases = []
    for step, op_index in enumerate(p.base.order):
        op = g.ops[op_index]
        out = op.outputs[0]
        sched = p.base.schedules[op_index]
        chained, gap, min_gap = -1, 0, 0
        for a, need in p.chains[step].items():
            d = (bases[a] - bases[out]) % pool
            if d < p.size(out) and (chained < 0 or d < gap):
                chained, gap, min_gap = a, d, need
        if op.type == "RESHAPE" and chained >= 0 and gap == 0 and p.size(chained) == p.size(out):
            aliases.append((out, chained))
        input_bases = tuple(bases.get(t, -1) if t != NO_TENSOR else -1 for t in op.inputs)
        workspace = sched.scratch_bytes + (sched.workspace_bytes if chained >= 0 else 0)
        steps.append(SegmentStep(
            op_index, op.type, op.inputs, input_bases, out, bases.get(out, -1), chained, gap, min_gap,
            p.segments[op_index], sched.unit_bytes, sched.steps, pool, workspace))
    placements = tuple(Placement(t, bases[t], p.size(t), life.first, life.last)
                       for t, life in sorted(lifetimes.items()))
    alignment = math.gcd(*(p.align[t] for t in lifetimes)) if lifetimes else 1
    plan = MemoryPlan.for_graph(g, strategy="segment", order=p.base.order, placements=placements,
                                peak_bytes=pool, lower_bound_bytes=round_up(_lower_bound(p), p.unit),
                                alignment=alignment, aliases=tuple(aliases))
    return SegmentPlan(plan, tuple(steps), pool, p.unit, max((s.workspace_bytes for s in steps), default=0),
                       g if any(op.type == FUSED_OP for op in g.ops) else None)
