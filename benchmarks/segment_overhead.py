"""What running on the circular pool costs: Cortex-M4 instructions of the segment kernels against the
tensor-level kernels (same DSP variant, same input), per model and per op type, on emulated Cortex-M4.

Three counts per op. "tensor": the tensor-level program (the tensor plan; an output never overlaps its input
there). "in place": for CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED, the same tensor kernel run alone on
one flat buffer with its output `gap` bytes before its input, as the segment plan overlaps them: the work a
segment plan asks of the kernel without any wrap (the DSP kernels take a slower row-by-row path when their
output overlaps their input; the portable kernels of the other ops do not, so there it is the tensor count).
"segment": the segment program's kernel. segment / in place is the cost of the circular addressing; segment /
tensor adds the cost of overlapping. An op is compared only where the tensor program calls the segment
kernel's twin (vmcu_<op> for vmcu_seg_<op>); ops for which the tensor plan picks another kernel
(TinyEngine-style in-place depthwise) are listed apart. Also prints each model's SRAM: tensor arena and
segment arena. Counts come from the project's QEMU plugin and are deterministic.

    .venv/bin/python benchmarks/segment_overhead.py [--models NAME ...] [--json]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from vmcu import driver
from vmcu.ir.graph import Graph
from vmcu.ir.params import op_params
from vmcu.kernels import c_definition, include_dir, kernel_binding, kernel_sources
from vmcu.plan.segment import SegmentPlan
from vmcu.reference.executor import random_inputs
from vmcu.report.text import format_table
from vmcu.run.execute import build_program, run_program
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
DSP_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")  # whose tensor kernels slow down in place


CALL = re.compile(r"vmcu_mark\((\d+)\);\s*(?:\{[^;]*;\s*)?(\w+)\(")


def measure(graph: Graph, strategy: str, work: Path) -> tuple[Any, RunReport, dict[int, str]]:
    """Build and run one strategy with the DSP kernels on emulated Cortex-M4 (refusing a wrong result);
    returns its plan, the report and the kernel each op calls, read from the generated source."""
    target = get_target("cortex-m4")
    plan, program = driver.compile_graph(graph, strategy, "arm")
    binary = build_compiled(program, target, None, work / f"{graph.name}-{strategy}")
    report = verify_program(graph, program, binary, target, None, random_inputs(graph, 1, seed=0))
    if not report.bit_exact:
        raise SystemExit(f"{graph.name} ({strategy}): not bit-exact: {report.mismatches[0]}")
    kernels = {int(op): symbol for op, symbol in CALL.findall(program.files[f"{program.name}.c"])}
    return plan, report, kernels


def in_place(graph: Graph, splan: SegmentPlan, work: Path) -> dict[int, int]:
    """Instructions of each DSP op's tensor kernel run alone in one flat buffer, its output starting the plan's
    gap before its chained input (separate buffers for an op whose output overlaps none), on pseudo-random
    input bytes written outside the op's region."""
    target = get_target("cortex-m4")
    defs, calls, size, scratch = [], [], 4, 4
    aliases = dict(splan.plan.aliases)
    for s in splan.steps:
        op = graph.ops[s.op]
        if s.output in aliases or op.type not in DSP_OPS:
            continue
        b = kernel_binding(op.type, op_params(graph, op), "arm")
        defs.append(c_definition(b, f"p{s.op}"))
        scratch = max(scratch, b.scratch_bytes)
        out, first = graph.tensors[s.output], graph.tensors[op.inputs[0]]
        gap = s.gap_bytes if s.chained_input == op.inputs[0] else out.nbytes
        size = max(size, out.nbytes, gap + first.nbytes)
        args = []
        for role in b.args:
            n = int(role[5:]) if role.startswith("input") and role != "inputs" else -1
            if role == "output":
                args.append("(void *)buf")
            elif role == "scratch":
                args.append("scratch")
            elif 0 < n < len(op.inputs) and graph.tensors[op.inputs[n]].is_const:
                data = np.asarray(graph.tensors[op.inputs[n]].data).reshape(-1)
                ctype = {"int8": "int8_t", "int32": "int32_t"}[graph.tensors[op.inputs[n]].dtype]
                defs.append(f"static const {ctype} c{s.op}_{n}[] __attribute__((aligned(4))) = "
                            f"{{{', '.join(map(str, data.tolist()))}}};\n")
                args.append(f"c{s.op}_{n}")
            elif 0 <= n < len(op.inputs):  # activations (a second one reuses the first's bytes)
                args.append(f"(const void *)(buf + {gap})")
            else:
                args.append("NULL")
        calls.append(f"    vmcu_mark(-1);\n    fill(buf + {gap}, {first.nbytes});\n"
                     f"    vmcu_mark({s.op});\n    {b.symbol}(&p{s.op}, {', '.join(args)});\n")
    src = ("#include <stddef.h>\n#include \"vmcu_kernels.h\"\n#include \"vmcu_platform.h\"\n"
           f"static int8_t buf[{size}] __attribute__((aligned(4)));\n"
           f"static int8_t scratch[{scratch}] __attribute__((aligned(4)));\n"
           "static void fill(int8_t *p, int32_t n) {\n    static uint32_t x = 1;\n"
           "    for (int32_t i = 0; i < n; ++i) {\n        x = x * 1664525u + 1013904223u;\n"
           "        p[i] = (int8_t)(x >> 24);\n    }\n}\n" + "".join(defs)
           + "int vmcu_main(void) {\n" + "".join(calls) + "    vmcu_mark(-1);\n    return 0;\n}\n")
    work.mkdir(parents=True, exist_ok=True)
    (work / "main.c").write_text(src)
    binary = build_program(target, None, [*kernel_sources("arm"), work / "main.c"], [include_dir()], work / "build")
    return run_program(target, binary, b"", None).per_region


