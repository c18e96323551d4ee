"""Activation memory of every shared model: TFLM's planner vs vmcu's tensor and segment plans.

Planning only (no build): exact byte counts, each plan checked by its checker.

    .venv/bin/python benchmarks/memory_table.py [--json] [--markdown]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from vmcu import driver
from vmcu.errors import VmcuError
from vmcu.ir.analysis import graph_macs
from vmcu.report.text import format_table

MODELS = Path(__file__).resolve().parents[2] / "shared" / "models"


def measure(path: Path) -> dict[str, object]:
    graph = driver.load_model(path)
    tflm = driver.plan_memory(driver.load_model(path, fold=False), "tflm")
    tensor = driver.plan_memory(graph, "tensor")
    segment = driver.plan_memory(graph, "segment")
    seg_bytes = segment.pool_bytes + segment.workspace_bytes
    return {"model": path.stem, "macs": graph_macs(graph), "layer_bound_bytes": tensor.lower_bound_bytes,
            "tflm_head_bytes": tflm.peak_bytes, "tensor_bytes": tensor.peak_bytes, "segment_bytes": seg_bytes,
            "segment_vs_tflm": seg_bytes / tflm.peak_bytes - 1.0}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--markdown", action="store_true", help="a Markdown table (for the README)")
    args = parser.parse_args()
    rows, refused = [], []
    for path in sorted(MODELS.glob("*.tflite")):
        try:
            rows.append(measure(path))
        except VmcuError as e:
            refused.append({"model": path.stem, "error": str(e)})
    if args.json:
        print(json.dumps({"rows": rows, "refused": refused}, indent=2))
        return 0
    headers = ["model", "layer bound B", "TFLM head B", "vmcu tensor B", "vmcu segment B", "segment vs TFLM"]
    table = [[r["model"], f"{r['layer_bound_bytes']:,}", f"{r['tflm_head_bytes']:,}", f"{r['tensor_bytes']:,}",
              f"{r['segment_bytes']:,}", f"{r['segment_vs_tflm']:+.1%}"] for r in rows]
    if args.markdown:
        print("| " + " | ".join(headers) + " |")
        print("|---|" + "---:|" * (len(headers) - 1))
        for row in table:
            print("| " + " | ".join(row) + " |")
    else:
        print(format_table(headers, table, right=(1, 2, 3, 4, 5)))
    for r in refused:
        print(f"refused: {r['error']}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
