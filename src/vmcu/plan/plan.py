"""Memory plans as value objects: where each buffer lives in the arena and when.

A plan is generic: a strategy name, an execution order and byte placements. Tensor-level, segment-level
and patch-based planners all produce this type, so reports, the checker and code generation read one
shape. Code generation honours the offsets as they are, so `alignment` states what they guarantee.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from vmcu.ir.graph import Graph


@dataclass(frozen=True)
class Placement:
    """`size_bytes` bytes at arena `offset`, kept from step `first_use` to step `last_use`.

    Steps are positions in `MemoryPlan.order`, both ends inclusive (see vmcu.plan.lifetimes).
    """

    tensor: int
    offset: int
    size_bytes: int
    first_use: int
    last_use: int

    @property
    def end(self) -> int:
        """First byte after the placement."""
        return self.offset + self.size_bytes

    def live_at(self, step: int) -> bool:
        return self.first_use <= step <= self.last_use


@dataclass(frozen=True)
class MemoryPlan:
    """An arena of `peak_bytes` bytes; `order` lists op indices in execution order.

    `lower_bound_bytes` is the least any placement of this order could use; `aliases` pairs an output
    tensor with the input tensor whose bytes it reuses (both are placed at the same offset).
    """

    strategy: str
    graph_name: str
    order: tuple[int, ...]
    op_types: tuple[str, ...]
    placements: tuple[Placement, ...]
    peak_bytes: int
    lower_bound_bytes: int
    alignment: int
    aliases: tuple[tuple[int, int], ...] = ()

    def placement(self, tensor: int) -> Placement:
        """The placement of one tensor; KeyError if the plan does not place it."""
        for p in self.placements:
            if p.tensor == tensor:
                return p
        raise KeyError(tensor)

    def offsets(self) -> dict[int, int]:
        """Tensor index -> arena offset, what code generation needs."""
        return {p.tensor: p.offset for p in self.placements}

    def live_at(self, step: int) -> list[Placement]:
        """Placements live at a step, lowest offset first."""
        return sorted((p for p in self.placements if p.live_at(step)), key=lambda p: (p.offset, p.tensor))

    def live_bytes_at(self, step: int) -> int:
        """Bytes in use at a step; an alias shares its input's bytes, so it is counted once."""
        live = self.live_at(step)
        live_ids = {p.tensor for p in live}
        shared = {out for out, src in self.aliases if src in live_ids}
        return sum(p.size_bytes for p in live if p.tensor not in shared)

    @classmethod
    def for_graph(cls, graph: Graph, **fields: Any) -> MemoryPlan:
        """Build a plan, filling `graph_name` and `op_types` from the graph."""
        order = tuple(fields.pop("order"))
        return cls(graph_name=graph.name, order=order, op_types=tuple(graph.ops[i].type for i in order),
                   **fields)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict with stable keys, for reports and for diffing plans."""
        return {
            "strategy": self.strategy,
            "graph": self.graph_name,
            "peak_bytes": self.peak_bytes,
            "lower_bound_bytes": self.lower_bound_bytes,
            "alignment": self.alignment,
            "order": list(self.order),
            "aliases": [list(a) for a in self.aliases],
            "placements": [
                {"tensor": p.tensor, "offset": p.offset, "size_bytes": p.size_bytes,
                 "first_use": p.first_use, "last_use": p.last_use}
                for p in sorted(self.placements, key=lambda p: p.tensor)
            ],
            "steps": [
                {"step": step, "op": op, "type": op_type,
                 "live": [{"tensor": p.tensor, "offset": p.offset, "size_bytes": p.size_bytes}
                          for p in self.live_at(step)],
                 "live_bytes": self.live_bytes_at(step)}
                for step, (op, op_type) in enumerate(zip(self.order, self.op_types, strict=True))
            ],
        }
