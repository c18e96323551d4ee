"""Generated C for patch-based and stream plans: bit-exact on the host (sanitizers) and the emulated Cortex-M4,
the arena exactly the planner's figure plus scratch, and the MCUNetV2 benchmark's JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from vmcu import driver
from vmcu.cli import main
from vmcu.codegen.emit import emit_c
from vmcu.codegen.patch import _gathers, _stage_layout
from vmcu.frontend.builder import GraphBuilder
from vmcu.ir.graph import Graph
from vmcu.ir.transform import fold_pads
from vmcu.plan.patch import PatchPlan, plan_patches
from vmcu.plan.plan import MemoryPlan, Placement
from vmcu.plan.stream import StreamPlan, plan_stream
from vmcu.reference.executor import random_inputs
from vmcu.run.toolchain import arm_toolchain_missing
from vmcu.run.verify import RunReport, build_compiled, verify_program
from vmcu.targets import get_target

MODELS = Path(__file__).resolve().parents[2] / "shared" / "models"
VWW = MODELS / "tinyengine__vww.tflite"
needs_arm = pytest.mark.skipif(arm_toolchain_missing() is not None, reason=str(arm_toolchain_missing()))
on_m4 = pytest.param("cortex-m4", marks=[needs_arm, pytest.mark.qemu])


def _small() -> Graph:
    """A conv reading the image, a residual block, a PAD only pools read (not folded), two pools, a head:
    every way a stage op reaches its buffers (image windows, narrower windows, ring wrap, row patching)."""
    b = GraphBuilder(5)
    x = b.input((1, 20, 18, 3), 1 / 64, 3)
    x = b.conv2d(x, 8, 3, stride=2, padding="SAME", activation="RELU")
    x = b.inverted_bottleneck(x, 16, 8, 3)
    x = b.max_pool2d(b.pad(x, [(0, 0), (1, 1), (1, 0), (0, 0)]), 3, stride=1, padding="VALID")
    x = b.avg_pool2d(x, 2, stride=2, padding="SAME")
    x = b.conv2d(x, 8, 1)
    b.fully_connected(b.mean(x), 4)
    return fold_pads(b.build("small"))


def _run(graph: Graph, plan: PatchPlan | StreamPlan, target_name: str, tmp_path: Path) -> tuple[Any, RunReport]:
    target = get_target(target_name)
    program = emit_c(graph, plan, variant=driver.default_kernels(target))
    binary = build_compiled(program, target, None, tmp_path, sanitize=target.is_host)
    return program, verify_program(graph, program, binary, target, None, random_inputs(graph, 2, seed=1))


def _assert_arena(program: Any, plan: PatchPlan | StreamPlan) -> None:
    """The planned bytes are the planner's figure with the image in the arena; scratch follows them."""
    assert program.plan_bytes == plan.peak_bytes_with_input
    assert program.arena_bytes == program.plan_bytes + program.scratch_bytes


@pytest.mark.parametrize("target", ["host", on_m4])
@pytest.mark.parametrize("strategy", ["patch", "stream"])
def test_small_graph_is_bit_exact(strategy: str, target: str, tmp_path: Path) -> None:
    graph = _small()
    assert [op.type for op in graph.ops][:8] == ["CONV_2D", "CONV_2D", "DEPTHWISE_CONV_2D", "CONV_2D", "ADD", "PAD",
                                                 "MAX_POOL_2D", "AVERAGE_POOL_2D"]
    if strategy == "patch":
        plan: PatchPlan | StreamPlan = plan_patches(graph, split=7, grid=(2, 3))
    else:
        plan = plan_stream(graph, split=9, column_chunks=2)
        rings = {r.tensor: (0, r.pixels, r.width, r.pixel_bytes) for r in plan.rings}
        assert any(_gathers(rings[i.tensor], i.region) for s in plan.steps for i in s.inputs if i.tensor in rings)
    program, report = _run(graph, plan, target, tmp_path)
    assert report.bit_exact, report.mismatches
    _assert_arena(program, plan)
    assert program.plan_bytes == {"patch": 3_376, "stream": 2_328}[strategy]
    if report.instructions is not None:
        assert {c.op for c in report.per_op} == set(program.order)
        assert sum(c.instructions for c in report.per_op) <= report.instructions


