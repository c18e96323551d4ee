"""Independent check of a tensor-level plan: a wrong offset corrupts data silently, so verify every plan.

Nothing here comes from the planner: the execution order, the set of tensors that need bytes, their
lifetimes and the bound are recomputed from the graph and `plan.order` alone, deliberately duplicating
vmcu.plan.lifetimes so that a bug there cannot vouch for itself.
"""

from __future__ import annotations

from vmcu.errors import PlanError
from vmcu.ir.graph import NO_TENSOR, Graph, Op
from vmcu.plan.plan import MemoryPlan, Placement


def check_tensor_plan(graph: Graph, plan: MemoryPlan) -> None:
    """Raise PlanError (one line) on the first problem found; return None for a sound plan."""
    where = f"{graph.name}: plan '{plan.strategy}'"
    _check_order(graph, plan, where)
    spans = _lifetimes(graph, plan.order)
    by_tensor = _check_placements(graph, plan, spans, where)
    allowed = _check_aliases(graph, plan, spans, by_tensor, where)
    _check_overlaps(graph, plan, allowed, where)
    bound = _bound(graph, spans, plan.aliases, len(plan.order))
    if plan.lower_bound_bytes != bound or plan.peak_bytes < bound:
        raise PlanError(f"{where}: claims lower bound {plan.lower_bound_bytes} B and peak "
                        f"{plan.peak_bytes} B, but {bound} B are live at the busiest step")


def _check_order(graph: Graph, plan: MemoryPlan, where: str) -> None:
    n = len(graph.ops)
    if n == 0 or sorted(plan.order) != list(range(n)):
        raise PlanError(f"{where}: order {list(plan.order)} does not run each of the {n} ops exactly once")
    if tuple(plan.op_types) != tuple(graph.ops[i].type for i in plan.order):
        raise PlanError(f"{where}: op types {list(plan.op_types)} do not match the ops of the order")
    written_by = {t: op.index for op in graph.ops for t in op.outputs}
    ran: set[int] = set()
    for step, i in enumerate(plan.order):
        for t in graph.ops[i].inputs:
            if t in written_by and written_by[t] not in ran:
                raise PlanError(f"{where}: step {step} runs op {i} ({graph.ops[i].type}) which reads tensor "
                                f"{t} before op {written_by[t]} writes it")
        ran.add(i)


def _lifetimes(graph: Graph, order: tuple[int, ...]) -> dict[int, tuple[int, int]]:
    """(first, last) step of every tensor that needs bytes, recomputed from the graph."""
    end = len(order) - 1
    referenced = set(graph.inputs) | set(graph.outputs)
    first: dict[int, int] = {}
    last: dict[int, int] = {}
    for step, i in enumerate(order):
        op = graph.ops[i]
        referenced.update(t for t in op.inputs + op.outputs if t != NO_TENSOR)
        for t in op.outputs:
            first.setdefault(t, step)
            last[t] = max(step, last.get(t, step))
        for t in op.inputs:
            if t != NO_TENSOR:
                last[t] = step
    spans = {}
    for t in sorted(referenced):
        tensor = graph.tensors[t]
        if tensor.is_const or tensor.nbytes == 0:
            continue
        if tensor.is_variable:
            spans[t] = (0, end)
            continue
        lo = first[t] if t in first and t not in graph.inputs else 0
        spans[t] = (lo, end if t in graph.outputs else last.get(t, lo))
    return spans


