"""`vmcu bench paper-mcunetv2`: patch-based inference (MCUNetV2) and stream buffers (StreamNet) against the
published figures, each schedule compiled to C, run on the emulated Cortex-M4 and checked byte for byte.

Per model: the layer-by-layer (tensor-level) peak, the best patch plan within the paper's MAC budget and the
best stream plan, their bytes as the papers count them (input image excluded) and with the image (what the
arena holds: vmcu keeps the image in the arena, as TFLM does), their extra MACs, and the instructions of
all three programs where the model fits QEMU's 4 MiB of flash and RAM. Overheads are fractions.
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vmcu import driver
from vmcu.errors import BuildError, VmcuError
from vmcu.ir.analysis import graph_macs
from vmcu.ir.graph import Graph
from vmcu.reference.executor import random_inputs
from vmcu.report.text import fmt_bytes, format_table
from vmcu.run.toolchain import arm_toolchain_missing, cache_dir
from vmcu.run.verify import build_compiled, verify_program
from vmcu.targets import get_target

TARGET = "cortex-m4"


@dataclass(frozen=True)
class PaperModel:
    """A model of the comparison: where it comes from, the MAC budget of its patch plan and the figures
    published for it (MCUNetV2's own for MobileNetV2, TinyEngine's scheduler for the MCUNet models)."""

    name: str
    max_mac_overhead: float
    paper_bytes: int | None
    paper_mac_overhead: float | None


PAPER_MODELS = (
    PaperModel("mobilenetv2-1.0-224", 0.10, 175_616, 0.10),
    PaperModel("tinyengine__vww", 0.06, 47_584, 0.06),
    PaperModel("tinyengine__mcunetv2_large", 0.041, 444_168, 0.041),
)
DEFAULT_BUDGET = 0.10


def models_dir() -> Path:
    """The shared .tflite models: ../shared/models from the working directory, else next to the repository."""
    here = Path.cwd().parent / "shared" / "models"
    return here if here.is_dir() else Path(__file__).resolve().parents[4] / "shared" / "models"


def paper_model(name: str) -> PaperModel:
    """A model of the table by name; any other built-in or shared model gets the default budget."""
    return next((m for m in PAPER_MODELS if m.name == name), PaperModel(name, DEFAULT_BUDGET, None, None))


def load(name: str, directory: Path) -> Graph:
    """A shared model by stem, or a built-in one ("mobilenetv2-<width>-<resolution>")."""
    path = directory / f"{name}.tflite"
    return driver.load_model(path if path.exists() else driver.builtin_model(name, cache_dir() / "models"))


def _run(graph: Graph, plan: Any, work: Path) -> dict[str, Any]:
    """Generate, build and run one plan on the emulated Cortex-M4: bit-exactness, instructions, memory."""
    from vmcu.codegen.emit import emit_c

    target = get_target(TARGET)
    program = emit_c(graph, plan, variant=driver.default_kernels(target))
    try:
        binary = build_compiled(program, target, None, work)
    except BuildError as e:
        return {"arena_bytes": program.arena_bytes, "plan_bytes": program.plan_bytes, "bit_exact": None,
                "instructions": None, "note": str(e).splitlines()[0]}
    report = verify_program(graph, program, binary, target, None, random_inputs(graph, 1, seed=0))
    return {"arena_bytes": program.arena_bytes, "plan_bytes": program.plan_bytes, "bit_exact": report.bit_exact,
            "instructions": report.instructions, "note": ""}


def measure(model: PaperModel, directory: Path, *, instructions: bool = True,
            progress: Callable[[str], None] = lambda _: None) -> dict[str, Any]:
    """One row of the table: plans (each checked), and with `instructions` their programs run on QEMU."""
    graph = load(model.name, directory)
    progress(f"{model.name}: searching patch plans within {model.max_mac_overhead:.1%} extra MACs")
    patch, _ = driver.search_staged(graph, "patch", max_mac_overhead=model.max_mac_overhead)
    progress(f"{model.name}: searching stream plans")
    stream, _ = driver.search_staged(graph, "stream")
    layerwise = driver.plan_memory(graph, "tensor")
    row: dict[str, Any] = {
        "model": model.name, "macs": graph_macs(graph), "layerwise_bytes": patch.layerwise_peak_bytes,
        "patch_bytes": patch.peak_bytes, "patch_mac_overhead": patch.mac_overhead,
        "stream_bytes": stream.peak_bytes, "stream_mac_overhead": stream.mac_overhead,
        "patch_bytes_with_input": patch.peak_bytes_with_input,
        "stream_bytes_with_input": stream.peak_bytes_with_input,
        "paper_bytes": model.paper_bytes, "paper_mac_overhead": model.paper_mac_overhead,
        "max_mac_overhead": model.max_mac_overhead, "input_bytes": patch.input_bytes,
        "patch_split": patch.split, "patch_grid": list(patch.grid), "stream_split": stream.split,
        "stream_column_chunks": stream.column_chunks,
    }
    for kind, plan in (("layerwise", layerwise), ("patch", patch), ("stream", stream)):
        if not instructions:
            row[f"instructions_{kind}"] = None
            continue
        progress(f"{model.name}: building and running the {kind} program on {TARGET} (QEMU)")
        with tempfile.TemporaryDirectory(prefix="vmcu-bench-") as tmp:
            result = _run(graph, plan, Path(tmp))
        row |= {f"instructions_{kind}": result["instructions"], f"arena_bytes_{kind}": result["arena_bytes"],
                f"plan_bytes_{kind}": result["plan_bytes"], f"bit_exact_{kind}": result["bit_exact"]}
        if result["note"]:
            row[f"note_{kind}"] = result["note"]
    return row


def run(names: Sequence[str] = (), *, directory: Path | None = None, instructions: bool = True,
        progress: Callable[[str], None] = lambda _: None) -> dict[str, Any]:
    """Every row (by default the three models of the comparison); a model that fails gets an error entry."""
    if instructions and arm_toolchain_missing() is not None:
        raise VmcuError(f"instruction counts need the Arm toolchain: {arm_toolchain_missing()}")
    directory = directory or models_dir()
    rows, errors = [], []
    for name in names or [m.name for m in PAPER_MODELS]:
        try:
            rows.append(measure(paper_model(name), directory, instructions=instructions, progress=progress))
        except VmcuError as e:
            errors.append({"model": name, "error": str(e)})
    return {"target": TARGET, "rows": rows, "errors": errors}


def _opt(v: Any, fmt: Callable[[Any], str]) -> str:
    return "-" if v is None else fmt(v)


def text(payload: dict[str, Any]) -> str:
    """The table the command prints without --json."""
    headers = ["model", "layer-wise B", "paper B", "patch B", "+image B", "patch MACs", "paper MACs", "stream B",
               "+image B", "stream MACs", "instr layer-wise", "instr patch", "instr stream"]
    rows = [[r["model"], fmt_bytes(r["layerwise_bytes"]), _opt(r["paper_bytes"], fmt_bytes),
             fmt_bytes(r["patch_bytes"]), fmt_bytes(r["patch_bytes_with_input"]), f"{r['patch_mac_overhead']:+.1%}",
             _opt(r["paper_mac_overhead"], lambda v: f"{v:+.1%}"), fmt_bytes(r["stream_bytes"]),
             fmt_bytes(r["stream_bytes_with_input"]), f"{r['stream_mac_overhead']:+.1%}",
             *(_opt(r[f"instructions_{k}"], fmt_bytes) for k in ("layerwise", "patch", "stream"))]
            for r in payload["rows"]]
    parts = [format_table(headers, rows, right=tuple(range(1, len(headers)))),
             "Bytes are activation memory as the papers count it (input image excluded); +image B is the arena's "
             "planned bytes with the image in it. Instructions: whole inference on QEMU "
             f"{payload['target']}, every output byte checked against the reference executor."]
    notes = [f"{r['model']} {k}: {r[f'note_{k}']}" for r in payload["rows"] for k in ("layerwise", "patch", "stream")
             if r.get(f"note_{k}")]
    notes += [f"{e['model']}: {e['error']}" for e in payload["errors"]]
    mismatches = [f"{r['model']} {k}: NOT bit-exact" for r in payload["rows"]
                  for k in ("layerwise", "patch", "stream") if r.get(f"bit_exact_{k}") is False]
    return "\n\n".join(parts + (["\n".join(notes + mismatches)] if notes or mismatches else []))


def stderr_progress(message: str) -> None:
    """Progress lines for the slow steps (plan searches, builds, emulation) on stderr."""
    print(f"[bench] {message}", file=sys.stderr, flush=True)
