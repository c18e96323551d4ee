"""Tensor-level memory planning: every activation tensor gets its own bytes for its whole lifetime.

Two strategies:
- "tflm": TFLite Micro's plan, byte for byte. Graph order, sizes rounded up to TFLM's 16-byte buffer
  alignment, GreedyMemoryPlanner offsets. TFLM keeps variable tensors in its persistent tail, outside the
  planned head, so they are stacked above the head here.
- "tensor": the best plan found over candidate execution orders (graph order and a minimum-peak
  topological order) with RESHAPE aliasing, in-place depthwise convolutions (TinyEngine: the output
  overwrites its dying input channel by channel, see kernels/ref/depthwise_conv_2d_inplace.c) and in-place
  pointwise convolutions that keep or shrink the channel count (output pixel t lands on input pixels <= t,
  which the conv kernels read before they store pixel t) where that lowers the peak, and a placement search,
  4-byte alignment (what int32 data and word loads of int8 data need on Cortex-M). TFLM's own offsets are
  kept as a fallback candidate, so the result never exceeds TFLM's head.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence

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
INPLACE_OPS = frozenset({"DEPTHWISE_CONV_2D", "CONV_2D", "ADD"})  # op types the "tensor" plan may run in place
TINYENGINE_INPLACE = frozenset({"DEPTHWISE_CONV_2D"})  # TinyEngine's in-place depthwise only (the papers' baseline)


def plan_tensors(graph: Graph, *, strategy: str = "tensor", inplace: Collection[str] = INPLACE_OPS) -> MemoryPlan:
    """Plan every activation tensor of `graph` into one arena (see the module docstring for strategies).

    `inplace` limits the op types the "tensor" strategy may run in place (`TINYENGINE_INPLACE`: the
    tensor-level baseline the vMCU and MCUNetV2 papers compare against)."""
    if strategy == "tflm":
        return _tflm_plan(graph)
    if strategy != "tensor":
        raise PlanError(f"unknown tensor planning strategy '{strategy}' "
                        f"(choose from {', '.join(STRATEGIES)})")
    orders = dict.fromkeys((tuple(range(len(graph.ops))), min_peak_order(graph)))
    if any(inplace_inputs(graph, op, inplace) for op in graph.ops):
        orders[min_peak_order(graph, inplace=inplace)] = None
    candidates = [plan for order in orders for plan in _order_candidates(graph, order, inplace)]
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


def _order_candidates(graph: Graph, order: tuple[int, ...], ops: Collection[str]) -> list[MemoryPlan]:
    """Plans of one order: without in-place ops, with every legal one, and with the free ones (pointwise
    conv, ADD: their ordinary kernels) plus only the in-place depthwise convs needed (at the steps too full
    for the bound with every alias, or for the plan with every alias).

    An aliased output must start at its input's offset, which constrains the placement of everything
    around the pair, and the in-place depthwise kernel is portable C, several times slower than the DSP
    one: it is only worth it where its step is too full otherwise, hence the candidates.
    """
    lifetimes = compute_lifetimes(graph, order)
    reshapes = reshape_aliases(graph, order, lifetimes)
    base = _searched_plan(graph, order, lifetimes, reshapes)
    inplace = inplace_aliases(graph, order, lifetimes, ops)
    bound = layer_lower_bound(graph, order, reshapes + inplace)
    if not inplace or bound >= base.peak_bytes:
        return [base]
    full = _searched_plan(graph, order, lifetimes, reshapes + inplace)
    producers = graph.producers()
    depthwise = {out for out, _ in inplace if graph.ops[producers[out]].type == "DEPTHWISE_CONV_2D"}
    free = tuple(a for a in inplace if a[0] not in depthwise)
    live = live_bytes(graph, order, reshapes + free)
    subsets = dict.fromkeys(tuple(a for a in inplace if a[0] not in depthwise or live[lifetimes[a[1]].last] > target)
                            for target in (bound, full.peak_bytes))
    return [base, full] + [_searched_plan(graph, order, lifetimes, reshapes + chosen)
                           for chosen in subsets if chosen and chosen != inplace]


def _searched_plan(graph: Graph, order: tuple[int, ...], lifetimes: dict[int, Lifetime],
                   aliases: tuple[tuple[int, int], ...]) -> MemoryPlan:
    """Placement search for one order, each aliased output at its dying input's offset. The tensors of an
    alias chain are placed as one group: each keeps its own size and lifetime, so a conv that shrinks its
    output holds only the output's bytes once its input is gone."""
    root = {out: src for out, src in aliases}

    def group_of(t: int) -> int:
        while t in root:
            t = root[t]
        return t

    tensors = sorted(lifetimes)
    buffers = [Buffer(align_up(graph.tensors[t].nbytes, TENSOR_ALIGNMENT), lifetimes[t].first, lifetimes[t].last)
               for t in tensors]
    members: dict[int, list[int]] = {}
    for k, t in enumerate(tensors):
        members.setdefault(group_of(t), []).append(k)
    groups = list(members.values())
    offsets = search_placement(buffers, target=_live_peak(buffers, groups), seed=SEARCH_SEED, groups=groups)
    return _make_plan(graph, "tensor", order, lifetimes, dict(zip(tensors, offsets, strict=True)),
                      TENSOR_ALIGNMENT, aliases)


