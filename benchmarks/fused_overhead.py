"""What fusing an inverted bottleneck costs: Cortex-M4 instructions of each fused block (`--fuse cache` and
`--fuse recompute`) against its three layers (four with the residual ADD) run unfused, all with the DSP
kernels, on emulated Cortex-M4.

Blocks: the paper's modules S1-S8 (S2 has S1's shapes and seed, so it is measured once), a few of its
ImageNet modules with k = 5, 7 and depthwise stride 2, and every fusable block of the shared models. Each
graph is compiled three times with the segment strategy (`--fuse none`, `cache`, `recompute`), each
program checked byte for byte against the reference, and each block's instructions read from the per-op
counts (`RunReport.per_op`): the fused op's against the sum of its layers' in the unfused program (the
segment kernels, which hand the DSP tensor kernels whole flat runs). MACs: the unfused layers' and the
recompute variant's (cache computes exactly the unfused MACs). The target is cache <= +10% on the 3x3
blocks. A second table gives each program's arena (pool + workspace + kernel scratch). Counts come from the
project's QEMU plugin and are deterministic.

    .venv/bin/python benchmarks/fused_overhead.py [--modules NAME ...] [--models NAME ...] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from vmcu import driver
from vmcu.frontend.models import VMCU_BOTTLENECK_MODULES, inverted_bottleneck_module
from vmcu.ir.fusion import FUSED_OP, FusedBlock, find_fusable_blocks
from vmcu.ir.graph import Graph
from vmcu.ir.params import op_params
from vmcu.plan.fused import fused_geometry, fused_macs, unfused_macs
from vmcu.reference.executor import random_inputs
from vmcu.report.text import format_table
from vmcu.run.verify import RunReport, build_compiled, verify_program
from vmcu.targets import get_target

MODELS = Path(__file__).resolve().parents[2] / "shared" / "models"
# S2 is S1 (same shapes, same seed). B6/B12: k5/k7 with depthwise stride 2; B9/B15: 3x3 stride 2.
DEFAULT_MODULES = ["S1", "S3", "S4", "S5", "S6", "S7", "S8", "B9", "B15", "B7", "B6", "B10", "B12"]
DEFAULT_MODELS = ["tflm__person_detect", "mlperftiny__vww_96_int8"]
VARIANTS = ("cache", "recompute")
TARGET = 0.10  # the budget: a fused block may cost at most 10% more instructions than its unfused layers


def measure(graph: Graph, strategy: str, fuse: str, work: Path) -> tuple[Any, RunReport]:
    """Build and run one program with the DSP kernels on emulated Cortex-M4, refusing a wrong result."""
    target = get_target("cortex-m4")
    plan, program = driver.compile_graph(graph, strategy, "arm", fuse=fuse)
    binary = build_compiled(program, target, None, work / f"{graph.name}-{strategy}-{fuse}")
    report = verify_program(graph, program, binary, target, None, random_inputs(graph, 1, seed=0))
    if not report.bit_exact:
        raise SystemExit(f"{graph.name} ({strategy}, fuse {fuse}): not bit-exact: {report.mismatches[0]}")
    return plan, report


def fused_counts(graph: Graph, variant: str, work: Path) -> tuple[dict[int, int], int]:
    """Instructions of each fused op, keyed by the index of its expand op in `graph`, and the arena bytes."""
    splan, report = measure(graph, "segment", variant, work)
    ops = splan.fused_graph.ops
    counts = {ops[c.op].options["block"].expand.index: c.instructions for c in report.per_op if c.type == FUSED_OP}
    return counts, report.arena_bytes


def shape(graph: Graph, block: FusedBlock) -> str:
    g = fused_geometry(graph, block)
    strides = "".join(str(op_params(graph, op).stride_h) for op in (block.expand, block.depthwise, block.project))
    add = " +add" if g.residual else ""
    return f"{g.in_h}x{g.in_w} {g.in_c}-{g.mid_c}-{g.out_c} k{g.kernel_h} s{strides}{add}"


def graph_rows(label: str, graph: Graph, work: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """One row per fusable block of `graph`, and the graph's arena bytes per program."""
    blocks = find_fusable_blocks(graph)
    report = measure(graph, "segment", "none", work)[1]
    unfused = {c.op: c.instructions for c in report.per_op}
    fused = {v: fused_counts(graph, v, work) for v in VARIANTS}
    arena = {"graph": label, "unfused": report.arena_bytes, **{v: fused[v][1] for v in VARIANTS}}
    rows = []
    for i, block in enumerate(blocks):
        g = fused_geometry(graph, block)
        ops = [op.index for op in block.ops]
        rows.append({"block": label if len(blocks) == 1 else f"{label} #{i}", "shape": shape(graph, block),
                     "kernel": g.kernel_h, "stride": g.step_h, "macs": unfused_macs(graph, block),
                     "recompute_macs": fused_macs(g, "recompute"), "unfused": sum(unfused[op] for op in ops),
                     **{v: fused[v][0][block.expand.index] for v in VARIANTS}})
    return rows, arena


def overhead(fused: int, unfused: int) -> str:
    return f"{fused / unfused - 1:+.1%}" if unfused else "-"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modules", nargs="*", default=DEFAULT_MODULES, choices=list(VMCU_BOTTLENECK_MODULES))
    parser.add_argument("--models", nargs="*", default=DEFAULT_MODELS)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rows, arenas = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.modules:
            print(f"measuring {name} ...", file=sys.stderr)
            graph = inverted_bottleneck_module(*VMCU_BOTTLENECK_MODULES[name])
            block_rows, arena = graph_rows(name, graph, Path(tmp))
            rows, arenas = rows + block_rows, arenas + [arena]
        for name in args.models:
            print(f"measuring {name} ...", file=sys.stderr)
            block_rows, arena = graph_rows(name, driver.load_model(MODELS / f"{name}.tflite"), Path(tmp))
            rows, arenas = rows + block_rows, arenas + [arena]
    for r in rows:
        r |= {f"{v}_overhead": r[v] / r["unfused"] - 1 for v in VARIANTS}
    small = [r for r in rows if r["kernel"] == 3]
    worst = max((r["cache_overhead"] for r in small), default=0.0)
    if args.json:
        print(json.dumps({"rows": rows, "arena_bytes": arenas, "worst_3x3_cache_overhead": worst, "target": TARGET},
                         indent=2))
        return 0
    print(format_table(
        ["block", "shape (HxW Cin-Cmid-Cout k s)", "MACs", "recompute MACs", "unfused instr", "cache instr",
         "cache", "recompute instr", "recompute"],
        [[r["block"], r["shape"], f"{r['macs']:,}", f"{r['recompute_macs']:,}", f"{r['unfused']:,}",
          f"{r['cache']:,}", overhead(r["cache"], r["unfused"]), f"{r['recompute']:,}",
          overhead(r["recompute"], r["unfused"])] for r in rows],
        right=(2, 3, 4, 5, 6, 7, 8)))
    print()
    print(format_table(["graph", "unfused arena B", "cache arena B", "recompute arena B"],
                       [[a["graph"], *(f"{a[k]:,}" for k in ("unfused", *VARIANTS))] for a in arenas],
                       right=(1, 2, 3)))
    total = {k: sum(r[k] for r in rows) for k in ("unfused", *VARIANTS)}
    verdict = "within" if worst <= TARGET else "OVER"
    print(f"\nall blocks: cache {overhead(total['cache'], total['unfused'])}, recompute "
          f"{overhead(total['recompute'], total['unfused'])} against the unfused layers; worst 3x3 block with "
          f"cache {worst:+.1%} ({verdict} the {TARGET:.0%} budget)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
