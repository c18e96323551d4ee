"""What running on the circular pool costs: Cortex-M4 instructions of the segment kernels against the
tensor-level kernels (same DSP variant, same input), per model and per op type, on emulated Cortex-M4.

Both programs compute the same outputs (each is checked bit-exact against the reference); they differ only
in addressing: segment kernels resolve each input pixel or row against the pool's wrap and store units
that straddle it in two parts. Also prints each model's SRAM: tensor plan and segment arena. Counts come
from the project's QEMU plugin and are deterministic.

    .venv/bin/python benchmarks/segment_overhead.py [--models NAME ...] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

from vmcu import driver
from vmcu.ir.graph import Graph
from vmcu.reference.executor import random_inputs
from vmcu.report.text import format_table
from vmcu.run.verify import RunReport, build_compiled, verify_program
from vmcu.targets import get_target

MODELS = Path(__file__).resolve().parents[2] / "shared" / "models"
DEFAULT_MODELS = [
    "mlperftiny__ad01_int8", "mlperftiny__ic_pretrainedResnet_large_int8",
    "mlperftiny__ic_resnet8_pretrainedResnet_quant", "mlperftiny__kws_ref_model", "mlperftiny__str_ww_ref_model",
    "mlperftiny__vww_96_int8", "tflm__hello_world_int8", "tflm__micro_speech_quantized", "tflm__person_detect",
    "tinyengine__mcunetv2_large", "tinyengine__vww",
]
TARGET = 0.05  # the budget: segment kernels may cost at most 5% more instructions


def measure(graph: Graph, strategy: str, work: Path) -> RunReport:
    """Build and run one strategy with the DSP kernels on emulated Cortex-M4; refuse a wrong result."""
    target = get_target("cortex-m4")
    _, program = driver.compile_graph(graph, strategy, "arm")
    binary = build_compiled(program, target, None, work / f"{graph.name}-{strategy}")
    report = verify_program(graph, program, binary, target, None, random_inputs(graph, 1, seed=0))
    if not report.bit_exact:
        raise SystemExit(f"{graph.name} ({strategy}): not bit-exact: {report.mismatches[0]}")
    return report


def overhead(segment: int, tensor: int) -> str:
    return f"{segment / tensor - 1:+.2%}" if tensor else "-"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", default=DEFAULT_MODELS)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rows, per_type = [], defaultdict(lambda: [0, 0])
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            print(f"measuring {name} ...", file=sys.stderr)
            graph = driver.load_model(MODELS / f"{name}.tflite")
            tensor = measure(graph, "tensor", Path(tmp))
            segment = measure(graph, "segment", Path(tmp))
            seg_ops = {c.op: c.instructions for c in segment.per_op}
            ops_t = sum(c.instructions for c in tensor.per_op)
            ops_s = sum(seg_ops.get(c.op, 0) for c in tensor.per_op)
            for c in tensor.per_op:
                per_type[c.type][0] += c.instructions
                per_type[c.type][1] += seg_ops.get(c.op, 0)
            rows.append({"model": name, "tensor_arena": tensor.arena_bytes, "segment_arena": segment.arena_bytes,
                         "segment_plan": segment.plan_bytes, "segment_scratch": segment.scratch_bytes,
                         "tensor_ops_instructions": ops_t, "segment_ops_instructions": ops_s,
                         "tensor_instructions": tensor.instructions, "segment_instructions": segment.instructions})
    types = {k: {"tensor": t, "segment": s} for k, (t, s) in sorted(per_type.items())}
    total_t = sum(r["tensor_ops_instructions"] for r in rows)
    total_s = sum(r["segment_ops_instructions"] for r in rows)
    if args.json:
        print(json.dumps({"rows": rows, "per_op_type": types, "overhead": total_s / total_t - 1}, indent=2))
        return 0
    print(format_table(
        ["model", "tensor arena B", "segment arena B", "(pool+ws / scratch)", "tensor op instr", "segment op instr",
         "overhead"],
        [[r["model"], f"{r['tensor_arena']:,}", f"{r['segment_arena']:,}",
          f"{r['segment_plan']:,} / {r['segment_scratch']:,}", f"{r['tensor_ops_instructions']:,}",
          f"{r['segment_ops_instructions']:,}", overhead(r["segment_ops_instructions"], r["tensor_ops_instructions"])]
         for r in rows], right=(1, 2, 3, 4, 5, 6)))
    print()
    print(format_table(["op type", "tensor instr", "segment instr", "overhead"],
                       [[k, f"{v['tensor']:,}", f"{v['segment']:,}", overhead(v["segment"], v["tensor"])]
                        for k, v in types.items()], right=(1, 2, 3)))
    verdict = "within" if total_s <= (1 + TARGET) * total_t else "OVER"
    print(f"\nall ops: segment kernels {overhead(total_s, total_t)} instructions against tensor-level kernels "
          f"({verdict} the {TARGET:.0%} budget)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