def test_stage_layout_puts_the_stage_around_the_later_plan() -> None:
    def rest(offset: int) -> MemoryPlan:
        return MemoryPlan("tensor", "g", (0,), ("CONV_2D",), (Placement(7, offset, 100, 0, 0),), 400, 0, 4)

    # The later plan has the stage output at 0: image and tiles above it, nothing moves.
    assert _stage_layout({"image": 300, "tiles": 50}, 100, rest(0), 7) == (
        {"output": 0, "image": 100, "tiles": 400}, 0, 450)
    # In the middle: the image fits below it exactly, the tiles go above.
    assert _stage_layout({"image": 200, "tiles": 50}, 100, rest(200), 7) == (
        {"output": 200, "image": 0, "tiles": 300}, 0, 400)
    # Nothing fits below: the later plan moves up under the smaller item, the larger stays above.
    assert _stage_layout({"image": 300, "tiles": 80}, 100, rest(50), 7) == (
        {"output": 80, "tiles": 0, "image": 180}, 30, 480)
    assert _stage_layout({"image": 12}, 8, None, 7) == ({"output": 0, "image": 8}, 0, 20)


@pytest.fixture(scope="module")
def vww() -> tuple[Graph, dict[str, PatchPlan | StreamPlan]]:
    """The VWW model and its best plans: patch within TinyEngine's +6% MACs, stream."""
    if not VWW.exists():
        pytest.skip(f"{VWW} is not available")
    graph = driver.load_model(VWW)
    return graph, {"patch": driver.plan_memory(graph, "patch", max_mac_overhead=0.06),
                   "stream": driver.plan_memory(graph, "stream")}


@pytest.mark.parametrize("target", ["host", on_m4])
@pytest.mark.parametrize("strategy", ["patch", "stream"])
def test_vww_is_bit_exact(vww: tuple[Graph, dict[str, Any]], strategy: str, target: str, tmp_path: Path) -> None:
    graph, plans = vww
    program, report = _run(graph, plans[strategy], target, tmp_path)
    assert report.bit_exact, report.mismatches
    _assert_arena(program, plans[strategy])
    if report.instructions is not None:
        assert report.ram_bytes >= report.arena_bytes
        assert {c.op for c in report.per_op} == set(program.order)


def test_vww_figures(vww: tuple[Graph, dict[str, Any]]) -> None:
    _, plans = vww
    patch, stream = plans["patch"], plans["stream"]
    assert (patch.split, patch.grid, patch.peak_bytes, patch.peak_bytes_with_input) == (7, (2, 3), 32_000, 101_680)
    assert patch.mac_overhead == pytest.approx(0.021015, abs=1e-6)
    assert (stream.split, stream.column_chunks, stream.peak_bytes, stream.peak_bytes_with_input) == (
        18, 8, 20_748, 97_548)
    assert max(patch.peak_bytes, stream.peak_bytes) < 47_584  # TinyEngine's 4x4 patches at +6.0% MACs


def test_cli_run_patch(capsys: pytest.CaptureFixture[str]) -> None:
    if not VWW.exists():
        pytest.skip(f"{VWW} is not available")
    assert main(["run", str(VWW), "--strategy", "patch", "--max-mac-overhead", "0.06", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["bit_exact"] and payload["strategy"] == "patch"
    assert payload["stage"]["grid"] == [2, 3] and payload["plan_bytes"] == payload["stage"]["peak_bytes_with_input"]


BENCH_KEYS = ("model", "layerwise_bytes", "patch_bytes", "patch_mac_overhead", "stream_bytes", "stream_mac_overhead",
              "patch_bytes_with_input", "stream_bytes_with_input", "paper_bytes", "paper_mac_overhead",
              "instructions_patch", "instructions_stream", "instructions_layerwise")


def test_bench_json_keys_on_a_reduced_run(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "paper-mcunetv2", "--model", "mobilenetv2-0.35-32", "--no-run", "--json"]) == 0
    captured = capsys.readouterr()
    (row,) = json.loads(captured.out)["rows"]
    assert set(BENCH_KEYS) <= set(row) and row["model"] == "mobilenetv2-0.35-32"
    assert row["patch_mac_overhead"] <= 0.10 and row["stream_mac_overhead"] <= 0.0
    assert row["patch_bytes"] < row["layerwise_bytes"] and row["paper_bytes"] is None
    assert "searching stream plans" in captured.err


@needs_arm
@pytest.mark.qemu
@pytest.mark.slow
def test_bench_runs_every_program(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "paper-mcunetv2", "--model", "mobilenetv2-0.35-32"]) == 0
    out = capsys.readouterr().out
    assert "mobilenetv2-0.35-32" in out and "NOT bit-exact" not in out
