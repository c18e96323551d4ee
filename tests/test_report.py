"""Reports: plan payloads and memory timelines agree with the plans they draw."""

from __future__ import annotations

from pathlib import Path

import pytest

from vmcu import driver
from vmcu.cli import main
from vmcu.report.plot import segment_timeline, tensor_timeline
from vmcu.run.toolchain import arm_toolchain_missing

MODELS = Path(__file__).resolve().parents[2] / "shared" / "models"


@pytest.mark.parametrize("model", ["mlperftiny__vww_96_int8", "mlperftiny__kws_ref_model"])
def test_timelines_peak_where_the_plans_do(model: str) -> None:
    graph = driver.load_model(MODELS / f"{model}.tflite")
    for strategy in ("tflm", "tensor"):
        plan = driver.plan_memory(graph, strategy)
        assert max(tensor_timeline(plan)) == plan.peak_bytes
    splan = driver.plan_memory(graph, "segment")
    need = segment_timeline(graph, splan)
    assert max(need) <= splan.pool_bytes + splan.workspace_bytes
    assert max(need) < driver.plan_memory(graph, "tensor").peak_bytes


def test_plan_plot_written(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "timeline.png"
    assert main(["plan", str(MODELS / "mlperftiny__vww_96_int8.tflite"), "--strategy", "segment",
                 "--plot", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 10_000
    assert "strategy segment" in capsys.readouterr().out


def test_plot_refuses_staged_strategy(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code = main(["plan", str(MODELS / "tflm__hello_world_int8.tflite"), "--strategy", "stream",
                 "--plot", str(tmp_path / "x.png")])
    assert code == 1 and "--plot draws" in capsys.readouterr().err


@pytest.mark.parametrize("model, head", [("tinyengine__vww", 161_472), ("tinyengine__mcunetv2_large", 2_451_840)])
def test_tflm_strategy_plans_the_file_as_tflm_reads_it(capsys: pytest.CaptureFixture[str], model: str,
                                                        head: int) -> None:
    """PAD folding lightens vmcu's own plans, but "TFLM head" stays TFLM's figure (MODELS.md)."""
    import json

    path = MODELS / f"{model}.tflite"
    assert main(["plan", str(path), "--strategy", "tflm", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["peak_bytes"] == head == driver.tflm_head_bytes(path)
    assert driver.plan_memory(driver.load_model(path)).peak_bytes < head


def test_bench_paper_vmcu_rows(capsys: pytest.CaptureFixture[str]) -> None:
    """The benchmark's JSON: per case the exact bytes of each plan next to the paper's figure."""
    import json

    assert main(["bench", "paper-vmcu", "--no-run", "--case", "1", "--case", "S1", "--json"]) == 0
    rows = {r["case"]: r for r in json.loads(capsys.readouterr().out)["rows"]}
    assert set(rows) == {"1", "S1"}
    for row in rows.values():
        for key in ("tensor_bytes", "segment_bytes", "paper_vmcu_bytes", "segment_unfused_bytes", "tflm_bytes"):
            assert isinstance(row[key], int)
        assert row["segment_bytes"] <= row["paper_vmcu_bytes"] and row["segment_bytes"] < row["tensor_bytes"]
    assert rows["1"]["tensor_bytes"] == 80 * 80 * (16 + 16)
    assert rows["S1"]["segment_bytes"] < rows["S1"]["segment_unfused_bytes"]


@pytest.mark.skipif(arm_toolchain_missing() is not None, reason=str(arm_toolchain_missing()))
@pytest.mark.qemu
def test_bench_paper_vmcu_counts_kernels_apart(capsys: pytest.CaptureFixture[str]) -> None:
    """Case 9's one-layer graph leaves its output across the segment pool's end: the program rotates it out,
    which the kernel-only count leaves aside; both programs run bit-exact."""
    import json

    assert main(["bench", "paper-vmcu", "--case", "9", "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)["rows"]
    assert row["bit_exact_tensor"] and row["bit_exact_segment"]
    assert 0 < row["kernel_instructions_tensor"] <= row["instructions_tensor"]
    assert 0 < row["kernel_instructions_segment"] < row["instructions_segment"]


def test_staged_timeline_peaks_at_the_plans_figure() -> None:
    """Per-op memory of patch and stream plans peaks exactly at what the planners report."""
    from vmcu.plan.patch import plan_patches
    from vmcu.plan.stream import plan_stream
    from vmcu.report.plot import staged_timeline

    graph = driver.load_model(MODELS / "tinyengine__vww.tflite")
    for plan in (plan_patches(graph, split=7, grid=(2, 3)), plan_stream(graph, split=18, column_chunks=8)):
        need = staged_timeline(graph, plan)
        assert set(need) == set(range(len(graph.ops)))
        assert max(need.values()) == plan.peak_bytes
