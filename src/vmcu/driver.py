"""The pipeline, top to bottom: model file -> Graph -> MemoryPlan (checked) -> C program -> run -> verdict.

Each function here composes pure stages; the CLI and the benchmarks call these and nothing deeper.
"""

from __future__ import annotations

import hashlib
import re
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vmcu.errors import ModelError, PlanError
from vmcu.frontend.tflite import read_tflite
from vmcu.ir.graph import Graph
from vmcu.ir.transform import fold_pads
from vmcu.support import check_supported

if TYPE_CHECKING:
    from vmcu.codegen.program import CProgram
    from vmcu.plan.patch import PatchPlan
    from vmcu.plan.plan import MemoryPlan
    from vmcu.plan.segment import SegmentPlan
    from vmcu.plan.stream import StreamPlan
    from vmcu.targets import Target

STRATEGIES = ("tensor", "tflm", "segment", "patch", "stream")
CODEGEN_STRATEGIES = ("tensor", "tflm", "segment", "patch", "stream")
KERNEL_VARIANTS = ("ref", "arm")
DEFAULT_MODEL = "mobilenetv2-0.35-96"
_BUILTIN = re.compile(r"mobilenetv2-(\d+(?:\.\d+)?)-(\d+)")


def builtin_model(name: str, cache_dir: Path) -> Path:
    """Write a builder-made model ("mobilenetv2-<width>-<resolution>") as .tflite: examples need no file."""
    m = _BUILTIN.fullmatch(name)
    if m is None:
        raise ModelError(f"{name}: no such file, and not a built-in model (e.g. {DEFAULT_MODEL})")
    path = cache_dir / f"{name}.tflite"
    if not path.exists():
        from vmcu.frontend.models import mobilenet_v2
        from vmcu.frontend.writer import write_tflite_file

        cache_dir.mkdir(parents=True, exist_ok=True)
        write_tflite_file(mobilenet_v2(float(m.group(1)), int(m.group(2))), path)
    return path


def resolve_model(model: str | None, cache_dir: Path) -> Path:
    """A model argument as a file path: an existing file, or a built-in model written on demand."""
    model = model or DEFAULT_MODEL
    if Path(model).exists() or not _BUILTIN.fullmatch(model):
        return Path(model)
    return builtin_model(model, cache_dir)


def load_model(path: str | Path, *, require_supported: bool = True, fold: bool = True) -> Graph:
    """Read a model and, unless only inspecting, refuse it early if any op cannot be compiled.

    A graph to compile comes back with its PADs folded into convolutions (`fold_pads`, bit-exact): every
    strategy then plans and generates code for the lighter graph, while inspecting shows the file's own.
    `fold=False` keeps the file's graph, which is what TFLM's own planner (strategy "tflm") sees.
    """
    graph = read_tflite(path)
    if not require_supported:
        return graph
    check_supported(graph)
    return fold_pads(graph) if fold else graph


def tflm_head_bytes(path: str | Path) -> int:
    """TFLM's planned activation area for the file as TFLM itself reads it (no folding), byte for byte."""
    return plan_memory(load_model(path, fold=False), "tflm").peak_bytes


def model_sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


FUSE_CHOICES = ("none", "recompute", "cache", "auto")


