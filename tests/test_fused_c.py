"""Fused inverted bottlenecks in generated C: bit-exact on host and Cortex-M4, arena = plan + scratch."""

from __future__ import annotations

from pathlib import Path

import pytest

from vmcu import driver
from vmcu.ir.fusion import FUSED_OP
from vmcu.reference.executor import random_inputs
from vmcu.run.toolchain import arm_toolchain_missing
from vmcu.run.verify import build_compiled, verify_program
from vmcu.targets import get_target

MODELS = Path(__file__).resolve().parents[2] / "shared" / "models"
needs_arm = pytest.mark.skipif(arm_toolchain_missing() is not None, reason=str(arm_toolchain_missing()))


@pytest.mark.parametrize("fuse, plan_bytes", [("auto", 19_584), ("cache", 21_760), ("none", 37_120)])
@pytest.mark.parametrize("target", ["host", pytest.param("cortex-m4", marks=[needs_arm, pytest.mark.qemu])])
def test_person_detect_fused_segment(target: str, fuse: str, plan_bytes: int, tmp_path: Path) -> None:
    tgt = get_target(target)
    graph = driver.load_model(MODELS / "tflm__person_detect.tflite")
    splan, program = driver.compile_graph(graph, "segment", driver.default_kernels(tgt), fuse=fuse)
    assert program.plan_bytes == splan.pool_bytes + splan.workspace_bytes == plan_bytes
    fused_steps = [op for op, op_type, _ in program.op_info if op_type == FUSED_OP]
    assert bool(fused_steps) == (fuse != "none")
    binary = build_compiled(program, tgt, None, tmp_path, sanitize=tgt.is_host)
    report = verify_program(graph, program, binary, tgt, None, random_inputs(graph, 2, seed=5))
    assert report.bit_exact, report.mismatches
    assert report.arena_bytes == program.scratch_offset + program.scratch_bytes
    if report.per_op:
        by_op = {c.op: c for c in report.per_op}
        assert all(by_op[op].macs > 0 and by_op[op].instructions > 0 for op in fused_steps)
