"""`vmcu bench paper-vmcu`: vMCU's single layers (Fig. 7) and inverted-bottleneck modules (Table 2) rebuilt
with the builder API, planned tensor-level (TinyEngine-style: in-place depthwise) and segment-level (unfused
and fused), next to the paper's figures; then the shared models end to end (TFLM head, tensor, segment).

With instructions on, each case is compiled twice (tensor and segment strategy), run on the emulated
Cortex-M4 and checked byte for byte against the reference executor. The paper's RAM figures include a
runtime of ~4-8 KiB; ours are activation bytes only.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vmcu import driver
from vmcu.bench.mcunetv2 import models_dir, stderr_progress
from vmcu.errors import VmcuError
from vmcu.frontend.models import (
    VMCU_BOTTLENECK_MODULES,
    VMCU_POINTWISE_CASES,
    inverted_bottleneck_module,
    pointwise_layer,
)
from vmcu.ir.graph import Graph
from vmcu.plan.check import check_tensor_plan
from vmcu.plan.segment import plan_segments
from vmcu.plan.segment_check import check_segment_plan
from vmcu.plan.tensor import TINYENGINE_INPLACE, plan_tensors
from vmcu.reference.executor import random_inputs
from vmcu.report.text import fmt_bytes, format_table
from vmcu.run.toolchain import arm_toolchain_missing
from vmcu.run.verify import build_compiled, verify_program
from vmcu.targets import get_target

KIB = 1024
TARGET = "cortex-m4"
# Paper figures in KiB: pointwise cases (Fig. 7: TinyEngine, vMCU) and modules (Table 2: TinyEngine, vMCU).
# S2 has S1's shapes and the table lists them together; B1-B17 have one published vMCU figure, the
# network's bottleneck (B1, 102.7 KiB), against TinyEngine's bottleneck (B2, 247.8 KiB).
PAPER_POINTWISE_KIB = ((209.0, 105.7), (205.2, 104.5), (109.0, 57.7), (157.5, 105.4), (80.2, 54.8), (33.1, 23.4),
                       (31.4, 21.9), (19.2, 14.8), (19.2, 16.9))
PAPER_MODULE_KIB = {"S1": (36.0, 13.9), "S2": (36.0, 13.9), "S3": (23.0, 11.8), "S4": (20.5, 10.8),
                    "S5": (13.8, 10.6), "S6": (12.6, 9.7), "S7": (13.2, 11.5), "S8": (11.7, 10.2)}
PAPER_BOTTLENECK_KIB = (247.8, 102.7)


def cases() -> list[tuple[str, Callable[[], Graph], float | None, float | None]]:
    """(case, graph factory, paper TinyEngine KiB, paper vMCU KiB) in the paper's order."""
    out: list[tuple[str, Callable[[], Graph], float | None, float | None]] = []
    for i, (shape, (te, vm)) in enumerate(zip(VMCU_POINTWISE_CASES, PAPER_POINTWISE_KIB, strict=True), start=1):
        out.append((str(i), lambda s=shape: pointwise_layer(*s), te, vm))
    for name, shape in VMCU_BOTTLENECK_MODULES.items():
        te, vm = PAPER_MODULE_KIB.get(name, (None, None))
        out.append((name, lambda s=shape: inverted_bottleneck_module(*s), te, vm))
    return out


def _instructions(graph: Graph, strategy: str, work: Path) -> tuple[int | None, int | None, bool | None, str]:
    """Cortex-M4 instructions of one strategy's program and of its ops' kernels alone (without the program's
    input and output handling, such as the segment pool's rotation that makes a graph output contiguous), its
    bit-exactness, and a note if it could not run."""
    target = get_target(TARGET)
    try:
        _, program = driver.compile_graph(graph, strategy, driver.default_kernels(target))
        binary = build_compiled(program, target, None, work / strategy)
        report = verify_program(graph, program, binary, target, None, random_inputs(graph, 1, seed=0))
    except VmcuError as e:
        return None, None, None, str(e).splitlines()[0]
    return report.instructions, sum(c.instructions for c in report.per_op), report.bit_exact, ""


def measure_case(case: str, graph: Graph, paper_te: float | None, paper_vm: float | None,
                 instructions: bool) -> dict[str, Any]:
    """One row: exact bytes of every plan (each checked), the paper's figures and, optionally, instructions."""
    tensor = plan_tensors(graph, inplace=TINYENGINE_INPLACE)
    check_tensor_plan(graph, tensor)
    unfused = driver.plan_memory(graph, "segment")
    fused = plan_segments(graph, fuse="auto")
    check_segment_plan(graph, fused)
    row: dict[str, Any] = {
        "case": case, "tensor_bytes": tensor.peak_bytes,
        "tflm_bytes": driver.plan_memory(graph, "tflm").peak_bytes,
        "segment_unfused_bytes": unfused.pool_bytes + unfused.workspace_bytes,
        "segment_bytes": fused.pool_bytes + fused.workspace_bytes,
        "paper_tinyengine_bytes": round(paper_te * KIB) if paper_te else None,
        "paper_vmcu_bytes": round(paper_vm * KIB) if paper_vm else None,
        "instructions_tensor": None, "instructions_segment": None,
        "kernel_instructions_tensor": None, "kernel_instructions_segment": None,
    }
    if instructions:
        with tempfile.TemporaryDirectory(prefix="vmcu-bench-") as tmp:
            for strategy in ("tensor", "segment"):
                count, kernels, exact, note = _instructions(graph, strategy, Path(tmp))
                row[f"instructions_{strategy}"] = count
                row[f"kernel_instructions_{strategy}"] = kernels
                row[f"bit_exact_{strategy}"] = exact
                if note:
                    row[f"note_{strategy}"] = note
    return row


