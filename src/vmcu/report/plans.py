"""Every kind of plan as one JSON-ready dict with the same headline keys (strategy, peak_bytes,
lower_bound_bytes, steps) and its own details, so `vmcu plan` prints any strategy the same way."""

from __future__ import annotations

from typing import Any

from vmcu.ir.graph import Graph
from vmcu.plan.patch import PatchPlan, PatchSearch
from vmcu.plan.plan import MemoryPlan
from vmcu.plan.segment import SegmentPlan
from vmcu.plan.stream import StreamPlan, StreamSearch


def plan_payload(graph: Graph, plan: Any, search: Any = None) -> dict[str, Any]:
    """The headline figures and per-step detail of a plan of any strategy."""
    if isinstance(plan, MemoryPlan):
        return plan.to_json()
    if isinstance(plan, SegmentPlan):
        base = plan.plan.to_json()
        base.update({
            "strategy": "segment", "peak_bytes": plan.pool_bytes + plan.workspace_bytes,
            "pool_bytes": plan.pool_bytes, "workspace_bytes": plan.workspace_bytes, "pool_unit": plan.pool_unit,
            "circular": True,
            "segment_steps": [{"op": s.op, "type": s.op_type, "input_bases": list(s.input_bases),
                               "output_base": s.output_base, "gap_bytes": s.gap_bytes,
                               "min_gap_bytes": s.min_gap_bytes, "segment_bytes": s.segment_bytes}
                              for s in plan.steps],
        })
        return base
    if isinstance(plan, PatchPlan | StreamPlan):
        return _staged_payload(graph, plan, search)
    raise TypeError(f"no report for {type(plan).__name__}")


def _staged_payload(graph: Graph, plan: PatchPlan | StreamPlan, search: PatchSearch | StreamSearch | None
                    ) -> dict[str, Any]:
    """Patch and stream plans: the stage, the later layer-by-layer plan and the search's candidates."""
    rest = plan.rest.plan.to_json() if plan.rest is not None and isinstance(plan.rest.plan, MemoryPlan) else None
    payload: dict[str, Any] = {
        "strategy": "patch" if isinstance(plan, PatchPlan) else "stream",
        "graph": plan.graph_name, "split": plan.split,
        "peak_bytes": plan.peak_bytes, "peak_bytes_with_input": plan.peak_bytes_with_input,
        "lower_bound_bytes": plan.layerwise_peak_bytes, "layerwise_peak_bytes": plan.layerwise_peak_bytes,
        "stage_peak_bytes": plan.stage_peak_bytes, "stage_output_bytes": plan.stage_output_bytes,
        "input_bytes": plan.input_bytes, "rest_peak_bytes": plan.rest_peak_bytes,
        "mac_overhead": plan.mac_overhead, "macs": plan.macs, "model_macs": plan.model_macs,
        "steps": rest["steps"] if rest else [],
    }
    if isinstance(plan, PatchPlan):
        payload |= {"grid": list(plan.grid), "tile_arena_bytes": plan.tile_arena_bytes,
                    "tiles": [{"row": t.row, "col": t.col, "output": [t.output.y0, t.output.y1, t.output.x0,
                                                                     t.output.x1],
                               "halo": [t.halo.top, t.halo.bottom, t.halo.left, t.halo.right], "macs": t.macs}
                              for t in plan.tiles]}
    else:
        payload |= {"column_chunks": plan.column_chunks, "ring_bytes": plan.ring_bytes}
    if search is not None:
        payload["candidates"] = [
            {"split": c.split, **({"grid": list(c.grid)} if hasattr(c, "grid") else
                                  {"column_chunks": c.column_chunks}),
             "peak_bytes": c.peak_bytes, "peak_bytes_with_input": c.peak_bytes_with_input,
             "mac_overhead": c.mac_overhead} for c in search.candidates]
    return payload
