"""Memory timelines as pictures: SRAM needed at every op, one line per strategy, against a board's SRAM."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from vmcu.ir.graph import Graph
from vmcu.plan.patch import PatchPlan
from vmcu.plan.plan import MemoryPlan
from vmcu.plan.receptive import build_stage
from vmcu.plan.segment import SegmentPlan
from vmcu.plan.stream import StreamPlan


def tensor_timeline(plan: MemoryPlan) -> list[int]:
    """Arena bytes in use at each step of a tensor-level plan: the end of its highest live buffer, so a
    planner's fragmentation shows (TFLM's greedy placement) and not only the bytes of live tensors."""
    return [max((p.end for p in plan.live_at(step)), default=0) for step in range(len(plan.order))]


def segment_timeline(graph: Graph, splan: SegmentPlan) -> list[int]:
    """Bytes a segment plan needs at each step: every live tensor, less what the output overlaps of the
    input it overwrites (|Out| - gap, at most |In|), plus the kernel's workspace."""
    plan = splan.plan
    out = []
    for step, seg in enumerate(splan.steps):
        live = plan.live_bytes_at(step)
        if seg.chained_input >= 0:
            size_in = graph.tensors[seg.chained_input].nbytes
            size_out = graph.tensors[seg.output].nbytes
            live -= max(0, min(size_in, size_out - seg.gap_bytes))
        out.append(live + seg.workspace_bytes)
    return out


def plot_timelines(title: str, labels: Sequence[str], timelines: Mapping[str, Sequence[int]], path: Path,
                   budget_bytes: int | None = None, budget_label: str = "SRAM") -> Path:
    """One line per strategy over the ops; peaks are written in the legend so the figure reads alone."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 4.2))
    for name, values in timelines.items():
        kib = [v / 1024 for v in values]
        ax.step(range(len(kib)), kib, where="mid", label=f"{name} (peak {max(values):,} B)", linewidth=1.6)
    if budget_bytes:
        ax.axhline(budget_bytes / 1024, color="crimson", linestyle="--", linewidth=1,
                   label=f"{budget_label} ({budget_bytes // 1024} KiB)")
    ax.set_xlabel("op (execution order)")
    ax.set_ylabel("SRAM for activations (KiB)")
    ax.set_title(title)
    if len(labels) <= 40:
        ax.set_xticks(range(len(labels)), labels, rotation=90, fontsize=7)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_plan_comparison(graph: Graph, plans: Mapping[str, MemoryPlan | SegmentPlan], path: Path,
                         budget_bytes: int | None = None, budget_label: str = "SRAM") -> Path:
    """Plot several plans of one graph over its ops (tensor-level plans as arena extent in use, segment
    plans as the per-op need, whose peak the pool rounds up to whole segments)."""
    timelines = {}
    order: tuple[int, ...] = ()
    for name, plan in plans.items():
        if isinstance(plan, SegmentPlan):
            timelines[f"{name}, pool {plan.pool_bytes + plan.workspace_bytes:,} B,"] = segment_timeline(graph, plan)
            order = plan.plan.order
        else:
            timelines[name] = tensor_timeline(plan)
            order = plan.order
    labels = [f"{i} {graph.ops[i].type.split('_')[0][:5]}" for i in order]
    return plot_timelines(graph.name, labels, timelines, path, budget_bytes, budget_label)


def staged_timeline(graph: Graph, plan: PatchPlan | StreamPlan) -> dict[int, int]:
    """Bytes a patch or stream plan needs at each model op (input image excluded, as the papers count):
    in the stage the full stage output plus the tile buffers live at that op (patch) or every ring
    (stream); after the cut the later layers' tensor-level arena in use."""
    stage = build_stage(graph, plan.split)
    need: dict[int, int] = {}
    for k, step in enumerate(stage.steps):
        if isinstance(plan, PatchPlan):
            tiles = max((p.end for p in plan.tile_buffers if p.first_use <= k <= p.last_use), default=0)
        else:
            tiles = plan.ring_bytes
        need[step.op] = plan.stage_output_bytes + tiles
    if plan.rest is not None and isinstance(plan.rest.plan, MemoryPlan):
        for step, used in enumerate(tensor_timeline(plan.rest.plan)):
            need[plan.split + plan.rest.plan.order[step]] = used
    return need
