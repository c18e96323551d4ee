"""Tensor-level memory planning: every activation tensor gets its own bytes for its whole lifetime.

Two strategies:
- "tflm": TFLite Micro's plan, byte for byte. Graph order, sizes rounded up to TFLM's 16-byte buffer
  alignment, GreedyMemoryPlanner offsets. TFLM keeps variable tensors in its persistent tail, outside the
  planned head, so they are stacked above the head here.
- "tensor": the best plan found over candidate execution orders (graph order and a minimum-peak
  topological order) with RESHAPE aliasing and a placement search, 4-byte alignment (what int32 data and
  word loads of int8 data need on Cortex-M). TFLM's own offsets are kept as a fallback candidate, so the
  result never exceeds TFLM's head.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from vmcu.errors import PlanError
from vmcu.ir.graph import NO_TENSOR, Graph
from vmcu.plan.allocate import Buffer, search_placement, tflm_greedy
from vmcu.plan.lifetimes import Lifetime, align_up, compute_lifetimes, layer_lower_bound, planned_tensors
from vmcu.plan.plan import MemoryPlan, Placement

STRATEGIES = ("tensor", "tflm")
TFLM_ALIGNMENT = 16  # MicroArenaBufferAlignment() in TFLM: every planned size is rounded up to it
TENSOR_ALIGNMENT = 4
REORDER_WORK = 300_000  # the order search keeps about this many / ops**2 downsets per step
MAX_BEAM = 1000
SEARCH_SEED = 0


def plan_tensors(graph: Graph, *, strategy: str = "tensor") -> MemoryPlan:
    """Plan every activation tensor of `graph` into one arena (see the module docstring for strategies)."""
    if strategy == "tflm":
        return _tflm_plan(graph)
    if strategy != "tensor":
        raise PlanError(f"unknown tensor planning strategy '{strategy}' "
                        f"(choose from {', '.join(STRATEGIES)})")
    orders = dict.fromkeys((tuple(range(len(graph.ops))), min_peak_order(graph)))
    candidates = [_searched_plan(graph, order) for order in orders]
    candidates.append(_tflm_offsets_plan(graph))
    return min(candidates, key=lambda p: p.peak_bytes)


def _tflm_buffers(graph: Graph, lifetimes: dict[int, Lifetime]) -> tuple[list[int], list[Buffer]]:
    """The buffers TFLM plans, in the order it adds them (tensor index order, variables excluded)."""
    ids = [t for t in sorted(lifetimes) if not graph.tensors[t].is_variable]
    sizes = [align_up(graph.tensors[t].nbytes, TFLM_ALIGNMENT) for t in ids]
    return ids, [Buffer(n, lifetimes[t].first, lifetimes[t].last) for t, n in zip(ids, sizes, strict=True)]


def _tflm_plan(graph: Graph) -> MemoryPlan:
    """TFLM's head plan, with variable tensors stacked after it as TFLM's tail holds them."""
    order = tuple(range(len(graph.ops)))
    lifetimes = compute_lifetimes(graph, order)
    ids, buffers = _tflm_buffers(graph, lifetimes)
    offsets = dict(zip(ids, tflm_greedy(buffers), strict=True))
    top = max((offsets[t] + b.size for t, b in zip(ids, buffers, strict=True)), default=0)
    for t in sorted(lifetimes):
        if t not in offsets:
            offsets[t] = top
            top += align_up(graph.tensors[t].nbytes, TFLM_ALIGNMENT)
    return _make_plan(graph, "tflm", order, lifetimes, offsets, TFLM_ALIGNMENT, ())


def _tflm_offsets_plan(graph: Graph) -> MemoryPlan:
    """TFLM's offsets with this strategy's tighter sizes, so the result never exceeds TFLM's head.

    (Variables, which TFLM keeps outside its head, go above the planned bytes, as in the "tflm" plan.)
    """
    plan = _tflm_plan(graph)
    return _make_plan(graph, "tensor", plan.order, compute_lifetimes(graph, plan.order), plan.offsets(),
                      TENSOR_ALIGNMENT, ())


def _searched_plan(graph: Graph, order: tuple[int, ...]) -> MemoryPlan:
    """Placement search for one order, with RESHAPE outputs sharing their dying input's bytes."""
    lifetimes = compute_lifetimes(graph, order)
    aliases = reshape_aliases(graph, order, lifetimes)
    root = {out: src for out, src in aliases}

    def group_of(t: int) -> int:
        while t in root:
            t = root[t]
        return t

    groups: dict[int, list[int]] = {}
    for t in sorted(lifetimes):
        groups.setdefault(group_of(t), []).append(t)
    heads = sorted(groups)
    buffers = [Buffer(max(align_up(graph.tensors[t].nbytes, TENSOR_ALIGNMENT) for t in groups[g]),
                      min(lifetimes[t].first for t in groups[g]), max(lifetimes[t].last for t in groups[g]))
               for g in heads]
    offsets_by_group = search_placement(buffers, target=_live_peak(buffers), seed=SEARCH_SEED)
    offsets = {t: offsets_by_group[k] for k, g in enumerate(heads) for t in groups[g]}
    return _make_plan(graph, "tensor", order, lifetimes, offsets, TENSOR_ALIGNMENT, aliases)


