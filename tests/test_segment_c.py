"""Segment plans (vMCU) as C: every shared model runs bit-exact with the reference through the circular pool,
on the host (portable kernels, ASan + UBSan) and on emulated Cortex-M4 (DSP kernels), in an arena of exactly
the plan's pool and workspace plus kernel scratch; and a plan one segment short of a gap, which the checker
rejects, does give wrong results in C, so the checker's verdict is the kernels' reality."""

from __future__ import annotations

from pathlib import Path

import pytest

from vmcu import driver
from vmcu.codegen.emit import emit_c
from vmcu.codegen.program import CProgram
from vmcu.errors import PlanError
from vmcu.ir.graph import Graph
from vmcu.plan.segment import SegmentPlan, replace_bases
from vmcu.plan.segment_check import check_segment_plan
from vmcu.reference.executor import random_inputs
from vmcu.run.toolchain import arm_toolchain_missing
from vmcu.run.verify import RunReport, build_compiled, verify_program
from vmcu.targets import get_target

MODELS = Path(__file__).resolve().parents[2] / "shared" / "models"
SUPPORTED = [
    "mlperftiny__ad01_int8", "mlperftiny__ic_pretrainedResnet_large_int8",
    "mlperftiny__ic_resnet8_pretrainedResnet_quant", "mlperftiny__kws_ref_model", "mlperftiny__str_ww_ref_model",
    "mlperftiny__vww_96_int8", "tflm__hello_world_int8", "tflm__micro_speech_quantized", "tflm__person_detect",
    "tinyengine__mcunetv2_large", "tinyengine__vww",
]
needs_arm = pytest.mark.skipif(arm_toolchain_missing() is not None, reason=str(arm_toolchain_missing()))


def run(graph: Graph, program: CProgram, target_name: str, work: Path, inputs: int = 1) -> RunReport:
    target = get_target(target_name)
    binary = build_compiled(program, target, None, work, sanitize=target.is_host)
    return verify_program(graph, program, binary, target, None, random_inputs(graph, inputs, seed=5))


def compile_segment(model: str, kernels: str) -> tuple[Graph, SegmentPlan, CProgram]:
    graph = driver.load_model(MODELS / f"{model}.tflite")
    splan, program = driver.compile_graph(graph, "segment", kernels)
    assert isinstance(splan, SegmentPlan)
    return graph, splan, program


def assert_arena_is_the_plan(splan: SegmentPlan, report: RunReport) -> None:
    """Arena = pool + workspace, then the largest kernel scratch at the next 4-byte boundary."""
    assert report.plan_bytes == splan.pool_bytes + splan.workspace_bytes
    padded = -(-report.plan_bytes // 4) * 4 if report.scratch_bytes else report.plan_bytes
    assert report.arena_bytes == padded + report.scratch_bytes


@pytest.mark.parametrize("model", SUPPORTED)
def test_host_bit_exact_with_sanitizers(model: str, tmp_path: Path) -> None:
    graph, splan, program = compile_segment(model, "ref")
    report = run(graph, program, "host", tmp_path, inputs=2)
    assert report.bit_exact, report.mismatches
    assert_arena_is_the_plan(splan, report)


@needs_arm
@pytest.mark.qemu
@pytest.mark.parametrize("model", SUPPORTED)
def test_cortex_m4_bit_exact_dsp_kernels(model: str, tmp_path: Path) -> None:
    graph, splan, program = compile_segment(model, "arm")
    report = run(graph, program, "cortex-m4", tmp_path)
    assert report.bit_exact, report.mismatches
    assert_arena_is_the_plan(splan, report)
    assert report.ram_bytes >= report.arena_bytes
    assert {c.op for c in report.per_op} == set(splan.plan.order)
    assert report.instructions and sum(c.instructions for c in report.per_op) <= report.instructions


def test_cli_run_segment(capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from vmcu.cli import main

    assert main(["run", str(MODELS / "tflm__hello_world_int8.tflite"), "--strategy", "segment", "--target", "host",
                 "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    splan = driver.plan_memory(driver.load_model(MODELS / "tflm__hello_world_int8.tflite"), "segment")
    assert payload["bit_exact"] and payload["strategy"] == "segment"
    assert payload["plan_bytes"] == splan.pool_bytes + splan.workspace_bytes


def test_output_across_the_pool_end_is_rotated_out() -> None:
    """MLPerf Tiny AD's plan puts the graph output across the pool end: the program rotates the pool after
    the last op and hands the output out flat (its bit-exactness is part of the model tests above)."""
    graph, splan, program = compile_segment("mlperftiny__ad01_int8", "ref")
    out = graph.outputs[0]
    assert splan.plan.offsets()[out] + graph.tensors[out].nbytes > splan.pool_bytes
    assert "vmcu_seg_rotate(ARENA, POOL_BYTES" in program.files[f"{program.name}.c"]


def test_gap_one_segment_short_is_rejected_and_wrong_in_c(tmp_path: Path) -> None:
    """KWS's first depthwise layer overlaps its output with its input at the least gap, 6 segments. One
    segment less: the checker names the op, and the portable kernels (which store pixel by pixel, exactly
    the checker's model) read bytes their own output overwrote."""
    graph = driver.load_model(MODELS / "mlperftiny__kws_ref_model.tflite")
    splan = driver.plan_memory(graph, "segment")
    step = next(s for s in splan.steps if s.op_type == "DEPTHWISE_CONV_2D" and s.chained_input >= 0)
    assert step.gap_bytes == step.min_gap_bytes > step.segment_bytes
    bases = splan.plan.offsets()
    bases[step.output] = (bases[step.output] + step.segment_bytes) % splan.pool_bytes
    short = replace_bases(graph, splan, bases)
    assert short.steps[step.op].gap_bytes == step.gap_bytes - step.segment_bytes
    with pytest.raises(PlanError, match=f"op {step.op} DEPTHWISE_CONV_2D .* its own output"):
        check_segment_plan(graph, short)
    report = run(graph, emit_c(graph, short, variant="ref"), "host", tmp_path)
    assert not report.bit_exact
