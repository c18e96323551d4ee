"""Graph + plan -> standalone C: the strategy's body wrapped into one program (see codegen/program.py)."""

from __future__ import annotations

from vmcu.codegen.program import CProgram, emit_program
from vmcu.codegen.segment import segment_body
from vmcu.codegen.tensor import tensor_body
from vmcu.ir.graph import Graph
from vmcu.plan.patch import PatchPlan
from vmcu.plan.plan import MemoryPlan
from vmcu.plan.segment import SegmentPlan
from vmcu.plan.stream import StreamPlan


def emit_c(graph: Graph, plan: MemoryPlan | SegmentPlan | PatchPlan | StreamPlan, *, variant: str = "ref",
           name: str | None = None) -> CProgram:
    """Generate `<name>.h`, `<name>.c` and a test harness `main.c` for a plan."""
    if isinstance(plan, PatchPlan | StreamPlan):
        from vmcu.codegen.patch import patch_body, stream_body

        staged = patch_body(graph, plan, variant) if isinstance(plan, PatchPlan) else stream_body(graph, plan, variant)
        return emit_program(graph, staged, variant=variant, name=name)
    body = segment_body(graph, plan, variant) if isinstance(plan, SegmentPlan) else tensor_body(graph, plan, variant)
    return emit_program(graph, body, variant=variant, name=name)
