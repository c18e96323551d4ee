"""Tensor-level memory planning: every activation tensor gets its own bytes for its whole lifetime.

Two strategies:
- "tflm": TFLite Micro's plan, byte for byte. Graph order, sizes rounded up to TFLM's 16-byte buffer
  alignment, GreedyMemoryPlanner offsets. TFLM keeps variable tensors in its persistent tail, outside the
  planned head, so they are stacked above the head here.
- "tensor": the best plan found over candidate execution orders (graph order and a minimum-peak
  topological order) with RESHAPE aliasing, in-place depthwise convolutions (TinyEngine: the output
  overwrites its dying input channel by channel, see kernels/ref/depthwise_conv_2d_inplace.c) where that
  lowers the peak, and a placement search, 4-byte alignment (what int32 data and word loads of int8 data
  need on Cortex-M). TFLM's own offsets are kept as a fallback candidate, so the result never exceeds
  TFLM's head.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from vmcu.errors import PlanError
from vmcu.ir.graph import NO_TENSOR, Graph, Op
from vmcu.plan.allocate import Buffer, search_placement, tflm_greedy
from vmcu.plan.lifetimes import (
    Lifetime,
    align_up,
    compute_lifetimes,
    layer_lower_bound,
    live_bytes,
    planned_tensors,
)
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
    if any(op.type == "DEPTHWISE_CONV_2D" and inplace_depthwise_fits(graph, op) for op in graph.ops):
        orders[min_peak_order(graph, inplace=True)] = None
    candidates = [plan for order in orders for plan in _order_candidates(graph, order)]
    candidates.append(_tflm_offsets_plan(graph))
    return min(candidates, key=lambda p: (p.peak_bytes, len(inplace_ops(graph, p))))


def inplace_ops(graph: Graph, plan: MemoryPlan) -> set[int]:
    """Indices of the depthwise convs the plan runs in place: code generation must call the in-place
    kernel for them (an aliased RESHAPE, by contrast, needs no call at all)."""
    aliased = {out for out, _ in plan.aliases}
    return {i for i in plan.order if graph.ops[i].type == "DEPTHWISE_CONV_2D" and graph.ops[i].outputs[0] in aliased}


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


def _order_candidates(graph: Graph, order: tuple[int, ...]) -> list[MemoryPlan]:
    """Plans of one order: without in-place depthwise, with every legal one, and with only those needed.

    An aliased pair is placed as one block as large as the input for both lifetimes, so an in-place
    depthwise that shrinks its output (stride 2) reserves more than it needs after its step: it is only
    worth it where its step is too full otherwise, hence the three candidates.
    """
    lifetimes = compute_lifetimes(graph, order)
    reshapes = reshape_aliases(graph, order, lifetimes)
    base = _searched_plan(graph, order, lifetimes, reshapes)
    inplace = depthwise_aliases(graph, order, lifetimes)
    if not inplace or layer_lower_bound(graph, order, reshapes + inplace) >= base.peak_bytes:
        return [base]
    full = _searched_plan(graph, order, lifetimes, reshapes + inplace)
    live = live_bytes(graph, order, reshapes)
    needed = tuple(a for a in inplace if live[lifetimes[a[1]].last] > full.peak_bytes)
    if not needed or needed == inplace:
        return [base, full]
    return [base, full, _searched_plan(graph, order, lifetimes, reshapes + needed)]


def _searched_plan(graph: Graph, order: tuple[int, ...], lifetimes: dict[int, Lifetime],
                   aliases: tuple[tuple[int, int], ...]) -> MemoryPlan:
    """Placement search for one order, each aliased output sharing its dying input's bytes."""
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
    return tuple((op.outputs[0], op.inputs[0]) for step, op in _steps(graph, order)
                 if op.type == "RESHAPE" and _dies_into(graph, lifetimes, step, op)
                 and graph.tensors[op.inputs[0]].nbytes == graph.tensors[op.outputs[0]].nbytes)