def _live_peak(buffers: Sequence[Buffer], groups: Sequence[Sequence[int]]) -> int:
    """Most bytes live at one step, a group (sharing one offset) counted by its largest live member: the
    search can stop when it gets there."""
    steps = max((b.last for b in buffers), default=-1) + 1
    live = [0] * steps
    for group in groups:
        for step in range(min(buffers[i].first for i in group), max(buffers[i].last for i in group) + 1):
            live[step] += max((buffers[i].size for i in group if buffers[i].first <= step <= buffers[i].last),
                              default=0)
    return max(live, default=0)


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
                 if op.type == "RESHAPE" and _dies_into(graph, lifetimes, step, op, op.inputs[0])
                 and graph.tensors[op.inputs[0]].nbytes == graph.tensors[op.outputs[0]].nbytes)


def inplace_aliases(graph: Graph, order: Sequence[int], lifetimes: dict[int, Lifetime],
                    ops: Collection[str] = INPLACE_OPS) -> tuple[tuple[int, int], ...]:
    """(output, input) of each op of the types `ops` that can overwrite an input as it runs
    (`inplace_inputs`), the first such input that dies at it."""
    aliases = []
    for step, op in _steps(graph, order):
        dying = [t for t in inplace_inputs(graph, op, ops) if _dies_into(graph, lifetimes, step, op, t)]
        if dying:
            aliases.append((op.outputs[0], dying[0]))
    return tuple(aliases)


def inplace_inputs(graph: Graph, op: Op, ops: Collection[str] = INPLACE_OPS) -> tuple[int, ...]:
    """The inputs whose bytes the op's output may take over as it runs, should that input die at the op:
    an in-place depthwise or pointwise conv's input, either operand of an element-wise ADD (if the op's
    type is in `ops`)."""
    if op.type not in ops:
        return ()
    if (op.type == "DEPTHWISE_CONV_2D" and inplace_depthwise_fits(graph, op)) or (
            op.type == "CONV_2D" and inplace_pointwise_fits(graph, op)):
        return (op.inputs[0],)
    if op.type == "ADD" and inplace_add_fits(graph, op):
        return op.inputs[:2]
    return ()


def inplace_add_fits(graph: Graph, op: Op) -> bool:
    """Whether an ADD can store over either operand: no broadcast, int8, two distinct activations; the
    kernel reads element i of both before it stores element i."""
    if len(op.inputs) != 2 or len(op.outputs) != 1 or op.inputs[0] == op.inputs[1] or NO_TENSOR in op.inputs:
        return False
    a, b, out = (graph.tensors[t] for t in (*op.inputs, op.outputs[0]))
    return (a.dtype == b.dtype == out.dtype == "int8" and a.shape == b.shape == out.shape
            and not a.is_const and not b.is_const)


def inplace_depthwise_fits(graph: Graph, op: Op) -> bool:
    """Whether the in-place kernel can run this depthwise conv: int8 NHWC, as many output channels (and
    batches) as input channels, output bytes <= input bytes, the input read through no other operand."""
    if not op.inputs or op.inputs[0] == NO_TENSOR or len(op.outputs) != 1:
        return False
    a, b = graph.tensors[op.inputs[0]], graph.tensors[op.outputs[0]]
    return (a.dtype == b.dtype == "int8" and len(a.shape) == len(b.shape) == 4 and a.shape[0] == b.shape[0]
            and a.shape[3] == b.shape[3] and b.nbytes <= a.nbytes and op.inputs.count(op.inputs[0]) == 1)


