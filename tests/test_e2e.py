"""Generated C, built and run: bit-exact with the reference on host (sanitizers on) and emulated Cortex-M."""

from __future__ import annotations

from pathlib import Path

import pytest

from vmcu import driver
from vmcu.cli import main
from vmcu.errors import VerifyError
from vmcu.reference.executor import random_inputs
from vmcu.run.toolchain import arm_toolchain_missing
from vmcu.run.verify import build_compiled, verify_program
from vmcu.targets import get_board, get_target

MODELS = Path(__file__).resolve().parents[2] / "shared" / "models"
SUPPORTED = [
    "mlperftiny__ad01_int8", "mlperftiny__ic_pretrainedResnet_large_int8",
    "mlperftiny__ic_resnet8_pretrainedResnet_quant", "mlperftiny__kws_ref_model", "mlperftiny__str_ww_ref_model",
    "mlperftiny__vww_96_int8", "tflm__hello_world_int8", "tflm__micro_speech_quantized", "tflm__person_detect",
    "tinyengine__mcunetv2_large", "tinyengine__vww",
]
needs_arm = pytest.mark.skipif(arm_toolchain_missing() is not None, reason=str(arm_toolchain_missing()))


def compile_and_verify(model: str, target_name: str, tmp_path: Path, kernels: str | None = None,
                       inputs: int = 2) -> tuple[object, object, object]:
    target = get_target(target_name)
    graph = driver.load_model(MODELS / f"{model}.tflite")
    plan, program = driver.compile_graph(graph, "tensor", kernels or driver.default_kernels(target))
    binary = build_compiled(program, target, None, tmp_path, sanitize=target.is_host)
    report = verify_program(graph, program, binary, target, None, random_inputs(graph, inputs, seed=11))
    return plan, program, report


def assert_arena_is_plan_plus_scratch(plan: object, report: object) -> None:
    """The arena is the plan's bytes, then the largest kernel scratch at the next 4-byte boundary."""
    assert report.plan_bytes == plan.peak_bytes
    if report.scratch_bytes:
        assert report.arena_bytes == -(-plan.peak_bytes // 4) * 4 + report.scratch_bytes
    else:
        assert report.arena_bytes == plan.peak_bytes


@pytest.mark.parametrize("model", SUPPORTED)
def test_host_bit_exact_with_sanitizers(model: str, tmp_path: Path) -> None:
    plan, _, report = compile_and_verify(model, "host", tmp_path)
    assert report.bit_exact, report.mismatches
    assert_arena_is_plan_plus_scratch(plan, report)


@needs_arm
@pytest.mark.qemu
@pytest.mark.parametrize("target", ["cortex-m4", "cortex-m7"])
@pytest.mark.parametrize("model", SUPPORTED)
def test_cortex_m_bit_exact_dsp_kernels(model: str, target: str, tmp_path: Path) -> None:
    plan, _, report = compile_and_verify(model, target, tmp_path)
    assert report.bit_exact, report.mismatches
    assert report.kernels == "arm"
    assert_arena_is_plan_plus_scratch(plan, report)
    assert report.ram_bytes >= report.arena_bytes
    assert report.instructions and sum(c.instructions for c in report.per_op) <= report.instructions
    assert {c.op for c in report.per_op} == set(plan.order)


@needs_arm
@pytest.mark.qemu
@pytest.mark.parametrize("model", ["mlperftiny__kws_ref_model", "tinyengine__vww"])
def test_cortex_m4_bit_exact_portable_kernels(model: str, tmp_path: Path) -> None:
    _, _, report = compile_and_verify(model, "cortex-m4", tmp_path, kernels="ref", inputs=1)
    assert report.bit_exact


@pytest.mark.parametrize("target", ["host", pytest.param("cortex-m4", marks=[needs_arm, pytest.mark.qemu])])
def test_injected_arena_overflow_is_caught(target: str, tmp_path: Path) -> None:
    """One byte written just past the arena hits a guard word and the run fails loudly."""
    tgt = get_target(target)
    graph = driver.load_model(MODELS / "tflm__hello_world_int8.tflite")
    _, program = driver.compile_graph(graph, "tensor", driver.default_kernels(tgt))
    source = program.files[f"{program.name}.c"]
    marker = "    vmcu_mark(-1);\n"
    assert marker in source
    files = dict(program.files)
    files[f"{program.name}.c"] = source.replace(marker, f"    ARENA[{program.arena_bytes}] = 1;\n" + marker)
    broken = type(program)(**{**program.__dict__, "files": files})
    binary = build_compiled(broken, tgt, None, tmp_path, sanitize=False)
    with pytest.raises(VerifyError, match="guard word"):
        verify_program(graph, broken, binary, tgt, None, random_inputs(graph, 1, seed=0))


@needs_arm
@pytest.mark.qemu
def test_model_too_big_for_board_is_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code = main(["compile", str(MODELS / "tinyengine__mcunetv2_large.tflite"), "--target", "cortex-m4",
                 "--board", "stm32f411", "-o", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert code == 1 and len(err.splitlines()) == 1, err
    assert err.startswith("vmcu: error: board stm32f411: ")
    assert "RAM overflows by" in err and "RAM 131,072 B" in err
    assert "FLASH overflows by" in err and "FLASH 524,288 B" in err
    assert get_board("stm32f411").ram_bytes == 131_072


def test_compile_writes_a_project_that_make_builds(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import subprocess

    out = tmp_path / "proj"
    assert main(["compile", str(MODELS / "mlperftiny__kws_ref_model.tflite"), "--target", "host",
                 "-o", str(out)]) == 0
    assert "= plan 8,492 B + scratch" in capsys.readouterr().out  # its 64 -> 64 pointwise convs run in place
    project = out / "src"
    assert (project / "mlperftiny__kws_ref_model.h").exists()
    done = subprocess.run(["make", "-C", str(project)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert (project / "program").exists()


def test_run_json_keys(capsys: pytest.CaptureFixture[str]) -> None:
    import json

    assert main(["run", str(MODELS / "tflm__hello_world_int8.tflite"), "--target", "host", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    for key in ("bit_exact", "arena_bytes", "flash_bytes", "instructions", "cycles_estimate", "per_op"):
        assert key in payload
    assert payload["bit_exact"] is True
    assert payload["arena_bytes"] == payload["plan_bytes"] + payload["scratch_bytes"] and payload["plan_bytes"] == 32