def depthwise_aliases(graph: Graph, order: Sequence[int],
                      lifetimes: dict[int, Lifetime]) -> tuple[tuple[int, int], ...]:
    """(output, input) of each DEPTHWISE_CONV_2D that can overwrite its input as it runs: depth multiplier
    1 (output channel c reads input channel c only), the input dies at it, the output is no larger."""
    return tuple((op.outputs[0], op.inputs[0]) for step, op in _steps(graph, order)
                 if op.type == "DEPTHWISE_CONV_2D" and _dies_into(graph, lifetimes, step, op)
                 and inplace_depthwise_fits(graph, op))


def inplace_depthwise_fits(graph: Graph, op: Op) -> bool:
    """Whether the in-place kernel can run this depthwise conv: int8 NHWC, as many output channels (and
    batches) as input channels, output bytes <= input bytes, the input read through no other operand."""
    if not op.inputs or op.inputs[0] == NO_TENSOR or len(op.outputs) != 1:
        return False
    a, b = graph.tensors[op.inputs[0]], graph.tensors[op.outputs[0]]
    return (a.dtype == b.dtype == "int8" and len(a.shape) == len(b.shape) == 4 and a.shape[0] == b.shape[0]
            and a.shape[3] == b.shape[3] and b.nbytes <= a.nbytes and op.inputs.count(op.inputs[0]) == 1)


def _steps(graph: Graph, order: Sequence[int]) -> list[tuple[int, Op]]:
    return [(step, graph.ops[i]) for step, i in enumerate(order)]


def _dies_into(graph: Graph, lifetimes: dict[int, Lifetime], step: int, op: Op) -> bool:
    """Whether the op's single output may take over its first input's bytes: both planned, neither state,
    and the input read for the last time at this step and no graph output."""
    if not op.inputs or len(op.outputs) != 1:
        return False
    src, out = op.inputs[0], op.outputs[0]
    return (src in lifetimes and out in lifetimes and lifetimes[src].last == step and src not in graph.outputs
            and not graph.tensors[src].is_variable and not graph.tensors[out].is_variable)


def min_peak_order(graph: Graph, beam: int | None = None, *, inplace: bool = False) -> tuple[int, ...]:
    """A topological order of the ops that minimises the most bytes live at one step.

    Dynamic programming over the sets of ops already run (downsets): the bytes live between steps depend
    only on that set, so keeping the lowest peak per set is exact. Residual networks have few such sets;
    if a step has more than `beam` (by default sized so the search stays well under a second), the
    lowest (peak, live) ones are kept. Ties go to the order closest to the graph's own (lexicographically
    smallest). With `inplace`, a RESHAPE or depthwise conv whose input dies at it is counted in place, as
    the planner may alias it: orders that let it are worth finding.
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
    sources = [_inplace_source(graph, op, planned, keep) if inplace else None for op in graph.ops]
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
                src = sources[v]
                shared = size[outs[v][0]] if src is not None and not readers[src] & ~after else 0
                label = (max(top, live + produced - shared), live + produced - freed, path + (v,))
                if after not in nxt or label < nxt[after]:
                    nxt[after] = label
        if len(nxt) > beam:
            nxt = dict(sorted(nxt.items(), key=lambda kv: kv[1])[:beam])
        states = nxt
    return min(states.values())[2]


def _inplace_source(graph: Graph, op: Op, planned: set[int], keep: set[int]) -> int | None:
    """The input an op's output may overwrite if the input dies there (see the alias functions above)."""
    if not op.inputs or len(op.outputs) != 1 or op.inputs[0] not in planned - keep or op.outputs[0] not in planned:
        return None
    if graph.tensors[op.outputs[0]].is_variable:
        return None
    if op.type == "RESHAPE" and graph.tensors[op.inputs[0]].nbytes == graph.tensors[op.outputs[0]].nbytes:
        return op.inputs[0]
    if op.type == "DEPTHWISE_CONV_2D" and inplace_depthwise_fits(graph, op):
        return op.inputs[0]
    return None


def _mask(ops: Iterable[int]) -> int:
    """Bit set of op indices."""
    bits = 0
    for i in ops:
        bits |= 1 << i
    return bits
