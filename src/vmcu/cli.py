"""The `vmcu` command: a thin argparse layer over vmcu.driver.

Every VmcuError becomes one line on stderr and exit status 1; a bug inside vmcu becomes one line too
(with VMCU_DEBUG=1 for the traceback), so users never face a stack dump for bad input.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from vmcu import __version__, driver
from vmcu.errors import VmcuError
from vmcu.ir.analysis import graph_macs, op_activation_bytes, op_macs, weight_bytes
from vmcu.report.text import fmt_bytes, format_table, memory_bar, offset_map
from vmcu.support import unsupported_reasons


def _emit(args: argparse.Namespace, payload: dict[str, Any], text: Callable[[dict[str, Any]], str]) -> None:
    print(json.dumps(payload, indent=2) if args.json else text(payload))


def cmd_inspect(args: argparse.Namespace) -> int:
    graph = driver.load_model(args.model, require_supported=False)
    ops = []
    for op in graph.ops:
        out = graph.tensors[op.outputs[0]] if op.outputs else None
        ops.append({
            "index": op.index, "type": op.type, "inputs": [i for i in op.inputs], "outputs": list(op.outputs),
            "output_shape": list(out.shape) if out else [], "options": op.options,
            "macs": op_macs(graph, op), "activation_bytes": op_activation_bytes(graph, op),
            "unsupported": unsupported_reasons(graph, op),
        })
    tensors = [{
        "index": t.index, "name": t.name, "shape": list(t.shape), "dtype": t.dtype, "bytes": t.nbytes,
        "constant": t.is_const, "variable": t.is_variable,
        "scale": list(t.quant.scale) if t.quant else None,
        "zero_point": list(t.quant.zero_point) if t.quant else None,
    } for t in graph.tensors]
    payload = {
        "model": str(args.model), "sha256": driver.model_sha256(args.model), "ops": ops, "tensors": tensors,
        "inputs": list(graph.inputs), "outputs": list(graph.outputs), "macs": graph_macs(graph),
        "weight_bytes": weight_bytes(graph),
        "layer_peak_bytes": max((op["activation_bytes"] for op in ops), default=0),
        "supported": not any(op["unsupported"] for op in ops),
    }
    _emit(args, payload, _inspect_text)
    return 0


def _quant_text(t: dict[str, Any]) -> str:
    if t["scale"] is None:
        return ""
    if len(t["scale"]) > 1:
        return f"per-channel x{len(t['scale'])}"
    return f"s={t['scale'][0]:.6g} zp={t['zero_point'][0]}"


def _inspect_text(p: dict[str, Any]) -> str:
    tensors = p["tensors"]
    op_rows = [[o["index"], o["type"], "x".join(map(str, o["output_shape"])), fmt_bytes(o["macs"]),
                fmt_bytes(o["activation_bytes"]), "; ".join(o["unsupported"]) or "ok"] for o in p["ops"]]
    t_rows = [[t["index"], t["name"][:48], "x".join(map(str, t["shape"])), t["dtype"], fmt_bytes(t["bytes"]),
               "const" if t["constant"] else ("var" if t["variable"] else "act"), _quant_text(t)]
              for t in tensors]
    head = (f"model {p['model']}  sha256 {p['sha256'][:12]}\n"
            f"{len(p['ops'])} ops, {len(tensors)} tensors, {fmt_bytes(p['macs'])} MACs, "
            f"weights {fmt_bytes(p['weight_bytes'])} B, "
            f"layer-wise peak {fmt_bytes(p['layer_peak_bytes'])} B, "
            f"{'supported' if p['supported'] else 'NOT supported'}")
    return "\n\n".join([
        head,
        format_table(["op", "type", "output", "MACs", "act B", "support"], op_rows, right=(0, 3, 4)),
        format_table(["t", "name", "shape", "dtype", "bytes", "kind", "quantization"], t_rows, right=(0, 4)),
    ])


def cmd_plan(args: argparse.Namespace) -> int:
    from vmcu.report.plans import plan_payload

    if args.plot and args.strategy in ("patch", "stream"):
        raise VmcuError(f"--plot draws per-op timelines of tensor, tflm and segment plans, not {args.strategy}; "
                        "vmcu bench paper-mcunetv2 compares patch and stream stages")
    graph = driver.load_model(args.model, fold=args.strategy != "tflm")
    search = None
    if args.strategy in ("patch", "stream"):
        plan, search = driver.search_staged(graph, args.strategy, max_mac_overhead=args.max_mac_overhead,
                                            rest_strategy=args.rest_strategy)
    else:
        plan = driver.plan_memory(graph, args.strategy, fuse=args.fuse)
    payload = {"model": str(args.model), **plan_payload(graph, plan, search), "macs": graph_macs(graph),
               "checker": "passed"}
    if search is not None:
        payload["max_mac_overhead"] = args.max_mac_overhead if args.strategy == "patch" else 0.0
    if args.plot:
        payload["plot"] = str(_plot_plans(args.model, graph, args.strategy, plan, Path(args.plot)))
    _emit(args, payload, _plan_text)
    return 0


def _plot_plans(model: str, graph: Any, strategy: str, plan: Any, path: Path) -> Path:
    """TFLM's planner (on the file's own graph), vmcu's tensor plan and the chosen strategy's plan."""
    from vmcu.report.plot import plot_plan_comparison

    tflm = driver.plan_memory(driver.load_model(model, fold=False), "tflm")
    if strategy != "tflm":
        graph_plan = driver.plan_memory(graph)
    else:
        graph = driver.load_model(model)
        graph_plan = driver.plan_memory(graph)
    plans = {"TFLM greedy planner": tflm, "vmcu tensor": graph_plan}
    if strategy == "segment":
        plans["vmcu segment"] = plan
    return plot_plan_comparison(graph, plans, path)


def _plan_text(p: dict[str, Any]) -> str:
    peak = p["peak_bytes"]
    staged = p["strategy"] in ("patch", "stream")
    bound = "whole model layer by layer" if staged else "layer-wise lower bound"
    head = (f"strategy {p['strategy']}: peak {fmt_bytes(peak)} B, {bound} {fmt_bytes(p['lower_bound_bytes'])} B, "
            f"{fmt_bytes(p['macs'])} MACs, checker {p['checker']}")
    parts = [head]
    if p["strategy"] == "segment":
        parts.append(f"circular pool {fmt_bytes(p['pool_bytes'])} B (a multiple of {p['pool_unit']} B) + "
                     f"kernel workspace {fmt_bytes(p['workspace_bytes'])} B; offsets wrap around the pool")
    if staged:
        shape = (f"grid {p['grid'][0]}x{p['grid'][1]}" if p["strategy"] == "patch"
                 else f"{p['column_chunks']} chunk(s) per row")
        parts.append(
            f"stage = ops 0..{p['split'] - 1}, {shape}: stage peak {fmt_bytes(p['stage_peak_bytes'])} B "
            f"(output {fmt_bytes(p['stage_output_bytes'])} B), later layers {fmt_bytes(p['rest_peak_bytes'])} B; "
            f"{p['mac_overhead']:+.2%} MACs; peak with the input image {fmt_bytes(p['peak_bytes_with_input'])} B "
            f"(figures exclude the {fmt_bytes(p['input_bytes'])} B image, as MCUNetV2 and TinyEngine count)")
        candidates = p.get("candidates", [])
        within = [c for c in candidates if c["mac_overhead"] <= p["max_mac_overhead"] + 1e-12]
        rows = sorted(within, key=lambda c: (c["peak_bytes"], c["mac_overhead"]))[:15]
        parts.append(f"best {len(rows)} of {len(within)} candidates within {p['max_mac_overhead']:.1%} extra MACs "
                     f"({len(candidates)} evaluated; --json lists all):")
        parts.append(format_table(
            ["split", "grid/chunks", "peak B", "with image B", "extra MACs"],
            [[c["split"], "x".join(map(str, c["grid"])) if "grid" in c else c["column_chunks"],
              fmt_bytes(c["peak_bytes"]), fmt_bytes(c["peak_bytes_with_input"]), f"{c['mac_overhead']:+.2%}"]
             for c in rows], right=(0, 2, 3, 4)))
        return "\n\n".join(parts)
    rows = []
    for step in p["steps"]:
        live = sorted(step["live"], key=lambda t: t["offset"])
        labels = [(t["offset"], t["size_bytes"], chr(ord("a") + k % 26)) for k, t in enumerate(live)]
        where = ", ".join(f"{lab[2]}=t{t['tensor']}@{t['offset']}" for lab, t in zip(labels, live, strict=True))
        rows.append([step["op"], step["type"], fmt_bytes(step["live_bytes"]),
                     memory_bar(step["live_bytes"], peak, 24), offset_map(labels, peak, 32), where])
    parts.append(format_table(["op", "type", "live B", "live / peak", "arena (offsets)", "live buffers"], rows,
                              right=(0, 2)))
    return "\n\n".join(parts)


def cmd_check(args: argparse.Namespace) -> int:
    from vmcu.reference.compare import compare_with_tflm

    driver.load_model(args.model)
    result = compare_with_tflm(args.model, n_inputs=args.inputs, seed=args.seed).to_json()
    _emit(args, {"model": str(args.model), **result}, _check_text)
    return 0 if result["bit_exact"] else 1


def _check_text(p: dict[str, Any]) -> str:
    if p["bit_exact"]:
        return (f"bit-exact: reference executor == TFLite Micro on {p['inputs']} random inputs, "
                f"{p['ops_compared']} op outputs compared")
    m = p["mismatch"]
    return (f"MISMATCH on input {m['input']}: op {m['op']} {m['op_type']} tensor {m['tensor']} "
            f"'{m['tensor_name']}' index {m['index']}: TFLM {m['expected']}, vmcu {m['got']}")


def _cache_dir() -> Path:
    from vmcu.run.toolchain import cache_dir

    return cache_dir() / "models"


def _target_and_board(args: argparse.Namespace) -> tuple[Any, Any]:
    from vmcu.targets import get_board, get_target

    target = get_target(args.target)
    board = get_board(args.board) if args.board else None
    if board is not None and target.is_host:
        raise VmcuError("--board applies to cortex-m4/cortex-m7 targets, not host")
    return target, board


def cmd_compile(args: argparse.Namespace) -> int:
    from vmcu.run.verify import build_compiled

    target, board = _target_and_board(args)
    path = driver.resolve_model(args.model, _cache_dir())
    graph = driver.load_model(path, fold=args.strategy != "tflm")
    kernels = args.kernels or driver.default_kernels(target)
    plan, program = driver.compile_graph(graph, args.strategy, kernels, max_mac_overhead=args.max_mac_overhead,
                                         fuse=args.fuse)
    out = Path(args.output)
    with _status(args, f"building {graph.name} for {target.name}"):
        build_compiled(program, target, board, out)
    payload = {"model": str(path), "target": target.name, "board": board.name if board else None,
               "strategy": program.strategy, "kernels": kernels, "plan_bytes": program.plan_bytes,
               "scratch_bytes": program.scratch_bytes, "arena_bytes": program.arena_bytes,
               "project": str(out / "src"), "binary_dir": str(out / "build")}
    _emit(args, payload, lambda p: (
        f"wrote {p['project']} ({graph.name}, {p['strategy']} plan, {p['kernels']} kernels); "
        f"arena {fmt_bytes(p['arena_bytes'])} B = plan {fmt_bytes(p['plan_bytes'])} B + scratch "
        f"{fmt_bytes(p['scratch_bytes'])} B; built in {p['binary_dir']}; "
        f"rebuild with make -C {p['project']}"))
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    import tempfile

    from vmcu.reference.executor import random_inputs
    from vmcu.run.verify import build_compiled, verify_program

    target, board = _target_and_board(args)
    path = driver.resolve_model(args.model, _cache_dir())
    graph = driver.load_model(path, fold=args.strategy != "tflm")
    kernels = args.kernels or driver.default_kernels(target)
    plan, program = driver.compile_graph(graph, args.strategy, kernels, max_mac_overhead=args.max_mac_overhead,
                                         fuse=args.fuse)
    with tempfile.TemporaryDirectory(prefix="vmcu-run-") as tmp:
        work = Path(args.work_dir) if args.work_dir else Path(tmp)
        with _status(args, f"building {graph.name} for {target.name}"):
            binary = build_compiled(program, target, board, work, sanitize=target.is_host)
        with _status(args, f"running {args.inputs} input(s) on {target.name}"):
            report = verify_program(graph, program, binary, target, board,
                                    random_inputs(graph, args.inputs, args.seed))
    payload = {"model": str(path), "sha256": driver.model_sha256(path), "strategy": program.strategy,
               "macs": graph_macs(graph), "lower_bound_bytes": _lower_bound(plan),
               "tflm_head_bytes": driver.tflm_head_bytes(path), **_staged(plan),
               **report.to_json()}
    _emit(args, payload, _run_text)
    return 0 if report.bit_exact else 1


def _lower_bound(plan: Any) -> int:
    """What a plan is measured against: its order's layer-wise bound, or for a patch or stream plan the
    whole model planned layer by layer (what the stage is there to beat)."""
    return plan.layerwise_peak_bytes if hasattr(plan, "layerwise_peak_bytes") else plan.lower_bound_bytes


def _staged(plan: Any) -> dict[str, Any]:
    """A patch or stream plan's schedule and the planner's figures with and without the input image."""
    if not hasattr(plan, "peak_bytes_with_input"):
        return {}
    shape = {"grid": list(plan.grid)} if hasattr(plan, "grid") else {"column_chunks": plan.column_chunks}
    return {"stage": {"split": plan.split, **shape, "mac_overhead": plan.mac_overhead,
                      "peak_bytes": plan.peak_bytes, "peak_bytes_with_input": plan.peak_bytes_with_input,
                      "input_bytes": plan.input_bytes}}


def _run_text(p: dict[str, Any]) -> str:
    stage = p.get("stage")
    lines = [
        f"model {p['model']} (sha256 {p['sha256'][:12]}), {fmt_bytes(p['macs'])} MACs",
        f"target {p['target']}, board {p['board']}, {p['kernels']} kernels, strategy {p['strategy']}",
        "",
        format_table(["memory", "bytes"], [
            ["TFLM planner head (no tail)", fmt_bytes(p["tflm_head_bytes"])],
            ["layer-wise lower bound", fmt_bytes(p["lower_bound_bytes"])],
            ["vmcu plan", fmt_bytes(p["plan_bytes"])],
            ["kernel scratch", fmt_bytes(p["scratch_bytes"])],
            ["arena (plan + scratch)", fmt_bytes(p["arena_bytes"])],
            ["RAM of the image (.data+.bss)", "-" if p["ram_bytes"] is None else fmt_bytes(p["ram_bytes"])],
            ["flash of the image", "-" if p["flash_bytes"] is None else fmt_bytes(p["flash_bytes"])],
        ], right=(1,)),
    ]
    if stage:
        shape = (f"{stage['grid'][0]}x{stage['grid'][1]} tiles" if "grid" in stage
                 else f"{stage['column_chunks']} chunk(s) per row")
        lines += ["", f"stage ops 0..{stage['split'] - 1}, {shape}, {stage['mac_overhead']:+.2%} MACs; planner "
                      f"peak {fmt_bytes(stage['peak_bytes_with_input'])} B with the input image in the arena, "
                      f"{fmt_bytes(stage['peak_bytes'])} B without its {fmt_bytes(stage['input_bytes'])} B"]
    if p["instructions"] is not None:
        rows = [[c["op"], c["type"], fmt_bytes(c["macs"]), fmt_bytes(c["instructions"]),
                 f"{c['instructions'] / c['macs']:.2f}" if c["macs"] else "", fmt_bytes(c["cycles"])]
                for c in p["per_op"]]
        per_mac = p["instructions"] / p["macs"] if p["macs"] else 0.0
        lines += ["", f"instructions {fmt_bytes(p['instructions'])} ({per_mac:.2f} per MAC), "
                      f"estimated Cortex-M4 cycles {fmt_bytes(p['cycles_estimate'])}", "",
                  format_table(["op", "type", "MACs", "instructions", "instr/MAC", "M4 cycles"], rows,
                               right=(0, 2, 3, 4, 5))]
    verdict = (f"bit-exact: every output byte equals the reference executor on {p['inputs']} random input(s)"
               if p["bit_exact"] else f"MISMATCH: {p['mismatches'][0]}")
    return "\n".join(lines + ["", verdict])


def cmd_bench_mcunetv2(args: argparse.Namespace) -> int:
    from vmcu.bench import mcunetv2

    payload = mcunetv2.run(args.model or (), directory=Path(args.models_dir) if args.models_dir else None,
                           instructions=not args.no_run, progress=mcunetv2.stderr_progress)
    _emit(args, payload, mcunetv2.text)
    exact = all(r.get(f"bit_exact_{k}") is not False for r in payload["rows"] for k in ("layerwise", "patch", "stream"))
    return 0 if exact and not payload["errors"] else 1


def cmd_bench_vmcu(args: argparse.Namespace) -> int:
    from vmcu.bench import vmcu_paper

    payload = vmcu_paper.run(instructions=not args.no_run, only=tuple(args.case or ()),
                             directory=Path(args.models_dir) if args.models_dir else None)
    _emit(args, payload, vmcu_paper.text)
    exact = all(r.get(f"bit_exact_{k}") is not False for r in payload["rows"] for k in ("tensor", "segment"))
    return 0 if exact else 1


def _status(args: argparse.Namespace, message: str) -> Any:
    """A spinner on stderr for the slow steps (build, emulation), silent with --json or without a tty."""
    import contextlib

    if args.json or not sys.stderr.isatty():
        return contextlib.nullcontext()
    from rich.console import Console

    return Console(stderr=True).status(message)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vmcu", description="Fit int8 TFLite models into MCU SRAM.")
    parser.add_argument("--version", action="version", version=f"vmcu {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("inspect", help="ops, tensors, quantization, MACs, weight and activation bytes")
    p.add_argument("model")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser("plan", help="plan activation memory and print the per-op timeline")
    p.add_argument("model")
    p.add_argument("--strategy", default="tensor", choices=driver.STRATEGIES,
                   help="tensor: vmcu's tensor-level planner; tflm: TFLite Micro's greedy planner; segment: "
                        "vMCU circular segment pool; patch / stream: MCUNetV2 patches / StreamNet stream "
                        "buffers for the first stage")
    p.add_argument("--max-mac-overhead", type=float, default=0.10,
                   help="patch: most extra MACs allowed, as a fraction (default 0.10)")
    p.add_argument("--rest-strategy", default="tensor", choices=("tensor", "segment"),
                   help="patch/stream: how the layers after the stage are planned (default tensor)")
    p.add_argument("--plot", metavar="FILE.png", help="draw the memory timeline (TFLM vs vmcu tensor [vs segment])")
    p.add_argument("--fuse", default="none", choices=driver.FUSE_CHOICES,
                   help="segment: run inverted bottlenecks fused (recompute: re-expand windows; cache: keep "
                        "expanded rows, no extra MACs; auto: least SRAM per block, then fewest MACs; default none)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_plan)

    p = sub.add_parser("check", help="reference executor vs TFLite Micro on random inputs, every tensor")
    p.add_argument("model")
    p.add_argument("--inputs", type=int, default=3, help="number of random inputs (default 3)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_check)

    for name, func, help_text in (
        ("compile", cmd_compile, "generate the C project (and build it to prove it fits the board)"),
        ("run", cmd_run, "compile, build, run on the target, compare every output byte with the reference"),
    ):
        p = sub.add_parser(name, help=help_text)
        p.add_argument("model", nargs="?", default=None,
                       help=f"a .tflite file or a built-in model (default {driver.DEFAULT_MODEL})")
        p.add_argument("--target", default="host", help="host, cortex-m4 or cortex-m7 (default host)")
        p.add_argument("--board", default=None,
                       help="stm32f411, stm32f412, stm32f746, stm32f767 or stm32h743: link-time SRAM/flash "
                            "limits (default: QEMU's whole memory)")
        p.add_argument("--strategy", default="tensor", choices=driver.CODEGEN_STRATEGIES)
        p.add_argument("--kernels", default=None, choices=driver.KERNEL_VARIANTS,
                       help="kernel variant (default: arm on Cortex-M, ref on host)")
        p.add_argument("--max-mac-overhead", type=float, default=0.10,
                       help="patch: most extra MACs allowed, as a fraction (default 0.10)")
        p.add_argument("--fuse", default="none", choices=driver.FUSE_CHOICES,
                       help="segment: run inverted bottlenecks fused (recompute: re-expand windows; cache: keep "
                            "expanded rows, no extra MACs; auto: least SRAM per block, then fewest MACs; default none)")
        p.add_argument("--json", action="store_true", help="print one JSON object")
        if name == "compile":
            p.add_argument("-o", "--output", required=True, help="directory for the C project")
        else:
            p.add_argument("--inputs", type=int, default=1, help="number of random inputs (default 1)")
            p.add_argument("--seed", type=int, default=0)
            p.add_argument("--work-dir", default=None, help="keep the generated project and binary here")
        p.set_defaults(func=func)

    bench = sub.add_parser("bench", help="reproduce published comparisons").add_subparsers(dest="bench",
                                                                                           required=True)
    p = bench.add_parser("paper-mcunetv2", help="patch-based (MCUNetV2) and stream (StreamNet) plans vs the "
                                                "papers: bytes, extra MACs, Cortex-M4 instructions")
    p.add_argument("--model", action="append", default=None,
                   help="only this model (repeatable; a shared model's stem or a built-in "
                        "mobilenetv2-<width>-<resolution>; default: the paper's three)")
    p.add_argument("--models-dir", default=None, help="directory of the shared .tflite models")
    p.add_argument("--no-run", action="store_true", help="plans only: skip building and running on QEMU")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_bench_mcunetv2)
    p = bench.add_parser("paper-vmcu", help="vMCU's pointwise layers and bottleneck modules: tensor vs segment "
                                            "(unfused, fused) bytes vs the paper; Cortex-M4 instructions")
    p.add_argument("--case", action="append", default=None, help="only this case (1..9, S1..S8, B1..B17; repeatable)")
    p.add_argument("--models-dir", default=None, help="directory of the shared .tflite models")
    p.add_argument("--no-run", action="store_true", help="plans only: skip building and running on QEMU")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_bench_vmcu)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except VmcuError as e:
        print(f"vmcu: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("vmcu: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head`: stop quietly, as Unix tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as e:  # a bug in vmcu: still one line, traceback on request
        if os.environ.get("VMCU_DEBUG"):
            raise
        print(f"vmcu: internal error: {type(e).__name__}: {e} (set VMCU_DEBUG=1 for the traceback)",
              file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