def _live_peak(buffers: Sequence[Buffer]) -> int:
    """Most bytes live at one step: the search can stop when it gets there."""
    delta: dict[int, int] = {}
    for b in buffers:
        delta[b.first] = delta.get(b.first, 0) + b.size
        delta[b.last + 1] = delta.get(b.last + 1, 0) - b.size
    best = running = 0
    for step in sorted(delta):
        running += delta[step]
        best = max(best, running)
    return best


def _make_plan(graph: Graph, strategy: str, order: tuple[int, ...], lifetimes: dict[int, Lifetime],
               offsets: dict[int, int], alignment: int, aliases: tuple[tuple[int, int], ...]) -> MemoryPlan:
    placements = tuple(Placement(t, offsets[t], align_up(graph.tensors[t].nbytes, alignment),
                                 lifetimes[t].first, lifetimes[t].last) for t in sorted(lifetimes))
    return MemoryPlan.for_graph(
        graph, strategy=strategy, order=order, placements=placements,
        peak_bytes=max((p.end for p in placements), default=0),
        lower_bound_bytes=layer_lower_bound(graph, order, aliases), alignment=alignment, aliases=aliases)


def reshape_aliases(graph: Graph, order: Sequence[int],
                    lifetimes: dict[int, Lifetime]) -> tuple[tuple[int, int], ...]:
    """(output, input) of each RESHAPE whose input dies at it: the output simply keeps the input's bytes."""
    aliases = []
    outputs = set(graph.outputs)
    for step, op_index in enumerate(order):
        op = graph.ops[op_index]
        if op.type != "RESHAPE" or not op.inputs or len(op.outputs) != 1:
            continue
        src, out = op.inputs[0], op.outputs[0]
        if (src in lifetimes and out in lifetimes and lifetimes[src].last == step and src not in outputs
                and not graph.tensors[src].is_variable and not graph.tensors[out].is_variable
                and graph.tensors[src].nbytes == graph.tensors[out].nbytes):
            aliases.append((out, src))
    return tuple(aliases)


def min_peak_order(graph: Graph, beam: int | None = None) -> tuple[int, ...]:
    """A topological order of the ops that minimises the most bytes live at one step.

    Dynamic programming over the sets of ops already run (downsets): the bytes live between steps depend
    only on that set, so keeping the lowest peak per set is exact. Residual networks have few such sets;
    if a step has more than `beam` (by default sized so the search stays well under a second), the
    lowest (peak, live) ones are kept. Ties go to the order closest to the graph's own (lexicographically
    smallest).
    """
    n = len(graph.ops)
    beam = beam or max(8, min(MAX_BEAM, REORDER_WORK // max(n * n, 1)))
    planned = set(planned_tensors(graph))
    size = {t: graph.tensors[t].nbytes for t in planned}
    producers = graph.producers()
    consumers = graph.consumers()
    keep = set(graph.outputs) | {t for t in planned if graph.tensors[t].is_variable}
    needs = [_mask(producers[t] for t in op.inputs if t in producers) for op in graph.ops]
    readers = {t: _mask(consumers.get(t, ())) for t in planned}
    outs = [[t for t in dict.fromkeys(op.outputs) if t in planned] for op in graph.ops]
    ins = [[t for t in dict.fromkeys(op.inputs) if t in planned and t != NO_TENSOR] for op in graph.ops]
    start = sum(size[t] for t in planned if t not in producers)
    unread = sum(size[t] for t in planned if t not in producers and t not in keep and not readers[t])
    states: dict[int, tuple[int, int, tuple[int, ...]]] = {0: (start, start, ())}
    for _ in range(n):
        nxt: dict[int, tuple[int, int, tuple[int, ...]]] = {}
        for done, (top, live, path) in states.items():
            for v in range(n):
                if done >> v & 1 or needs[v] & ~done:
                    continue
                after = done | 1 << v
                produced = sum(size[t] for t in outs[v])
                freed = sum(size[t] for t in ins[v] + outs[v] if t not in keep and not readers[t] & ~after)
                freed += unread if not done else 0
                label = (max(top, live + produced), live + produced - freed, path + (v,))
                if after not in nxt or label < nxt[after]:
                    nxt[after] = label
        if len(nxt) > beam:
            nxt = dict(sorted(nxt.items(), key=lambda kv: kv[1])[:beam])
        states = nxt
    return min(states.values())[2]


def _mask(ops: Iterable[int]) -> int:
    """Bit set of op indices."""
    bits = 0
    for i in ops:
        bits |= 1 << i
    return bits