def inplace_pointwise_fits(graph: Graph, op: Op) -> bool:
    """Whether a CONV_2D can store its output over its input with the ordinary kernels: a 1x1 filter at
    stride 1 over the same pixels (so no padding), int8, no more output than input channels. Output pixel t
    then covers input bytes below (t + 1) * C_in, pixels <= t, and every conv kernel reads the pixels of a
    block before it stores any of them (the overlap a segment plan's gap of 0 asks of it)."""
    if len(op.inputs) < 2 or op.inputs[0] == NO_TENSOR or len(op.outputs) != 1:
        return False
    a, f, b = (graph.tensors[t] for t in (op.inputs[0], op.inputs[1], op.outputs[0]))
    return (a.dtype == b.dtype == "int8" and len(a.shape) == len(b.shape) == len(f.shape) == 4
            and tuple(f.shape[1:3]) == (1, 1) and a.shape[:3] == b.shape[:3] and b.shape[3] <= a.shape[3]
            and op.options.get("stride_h", 1) == op.options.get("stride_w", 1) == 1
            and op.inputs.count(op.inputs[0]) == 1)


def _steps(graph: Graph, order: Sequence[int]) -> list[tuple[int, Op]]:
    return [(step, graph.ops[i]) for step, i in enumerate(order)]


def _dies_into(graph: Graph, lifetimes: dict[int, Lifetime], step: int, op: Op, src: int) -> bool:
    """Whether the op's single output may take over input `src`'s bytes: both planned, neither state,
    and `src` read for the last time at this step and no graph output."""
    if len(op.outputs) != 1:
        return False
    out = op.outputs[0]
    return (src in lifetimes and out in lifetimes and lifetimes[src].last == step and src not in graph.outputs
            and not graph.tensors[src].is_variable and not graph.tensors[out].is_variable)


def min_peak_order(graph: Graph, beam: int | None = None, *, inplace: Collection[str] = ()) -> tuple[int, ...]:
    """A topological order of the ops that minimises the most bytes live at one step.

    Dynamic programming over the sets of ops already run (downsets): the bytes live between steps depend
    only on that set, so keeping the lowest peak per set is exact. Residual networks have few such sets;
    if a step has more than `beam` (by default sized so the search stays well under a second), the
    lowest (peak, live) ones are kept. Ties go to the order closest to the graph's own (lexicographically
    smallest). With `inplace` (op types), a RESHAPE or such an op whose input dies at it is counted in place, as
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
    sources = [_inplace_sources(graph, op, planned, keep, inplace) if inplace else () for op in graph.ops]
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
                dies = any(not readers[src] & ~after for src in sources[v])
                shared = size[outs[v][0]] if dies else 0
                label = (max(top, live + produced - shared), live + produced - freed, path + (v,))
                if after not in nxt or label < nxt[after]:
                    nxt[after] = label
        if len(nxt) > beam:
            nxt = dict(sorted(nxt.items(), key=lambda kv: kv[1])[:beam])
        states = nxt
    return min(states.values())[2]


def _inplace_sources(graph: Graph, op: Op, planned: set[int], keep: set[int],
                     ops: Collection[str]) -> tuple[int, ...]:
    """The inputs an op's output may overwrite if one dies there (see the alias functions above)."""
    if len(op.outputs) != 1 or op.outputs[0] not in planned or graph.tensors[op.outputs[0]].is_variable:
        return ()
    if op.type == "RESHAPE" and graph.tensors[op.inputs[0]].nbytes == graph.tensors[op.outputs[0]].nbytes:
        candidates: tuple[int, ...] = op.inputs[:1]
    else:
        candidates = inplace_inputs(graph, op, ops)
    return tuple(t for t in candidates if t in planned - keep)


def _mask(ops: Iterable[int]) -> int:
    """Bit set of op indices."""
    bits = 0
    for i in ops:
        bits |= 1 << i
    return bits
