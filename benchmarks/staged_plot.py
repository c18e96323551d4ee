"""Per-op activation memory of one model: layer by layer vs patch-based vs stream buffers (input image
excluded, as MCUNetV2 and StreamNet count), drawn to a PNG.

    .venv/bin/python benchmarks/staged_plot.py [MODEL] [--max-mac-overhead F] [-o FILE.png]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from vmcu import driver
from vmcu.report.plot import plot_timelines, staged_timeline, tensor_timeline
from vmcu.run.toolchain import cache_dir

MODELS = Path(__file__).resolve().parents[2] / "shared" / "models"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", nargs="?", default="tinyengine__vww")
    parser.add_argument("--max-mac-overhead", type=float, default=0.06)
    parser.add_argument("-o", "--output", default="docs/staged_timeline.png")
    args = parser.parse_args()
    path = MODELS / f"{args.model}.tflite"
    graph = driver.load_model(path if path.exists() else driver.builtin_model(args.model, cache_dir() / "models"))
    layerwise = driver.plan_memory(graph, "tensor")
    patch, _ = driver.search_staged(graph, "patch", max_mac_overhead=args.max_mac_overhead)
    stream, _ = driver.search_staged(graph, "stream")
    per_op_layerwise = dict(zip(layerwise.order, tensor_timeline(layerwise), strict=True))
    ops = sorted(per_op_layerwise)
    series = {"layer by layer (image in SRAM)": [per_op_layerwise[i] for i in ops]}
    for name, plan in (("patch", patch), ("stream", stream)):
        need = staged_timeline(graph, plan)
        label = f"{name} (split {plan.split}, {plan.mac_overhead:+.1%} MACs)"
        series[label] = [need.get(i, 0) for i in ops]
    labels = [f"{i} {graph.ops[i].type.split('_')[0][:5]}" for i in ops]
    title = f"{graph.name}: layer by layer vs patch vs stream (patch/stream exclude the input image)"
    out = plot_timelines(title, labels, series, Path(args.output))
    for name, values in series.items():
        print(f"{name}: peak {max(values):,} B")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