def plan_memory(graph: Graph, strategy: str = "tensor", *, max_mac_overhead: float = 0.10,
                rest_strategy: str = "tensor", fuse: str = "none", kernels: str | None = None) -> Any:
    """Plan the activation memory with the named strategy and prove the plan safe with its checker.

    Returns a MemoryPlan (tensor, tflm), a SegmentPlan (segment) or the best PatchPlan / StreamPlan
    (patch, stream) within `max_mac_overhead` extra MACs; see `search_staged` for every candidate.
    `fuse` (segment only) runs inverted bottlenecks as one fused kernel: "recompute" re-expands the window,
    "cache" keeps expanded rows (no extra MACs), "auto" picks per block the least SRAM, then fewest MACs:
    the whole arena of the program with `kernels` (their scratch included) when named, else pool + workspace.
    """
    if strategy in ("patch", "stream"):
        return search_staged(graph, strategy, max_mac_overhead=max_mac_overhead, rest_strategy=rest_strategy)[0]
    if strategy == "segment":
        from vmcu.plan.segment import plan_segments
        from vmcu.plan.segment_check import check_segment_plan

        if fuse not in FUSE_CHOICES:
            raise PlanError(f"unknown fuse choice '{fuse}'; choose one of {', '.join(FUSE_CHOICES)}")
        from vmcu.codegen.segment import segment_arena_bytes

        arena = partial(segment_arena_bytes, variant=kernels) if kernels is not None else None
        splan = plan_segments(graph, fuse=fuse, arena=arena)
        check_segment_plan(graph, splan)
        return splan
    from vmcu.plan.check import check_tensor_plan
    from vmcu.plan.tensor import plan_tensors

    if strategy not in STRATEGIES:
        raise PlanError(f"unknown strategy '{strategy}'; choose one of {', '.join(STRATEGIES)}")
    plan = plan_tensors(graph, strategy=strategy)
    check_tensor_plan(graph, plan)
    return plan


def search_staged(graph: Graph, strategy: str, *, max_mac_overhead: float = 0.10,
                  rest_strategy: str = "tensor") -> tuple[Any, Any]:
    """Search patch (split, grid) or stream (split, chunks) schedules; return the best plan and the search.

    The later layer-by-layer part is planned with `rest_strategy` and checked by that strategy's checker.
    """
    from vmcu.plan.check import check_tensor_plan
    from vmcu.plan.patch import plan_patches, search_patch_plans
    from vmcu.plan.segment_check import check_segment_plan
    from vmcu.plan.stream import plan_stream, search_stream_plans

    if strategy == "patch":
        search = search_patch_plans(graph, max_mac_overhead=max_mac_overhead, rest_strategy=rest_strategy)
        if search.best is None:
            raise PlanError(f"{graph.name}: no legal patch split stays within {max_mac_overhead:.1%} extra MACs")
        plan = plan_patches(graph, split=search.best.split, grid=search.best.grid, rest_strategy=rest_strategy)
    else:
        search = search_stream_plans(graph, rest_strategy=rest_strategy)
        if search.best is None:
            raise PlanError(f"{graph.name}: no legal split point for a stream schedule")
        plan = plan_stream(graph, split=search.best.split, column_chunks=search.best.column_chunks,
                           rest_strategy=rest_strategy)
    if plan.rest is not None:
        rest_plan = plan.rest.plan
        if rest_strategy == "segment":
            check_segment_plan(plan.rest.graph, rest_plan)
        else:
            check_tensor_plan(plan.rest.graph, rest_plan)
    return plan, search


def default_kernels(target: Target) -> str:
    """DSP kernels on Cortex-M, portable C on the host (the DSP intrinsics exist only for Arm)."""
    return "ref" if target.is_host else "arm"


def compile_graph(graph: Graph, strategy: str, kernels: str, *, max_mac_overhead: float = 0.10,
                  fuse: str = "none") -> tuple[MemoryPlan | SegmentPlan | PatchPlan | StreamPlan, CProgram]:
    """Plan (checked) and generate C for one graph; patch plans stay within `max_mac_overhead` extra MACs,
    segment plans fuse inverted bottlenecks as `fuse` says."""
    from vmcu.codegen.emit import emit_c

    if kernels not in KERNEL_VARIANTS:
        raise PlanError(f"unknown kernel variant '{kernels}'; choose one of {', '.join(KERNEL_VARIANTS)}")
    if strategy not in CODEGEN_STRATEGIES:
        raise PlanError(f"strategy '{strategy}' plans memory (vmcu plan) but has no C code generation yet; "
                        f"compile and run support {', '.join(CODEGEN_STRATEGIES)}")
    plan = plan_memory(graph, strategy, max_mac_overhead=max_mac_overhead, fuse=fuse, kernels=kernels)
    return plan, emit_c(graph, plan, variant=kernels)
