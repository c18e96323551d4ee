"""The pipeline, top to bottom: model file -> Graph -> MemoryPlan (checked) -> C program -> run -> verdict.

Each function here composes pure stages; the CLI and the benchmarks call these and nothing deeper.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING

from vmcu.errors import PlanError
from vmcu.frontend.tflite import read_tflite
from vmcu.ir.graph import Graph
from vmcu.support import check_supported

if TYPE_CHECKING:
    from vmcu.plan.plan import MemoryPlan

STRATEGIES = ("tensor", "tflm")


def load_model(path: str | Path, *, require_supported: bool = True) -> Graph:
    """Read a model and, unless only inspecting, refuse it early if any op cannot be compiled."""
    graph = read_tflite(path)
    if require_supported:
        check_supported(graph)
    return graph


def model_sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def plan_memory(graph: Graph, strategy: str = "tensor") -> MemoryPlan:
    """Plan the activation memory with the named strategy and prove the plan safe with its checker."""
    from vmcu.plan.check import check_tensor_plan
    from vmcu.plan.tensor import plan_tensors

    if strategy not in STRATEGIES:
        raise PlanError(f"unknown strategy '{strategy}'; choose one of {', '.join(STRATEGIES)}")
    plan = plan_tensors(graph, strategy=strategy)
    check_tensor_plan(graph, plan)
    return plan
