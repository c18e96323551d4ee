"""Instructions and estimated Cortex-M4 cycles per model, portable vs DSP kernels, on emulated Cortex-M4.

Also instructions per MAC by layer kind (pointwise conv, k x k conv, depthwise, fully connected) with the
DSP kernels. Counts come from the project's QEMU plugin and are deterministic.

    .venv/bin/python benchmarks/kernels_m4.py [--models NAME ...] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

from vmcu import driver
from vmcu.ir.analysis import graph_macs
from vmcu.ir.graph import Graph
from vmcu.reference.executor import random_inputs
from vmcu.report.text import format_table
from vmcu.run.verify import RunReport, build_compiled, verify_program
from vmcu.targets import get_target

MODELS = Path(__file__).resolve().parents[2] / "shared" / "models"
DEFAULT_MODELS = [
    "mlperftiny__vww_96_int8", "tflm__person_detect", "mlperftiny__kws_ref_model", "mlperftiny__str_ww_ref_model",
    "mlperftiny__ic_resnet8_pretrainedResnet_quant", "mlperftiny__ad01_int8", "tflm__micro_speech_quantized",
    "tinyengine__vww",
]


def layer_kind(graph: Graph, op_index: int) -> str | None:
    """The row of the per-MAC table an op belongs to (None for ops without MACs)."""
    op = graph.ops[op_index]
    if op.type == "CONV_2D":
        w = graph.tensors[op.inputs[1]].shape
        return "pointwise conv" if w[1] == w[2] == 1 else f"{w[1]}x{w[2]} conv"
    return {"DEPTHWISE_CONV_2D": "depthwise", "FULLY_CONNECTED": "fully connected"}.get(op.type)


def measure(path: Path, kernels: str, work: Path) -> tuple[Graph, RunReport]:
    target = get_target("cortex-m4")
    graph = driver.load_model(path)
    _, program = driver.compile_graph(graph, "tensor", kernels)
    binary = build_compiled(program, target, None, work / f"{path.stem}-{kernels}")
    return graph, verify_program(graph, program, binary, target, None, random_inputs(graph, 1, seed=0))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", default=DEFAULT_MODELS)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rows, per_kind = [], defaultdict(lambda: [0, 0])
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            print(f"measuring {name} ...", file=sys.stderr)
            graph, ref = measure(MODELS / f"{name}.tflite", "ref", Path(tmp))
            _, dsp = measure(MODELS / f"{name}.tflite", "arm", Path(tmp))
            if not (ref.bit_exact and dsp.bit_exact):
                raise SystemExit(f"{name}: not bit-exact (ref {ref.bit_exact}, dsp {dsp.bit_exact})")
            macs = graph_macs(graph)
            rows.append({"model": name, "macs": macs, "ref_instructions": ref.instructions,
                         "dsp_instructions": dsp.instructions, "ref_cycles": ref.cycles_estimate,
                         "dsp_cycles": dsp.cycles_estimate, "dsp_instructions_per_mac": dsp.instructions / macs})
            for c in dsp.per_op:
                kind = layer_kind(graph, c.op)
                if kind:
                    per_kind[kind][0] += c.instructions
                    per_kind[kind][1] += c.macs
    kinds = {k: {"instructions": i, "macs": m, "instructions_per_mac": i / m} for k, (i, m) in sorted(per_kind.items())}
    if args.json:
        print(json.dumps({"rows": rows, "per_layer_kind": kinds}, indent=2))
        return 0
    print(format_table(
        ["model", "MACs", "portable instr", "DSP instr", "portable M4 cycles", "DSP M4 cycles", "DSP instr/MAC"],
        [[r["model"], f"{r['macs']:,}", f"{r['ref_instructions']:,}", f"{r['dsp_instructions']:,}",
          f"{r['ref_cycles']:,}", f"{r['dsp_cycles']:,}", f"{r['dsp_instructions_per_mac']:.2f}"] for r in rows],
        right=(1, 2, 3, 4, 5, 6)))
    print()
    print(format_table(["layer kind (DSP kernels)", "MACs", "instructions", "instr/MAC"],
                       [[k, f"{v['macs']:,}", f"{v['instructions']:,}", f"{v['instructions_per_mac']:.2f}"]
                        for k, v in kinds.items()], right=(1, 2, 3)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
