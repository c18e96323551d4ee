"""Tensor lifetimes over an execution order, and the lower bound they imply for any tensor-level plan.

The one definition of a lifetime lives here: positions are steps of the execution order (step s runs
op `order[s]`), both ends inclusive. A tensor is live from the step that writes it to the last step that
reads it. Graph inputs (and activation tensors that no op writes) are live from step 0, graph outputs
until the last step, variable tensors for the whole run (they keep state between invocations).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from vmcu.errors import PlanError
from vmcu.ir.graph import NO_TENSOR, Graph


@dataclass(frozen=True)
class Lifetime:
    """Inclusive interval of execution steps during which a tensor's bytes must be kept."""

    first: int
    last: int

    def overlaps(self, other: Lifetime) -> bool:
        return self.first <= other.last and other.first <= self.last


def align_up(n: int, alignment: int) -> int:
    """Round a byte count up to a multiple of `alignment`."""
    return -(-n // alignment) * alignment


def planned_tensors(graph: Graph) -> list[int]:
    """Indices of the tensors that need SRAM: non-constant, non-empty, and used by the graph.

    Unreferenced tensors (such as the zero-sized LSTM 'intermediates' converters emit) need no bytes.
    """
    used = set(graph.inputs) | set(graph.outputs)
    for op in graph.ops:
        used.update(t for t in op.inputs + op.outputs if t != NO_TENSOR)
    return [t.index for t in graph.tensors if t.index in used and not t.is_const and t.nbytes > 0]


def validate_order(graph: Graph, order: Sequence[int]) -> None:
    """Raise PlanError unless `order` runs every op once and each op after the producers of its inputs."""
    if not graph.ops:
        raise PlanError(f"{graph.name}: the graph has no ops, so there is nothing to plan")
    if sorted(order) != list(range(len(graph.ops))):
        raise PlanError(f"{graph.name}: execution order {list(order)} is not a permutation of the "
                        f"{len(graph.ops)} ops")
    producers = graph.producers()
    done: set[int] = set()
    for step, op_index in enumerate(order):
        for t in graph.ops[op_index].inputs:
            p = producers.get(t)
            if p is not None and p not in done:
                raise PlanError(f"{graph.name}: step {step} runs op {op_index} before op {p}, which writes "
                                f"its input tensor {t}")
        done.add(op_index)


def compute_lifetimes(graph: Graph, order: Sequence[int]) -> dict[int, Lifetime]:
    """Lifetime of every planned tensor (see `planned_tensors`) when the ops run in `order`."""
    validate_order(graph, order)
    last_step = max(len(order) - 1, 0)
    first: dict[int, int] = {}
    last: dict[int, int] = {}
    for step, op_index in enumerate(order):
        op = graph.ops[op_index]
        for t in op.outputs:
            first.setdefault(t, step)
            last[t] = max(last.get(t, step), step)
        for t in op.inputs:
            if t != NO_TENSOR:
                last[t] = step
    outputs = set(graph.outputs)
    lifetimes = {}
    for t in planned_tensors(graph):
        if graph.tensors[t].is_variable:
            lifetimes[t] = Lifetime(0, last_step)
            continue
        start = 0 if t in graph.inputs or t not in first else first[t]
        end = last_step if t in outputs else last.get(t, start)
        lifetimes[t] = Lifetime(start, end)
    return lifetimes


def live_bytes(graph: Graph, order: Sequence[int], aliases: Iterable[tuple[int, int]] = ()) -> list[int]:
    """Bytes of the tensors live at each step; an aliased tensor (output, input) counts only once."""
    lifetimes = compute_lifetimes(graph, order)
    shared = {out: src for out, src in aliases}
    per_step = [0] * len(order)
    for t, life in lifetimes.items():
        src = shared.get(t)
        for step in range(life.first, life.last + 1):
            if src is None or not lifetimes[src].first <= step <= lifetimes[src].last:
                per_step[step] += graph.tensors[t].nbytes
    return per_step


def layer_lower_bound(graph: Graph, order: Sequence[int], aliases: Iterable[tuple[int, int]] = ()) -> int:
    """Most bytes live at one step: no placement of this order (with these aliases) can use less."""
    return max(live_bytes(graph, order, aliases), default=0)


def op_io_bound(graph: Graph) -> int:
    """Max over ops of the bytes of the op's activation inputs and outputs, the same for every order."""
    planned = set(planned_tensors(graph))
    return max((sum(graph.tensors[t].nbytes for t in set(op.inputs + op.outputs) if t in planned)
                for op in graph.ops), default=0)