def _check_placements(graph: Graph, plan: MemoryPlan, spans: dict[int, tuple[int, int]],
                      where: str) -> dict[int, Placement]:
    a = plan.alignment
    if a <= 0:
        raise PlanError(f"{where}: alignment {a} is not positive")
    by_tensor: dict[int, Placement] = {}
    for p in plan.placements:
        name = _name(graph, p.tensor) if 0 <= p.tensor < len(graph.tensors) else f"tensor {p.tensor}"
        if p.tensor not in spans:
            raise PlanError(f"{where}: places {name}, which is not an activation tensor the graph uses")
        if p.tensor in by_tensor:
            raise PlanError(f"{where}: places {name} twice")
        by_tensor[p.tensor] = p
        need = -(-graph.tensors[p.tensor].nbytes // a) * a
        if p.size_bytes != need:
            raise PlanError(f"{where}: {name} is given {p.size_bytes} B, it needs {need} B at alignment {a}")
        if p.offset < 0 or p.offset % a or p.end > plan.peak_bytes:
            raise PlanError(f"{where}: {name} at [{p.offset}, {p.end}) is misaligned or outside the arena "
                            f"[0, {plan.peak_bytes}) (alignment {a})")
        if (p.first_use, p.last_use) != spans[p.tensor]:
            raise PlanError(f"{where}: {name} is placed for steps {p.first_use}..{p.last_use}, but is live "
                            f"at steps {spans[p.tensor][0]}..{spans[p.tensor][1]}")
    missing = sorted(set(spans) - set(by_tensor))
    if missing:
        raise PlanError(f"{where}: {_name(graph, missing[0])} is not placed ({len(missing)} tensors missing)")
    if plan.peak_bytes != max((p.end for p in plan.placements), default=0):
        raise PlanError(f"{where}: peak {plan.peak_bytes} B is not the end of the highest placement")
    return by_tensor


def _check_aliases(graph: Graph, plan: MemoryPlan, spans: dict[int, tuple[int, int]],
                   by_tensor: dict[int, Placement], where: str) -> set[frozenset[int]]:
    """Each alias must be a RESHAPE (same bytes), an in-place depthwise conv (output at the input's
    offset, depth multiplier 1, no more bytes than the input), an in-place pointwise conv (see
    `_check_inplace_pointwise`) or an element-wise ADD over one operand, whose input dies at it."""
    allowed = set()
    for out, src in plan.aliases:
        steps = [s for s, i in enumerate(plan.order) if graph.ops[i].outputs == (out,) and (
                 graph.ops[i].type in ("RESHAPE", "DEPTHWISE_CONV_2D", "CONV_2D") and graph.ops[i].inputs[:1] == (src,)
                 or graph.ops[i].type == "ADD" and src in graph.ops[i].inputs)]
        if not steps or out not in by_tensor or src not in by_tensor:
            raise PlanError(f"{where}: alias of tensor {out} onto tensor {src} is not a RESHAPE or an in-place "
                            "DEPTHWISE_CONV_2D, CONV_2D or ADD of planned tensors")
        op = graph.ops[plan.order[steps[0]]]
        if spans[src][1] != steps[0] or src in graph.outputs:
            raise PlanError(f"{where}: alias {_name(graph, out)} onto {_name(graph, src)}: the input is "
                            f"still live after the {op.type} at step {steps[0]}")
        o, s = by_tensor[out], by_tensor[src]
        if op.type == "RESHAPE" and (o.offset, o.size_bytes) != (s.offset, s.size_bytes):
            raise PlanError(f"{where}: alias {_name(graph, out)} [{o.offset}, {o.end}) does not sit on "
                            f"{_name(graph, src)} [{s.offset}, {s.end})")
        if op.type == "DEPTHWISE_CONV_2D":
            _check_inplace_depthwise(graph, op, o, s, where)
        if op.type == "CONV_2D":
            _check_inplace_pointwise(graph, op, o, s, where)
        if op.type == "ADD":
            _check_inplace_add(graph, op, o, s, where)
        allowed.add(frozenset((out, src)))
    return allowed


def _check_inplace_pointwise(graph: Graph, op: Op, o: Placement, s: Placement, where: str) -> None:
    """A conv may store over its input only if output pixel t reads input pixel t alone (1x1 filter, stride
    1, same pixels) and lands on input pixels <= t (no more output than input channels, same base): the
    kernels read a block of pixels before storing it, so nothing unread is overwritten."""
    a, b = graph.tensors[s.tensor], graph.tensors[o.tensor]
    f = graph.tensors[op.inputs[1]] if len(op.inputs) > 1 else None
    strides = (op.options.get("stride_h", 1), op.options.get("stride_w", 1))
    pointwise = (f is not None and len(f.shape) == len(a.shape) == len(b.shape) == 4 and f.shape[1] == f.shape[2] == 1
                 and strides == (1, 1) and a.shape[:3] == b.shape[:3] and op.inputs.count(s.tensor) == 1)
    if not pointwise or b.shape[3] > a.shape[3]:
        raise PlanError(f"{where}: in-place conv op {op.index} needs a 1x1 stride-1 filter over the same pixels "
                        f"and no more output channels, but maps {_name(graph, s.tensor)} {list(a.shape)} to "
                        f"{_name(graph, o.tensor)} {list(b.shape)}")
    if o.offset != s.offset or o.end > s.end:
        raise PlanError(f"{where}: in-place conv op {op.index}: {_name(graph, o.tensor)} [{o.offset}, "
                        f"{o.end}) must start at and fit in {_name(graph, s.tensor)} [{s.offset}, {s.end})")


def _check_inplace_depthwise(graph: Graph, op: Op, o: Placement, s: Placement, where: str) -> None:
    """The in-place kernel stores output channel c over input channel c only once that channel is read,
    which needs one output channel per input channel, the same base and an output no larger than the input."""
    a, b = graph.tensors[s.tensor], graph.tensors[o.tensor]
    same_channels = len(a.shape) == len(b.shape) == 4 and a.shape[0] == b.shape[0] and a.shape[3] == b.shape[3]
    if not same_channels or op.inputs.count(s.tensor) != 1:
        raise PlanError(f"{where}: in-place depthwise op {op.index} needs depth multiplier 1, but maps "
                        f"{_name(graph, s.tensor)} {list(a.shape)} to {_name(graph, o.tensor)} {list(b.shape)}")
    if o.offset != s.offset or b.nbytes > a.nbytes or o.end > s.end:
        raise PlanError(f"{where}: in-place depthwise op {op.index}: {_name(graph, o.tensor)} [{o.offset}, "
                        f"{o.end}) must start at and fit in {_name(graph, s.tensor)} [{s.offset}, {s.end})")


def _check_inplace_add(graph: Graph, op: Op, o: Placement, s: Placement, where: str) -> None:
    """An ADD may store element i over operand element i (read just before): only without broadcast, on
    int8, with the operand read once, at the operand's very bytes."""
    a, b = graph.tensors[s.tensor], graph.tensors[o.tensor]
    shapes = {tuple(graph.tensors[t].shape) for t in op.inputs}
    if len(op.inputs) != 2 or shapes != {tuple(b.shape)} or op.inputs.count(s.tensor) != 1 or a.dtype != b.dtype:
        raise PlanError(f"{where}: in-place ADD op {op.index} needs two distinct operands of the output's shape "
                        f"and type, but maps {_name(graph, s.tensor)} {list(a.shape)} to "
                        f"{_name(graph, o.tensor)} {list(b.shape)}")
    if (o.offset, o.size_bytes) != (s.offset, s.size_bytes):
        raise PlanError(f"{where}: in-place ADD op {op.index}: {_name(graph, o.tensor)} [{o.offset}, {o.end}) "
                        f"does not sit on {_name(graph, s.tensor)} [{s.offset}, {s.end})")


def _check_overlaps(graph: Graph, plan: MemoryPlan, allowed: set[frozenset[int]], where: str) -> None:
    ordered = sorted(plan.placements, key=lambda p: (p.first_use, p.tensor))
    for k, a in enumerate(ordered):
        for b in ordered[k + 1:]:
            if b.first_use > a.last_use:
                break
            if a.offset < b.end and b.offset < a.end and frozenset((a.tensor, b.tensor)) not in allowed:
                step = b.first_use
                op = plan.order[step]
                raise PlanError(f"{where}: {_name(graph, a.tensor)} [{a.offset}, {a.end}) and "
                                f"{_name(graph, b.tensor)} [{b.offset}, {b.end}) share bytes while both are "
                                f"live at step {step} (op {op} {graph.ops[op].type})")


def _bound(graph: Graph, spans: dict[int, tuple[int, int]], aliases: tuple[tuple[int, int], ...],
           steps: int) -> int:
    """Most raw bytes live at one step, an aliased output counted once with its input."""
    src_of = dict(aliases)
    per_step = [0] * steps
    for t, (lo, hi) in spans.items():
        for s in range(lo, hi + 1):
            src = src_of.get(t)
            if src is None or not spans[src][0] <= s <= spans[src][1]:
                per_step[s] += graph.tensors[t].nbytes
    return max(per_step)


def _name(graph: Graph, t: int) -> str:
    return f"tensor {t} '{graph.tensors[t].name}'"