def measure_models(directory: Path, progress: Callable[[str], None]) -> list[dict[str, Any]]:
    """The shared models with supported ops: TFLM's head (file as read), vmcu tensor, segment, fused segment."""
    rows = []
    for path in sorted(directory.glob("*.tflite")):
        try:
            graph = driver.load_model(path)
        except VmcuError:
            continue
        progress(f"planning {path.stem}")
        seg = driver.plan_memory(graph, "segment")
        fused = plan_segments(graph, fuse="auto")
        check_segment_plan(graph, fused)
        rows.append({"model": path.stem, "tflm_head_bytes": driver.tflm_head_bytes(path),
                     "tensor_bytes": driver.plan_memory(graph, "tensor").peak_bytes,
                     "segment_unfused_bytes": seg.pool_bytes + seg.workspace_bytes,
                     "segment_bytes": fused.pool_bytes + fused.workspace_bytes})
    return rows


def run(*, instructions: bool = True, directory: Path | None = None, only: tuple[str, ...] = (),
        progress: Callable[[str], None] = stderr_progress) -> dict[str, Any]:
    """Every paper case, then the shared models."""
    if instructions and arm_toolchain_missing() is not None:
        raise VmcuError(f"instruction counts need the Arm toolchain: {arm_toolchain_missing()}")
    rows = []
    for case, factory, te, vm in cases():
        if only and case not in only:
            continue
        progress(f"case {case}")
        rows.append(measure_case(case, factory(), te, vm, instructions))
    bottleneck = max((r for r in rows if r["case"].startswith("B")), key=lambda r: r["segment_bytes"], default=None)
    return {"target": TARGET, "rows": rows,
            "imagenet_bottleneck": None if bottleneck is None else {
                "case": bottleneck["case"], "segment_bytes": bottleneck["segment_bytes"],
                "paper_vmcu_bytes": round(PAPER_BOTTLENECK_KIB[1] * KIB),
                "paper_tinyengine_bytes": round(PAPER_BOTTLENECK_KIB[0] * KIB)},
            "models": [] if only else measure_models(directory or models_dir(), progress)}


def text(payload: dict[str, Any]) -> str:
    """The tables the command prints without --json."""

    def opt(v: Any) -> str:
        return "-" if v is None else fmt_bytes(v)

    def overhead(r: dict[str, Any], prefix: str) -> str:
        t, s = r[f"{prefix}instructions_tensor"], r[f"{prefix}instructions_segment"]
        return "-" if not t or not s else f"{s / t - 1:+.1%}"

    rows = [[r["case"], fmt_bytes(r["tflm_bytes"]), fmt_bytes(r["tensor_bytes"]), fmt_bytes(r["segment_unfused_bytes"]),
             fmt_bytes(r["segment_bytes"]), opt(r["paper_tinyengine_bytes"]), opt(r["paper_vmcu_bytes"]),
             opt(r["instructions_tensor"]), opt(r["instructions_segment"]), overhead(r, ""), overhead(r, "kernel_")]
            for r in payload["rows"]]
    parts = [format_table(["case", "TFLM B", "tensor B", "segment B", "fused B", "paper TinyEngine B", "paper vMCU B",
                           "instr tensor", "instr segment", "segment cost", "kernels only"], rows,
                          right=tuple(range(1, 11)))]
    b = payload["imagenet_bottleneck"]
    if b:
        parts.append(f"ImageNet network bottleneck (B1-B17): {b['case']} at {fmt_bytes(b['segment_bytes'])} B vs "
                     f"the paper's vMCU {fmt_bytes(b['paper_vmcu_bytes'])} B "
                     f"(TinyEngine {fmt_bytes(b['paper_tinyengine_bytes'])} B)")
    if payload["models"]:
        parts.append(format_table(
            ["shared model", "TFLM head B", "vmcu tensor B", "segment B", "fused segment B"],
            [[m["model"], fmt_bytes(m["tflm_head_bytes"]), fmt_bytes(m["tensor_bytes"]),
              fmt_bytes(m["segment_unfused_bytes"]), fmt_bytes(m["segment_bytes"])] for m in payload["models"]],
            right=(1, 2, 3, 4)))
    notes = [f"case {r['case']} {k}: {r[f'note_{k}']}" for r in payload["rows"] for k in ("tensor", "segment")
             if r.get(f"note_{k}")]
    parts.append("Bytes are activation memory (the paper's figures also hold a ~4-8 KiB runtime). tensor: vmcu's "
                 "tensor-level plan with in-place depthwise (TinyEngine-style); segment: unfused vMCU pool + "
                 "workspace; fused: the fused inverted-bottleneck schedule where it saves memory. Instructions on "
                 f"{payload['target']} (QEMU), segment vs tensor-level programs; segment programs run the unfused "
                 "schedule. kernels only: the ops' instructions without the program's input and output handling "
                 "(a one-layer graph's output across the pool end is rotated out of it)."
                 + ("\n" + "\n".join(notes) if notes else ""))
    return "\n\n".join(parts)
