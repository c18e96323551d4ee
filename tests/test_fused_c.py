"""Fused inverted bottlenecks in generated C: bit-exact on host and Cortex-M4, arena = plan + scratch."""

from __future__ import annotations

from pathlib import Path

import pytest

from vmcu import driver
from vmcu.frontend.models import VMCU_BOTTLENECK_MODULES, inverted_bottleneck_module
from vmcu.ir.fusion import FUSED_OP
from vmcu.kernels.scratch import SCRATCH_MAX
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


@needs_arm
@pytest.mark.qemu
def test_cache_rows_lend_the_first_depthwise_records(tmp_path: Path) -> None:
    """S3's 36 channel groups: the first 16 records are built once and lent to every output row, the others
    rebuilt per row; both kinds must give TFLM's bytes, in an arena of exactly plan + scratch."""
    graph = inverted_bottleneck_module(*VMCU_BOTTLENECK_MODULES["S3"])
    record = 4 * (16 + 2 * 9)
    assert SCRATCH_MAX // record < 144 // 4
    tgt = get_target("cortex-m4")
    _, program = driver.compile_graph(graph, "segment", "arm", fuse="cache")
    binary = build_compiled(program, tgt, None, tmp_path)
    report = verify_program(graph, program, binary, tgt, None, random_inputs(graph, 2, seed=3))
    assert report.bit_exact, report.mismatches
    assert report.arena_bytes == program.scratch_offset + program.scratch_bytes


@pytest.mark.parametrize("name, arenas", [("S5", {"none": 11_076, "recompute": 7_176, "cache": 8_416}),
                                          ("S7", {"none": 10_220, "recompute": 10_864, "cache": 10_576})])
def test_auto_weighs_the_whole_arena(name: str, arenas: dict[str, int]) -> None:
    """With the DSP kernels, fuse="auto" takes the least whole arena, kernel scratch included: S7's fused
    kernel needs more scratch than fusing saves in the pool, so auto leaves S7 unfused there, while its
    pool alone (the portable kernels, no scratch) is least with "cache"."""
    graph = inverted_bottleneck_module(*VMCU_BOTTLENECK_MODULES[name])

    def arena(fuse: str, kernels: str) -> int:
        _, program = driver.compile_graph(graph, "segment", kernels, fuse=fuse)
        return program.scratch_offset + program.scratch_bytes

    assert {fuse: arena(fuse, "arm") for fuse in arenas} == arenas
    assert arena("auto", "arm") == min(arenas.values())
    fused = driver.plan_memory(graph, "segment", fuse="auto").fused_graph
    assert fused is not None and [op.options["variant"] for op in fused.ops if op.type == FUSED_OP] == [
        "cache" if name == "S7" else "recompute"]
