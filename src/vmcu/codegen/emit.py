"""Graph + plan -> standalone C: the strategy's body wrapped into one program (see codegen/program.py)."""

from __future__ import annotations

from vmcu.codegen.program import CProgram, emit_program
from vmcu.codegen.tensor import tensor_body
from vmcu.ir.graph import Graph
from vmcu.plan.plan import MemoryPlan


def emit_c(graph: Graph, plan: MemoryPlan, *, variant: str = "ref", name: str | None = None) -> CProgram:
    """Generate `<name>.h`, `<name>.c` and a test harness `main.c` for a plan."""
    return emit_program(graph, tensor_body(graph, plan, variant), variant=variant, name=name)