def overhead(segment: int, tensor: int) -> str:
    return f"{segment / tensor - 1:+.2%}" if tensor else "-"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", default=DEFAULT_MODELS)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rows, per_type = [], defaultdict(lambda: [0, 0, 0])
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            print(f"measuring {name} ...", file=sys.stderr)
            graph = driver.load_model(MODELS / f"{name}.tflite")
            _, tensor, tensor_kernels = measure(graph, "tensor", Path(tmp))
            splan, segment, segment_kernels = measure(graph, "segment", Path(tmp))
            placed = in_place(graph, splan, Path(tmp) / f"{name}-in-place")
            seg_ops = {c.op: c.instructions for c in segment.per_op}
            same = [c for c in tensor.per_op if c.op in segment_kernels and c.op in tensor_kernels
                    and segment_kernels[c.op] == "vmcu_seg_" + tensor_kernels[c.op].removeprefix("vmcu_")]
            placed = {c.op: placed.get(c.op, c.instructions) for c in same}  # the others run the same in place
            other = [c for c in tensor.per_op if c not in same and c.instructions]
            for c in same:
                per_type[c.type][0] += c.instructions
                per_type[c.type][1] += placed[c.op]
                per_type[c.type][2] += seg_ops[c.op]
            rows.append({"model": name, "tensor_arena": tensor.arena_bytes, "segment_arena": segment.arena_bytes,
                         "segment_plan": segment.plan_bytes, "segment_scratch": segment.scratch_bytes,
                         "tensor_ops_instructions": sum(c.instructions for c in same),
                         "in_place_ops_instructions": sum(placed[c.op] for c in same),
                         "segment_ops_instructions": sum(seg_ops[c.op] for c in same),
                         "other_kernel_ops": [{"op": c.op, "type": c.type, "tensor_kernel": tensor_kernels.get(c.op),
                                               "tensor": c.instructions, "segment": seg_ops.get(c.op, 0)}
                                              for c in other],
                         "tensor_instructions": tensor.instructions, "segment_instructions": segment.instructions})
    types = {k: {"tensor": t, "in_place": i, "segment": s} for k, (t, i, s) in sorted(per_type.items())}
    total_t = sum(r["tensor_ops_instructions"] for r in rows)
    total_i = sum(r["in_place_ops_instructions"] for r in rows)
    total_s = sum(r["segment_ops_instructions"] for r in rows)
    if args.json:
        print(json.dumps({"rows": rows, "per_op_type": types, "overhead_vs_in_place": total_s / total_i - 1,
                          "overhead_vs_tensor": total_s / total_t - 1}, indent=2))
        return 0
    print(format_table(
        ["model", "tensor arena B", "segment arena B", "(pool+ws / scratch)", "tensor instr", "in place instr",
         "segment instr", "vs in place", "vs tensor"],
        [[r["model"], f"{r['tensor_arena']:,}", f"{r['segment_arena']:,}",
          f"{r['segment_plan']:,} / {r['segment_scratch']:,}", f"{r['tensor_ops_instructions']:,}",
          f"{r['in_place_ops_instructions']:,}", f"{r['segment_ops_instructions']:,}",
          overhead(r["segment_ops_instructions"], r["in_place_ops_instructions"]),
          overhead(r["segment_ops_instructions"], r["tensor_ops_instructions"])] for r in rows],
        right=(1, 2, 3, 4, 5, 6, 7, 8)))
    print()
    print(format_table(["op type", "tensor instr", "in place instr", "segment instr", "vs in place", "vs tensor"],
                       [[k, f"{v['tensor']:,}", f"{v['in_place']:,}", f"{v['segment']:,}",
                         overhead(v["segment"], v["in_place"]), overhead(v["segment"], v["tensor"])]
                        for k, v in types.items()], right=(1, 2, 3, 4, 5)))
    others = [(r["model"], o) for r in rows for o in r["other_kernel_ops"]]
    if others:
        print("\nnot compared (the tensor plan runs another kernel):")
        print(format_table(["model", "op", "type", "tensor kernel", "tensor instr", "segment instr"],
                           [[m, o["op"], o["type"], o["tensor_kernel"], f"{o['tensor']:,}", f"{o['segment']:,}"]
                            for m, o in others], right=(1, 4, 5)))
    verdict = "within" if total_s <= (1 + TARGET) * total_i else "OVER"
    print(f"\nall ops: segment kernels {overhead(total_s, total_i)} instructions against the same tensor-level "
          f"kernels doing the same in-place work ({verdict} the {TARGET:.0%} budget), {overhead(total_s, total_t)} "
          "against the tensor-level program")
    return 0


if __name__ == "__main__":
    sys.exit(main())
