"""Build a generated program for a target, run it on inputs and compare every output byte with the
NumPy reference executor (the specification), collecting sizes and per-op instruction counts."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vmcu.codegen.program import CProgram
from vmcu.codegen.project import write_project
from vmcu.ir.graph import Graph
from vmcu.kernels import include_dir
from vmcu.reference.executor import run_reference
from vmcu.run.execute import RunResult, build_program, render_link_script, run_program
from vmcu.targets import Board, Target, get_board


@dataclass(frozen=True)
class OpCount:
    """Instructions (and the M4 cycle estimate) one op took on the emulated core."""

    op: int
    type: str
    macs: int
    instructions: int
    cycles: int


@dataclass(frozen=True)
class RunReport:
    """The outcome of `verify_program`: bit-exactness per input, memory and, on Cortex-M, counts."""

    target: str
    board: str
    kernels: str
    bit_exact: bool
    inputs: int
    mismatches: tuple[dict[str, Any], ...]
    arena_bytes: int
    plan_bytes: int
    scratch_bytes: int
    flash_bytes: int | None
    ram_bytes: int | None
    instructions: int | None
    cycles_estimate: int | None
    per_op: tuple[OpCount, ...] = field(default=())

    def to_json(self) -> dict[str, Any]:
        return {
            "target": self.target, "board": self.board, "kernels": self.kernels, "bit_exact": self.bit_exact,
            "inputs": self.inputs, "mismatches": list(self.mismatches), "arena_bytes": self.arena_bytes,
            "plan_bytes": self.plan_bytes, "scratch_bytes": self.scratch_bytes, "flash_bytes": self.flash_bytes,
            "ram_bytes": self.ram_bytes, "instructions": self.instructions,
            "cycles_estimate": self.cycles_estimate,
            "per_op": [{"op": c.op, "type": c.type, "macs": c.macs, "instructions": c.instructions,
                        "cycles": c.cycles} for c in self.per_op],
        }


def input_blob(graph: Graph, inputs: list[np.ndarray]) -> bytes:
    """The bytes the harness reads: every graph input in its own dtype, back to back."""
    return b"".join(np.ascontiguousarray(x).tobytes() for x in inputs)


def expected_blob(graph: Graph, values: dict[int, np.ndarray]) -> bytes:
    return b"".join(np.ascontiguousarray(values[i]).tobytes() for i in graph.outputs)


def build_compiled(program: CProgram, target: Target, board: Board | None, work_dir: Path,
                   sanitize: bool = False) -> Path:
    """Write the project into work_dir and build it; BuildError names the board on overflow."""
    board = board if board is not None or target.is_host else get_board(target.default_board or "qemu")
    project = write_project(program, work_dir / "src", target,
                            None if target.is_host else render_link_script(board))
    sources = [project / f"{program.name}.c", project / "main.c", *sorted((project / "kernels").glob("*.c"))]
    return build_program(target, board, sources, [include_dir(), project / "kernels"], work_dir / "build",
                         sanitize=sanitize)


def verify_program(graph: Graph, program: CProgram, binary: Path, target: Target, board: Board | None,
                   inputs: list[list[np.ndarray]]) -> RunReport:
    """Run the binary on each input set and compare with the reference; counts come from the first run."""
    mismatches: list[dict[str, Any]] = []
    first: RunResult | None = None
    out_size = sum(program.output_bytes)
    for k, xs in enumerate(inputs):
        result = run_program(target, binary, input_blob(graph, xs), out_size)
        first = first or result
        want = expected_blob(graph, run_reference(graph, xs))
        if result.output != want:
            got = np.frombuffer(result.output, np.uint8)
            exp = np.frombuffer(want, np.uint8)
            idx = int(np.flatnonzero(got != exp)[0])
            mismatches.append({"input": k, "byte": idx, "expected": int(exp[idx]), "got": int(got[idx]),
                               "differing_bytes": int((got != exp).sum())})
    assert first is not None
    per_op = tuple(
        OpCount(op, op_type, macs, first.per_region.get(op, 0), first.per_region_cycles.get(op, 0))
        for op, op_type, macs in program.op_info) if first.instructions is not None else ()
    size = first.size
    board_name = "native" if target.is_host else (board.name if board else target.default_board or "qemu")
    return RunReport(
        target=target.name, board=board_name, kernels=program.variant, bit_exact=not mismatches,
        inputs=len(inputs), mismatches=tuple(mismatches), arena_bytes=program.arena_bytes,
        plan_bytes=program.plan_bytes, scratch_bytes=program.scratch_bytes,
        flash_bytes=size.flash_bytes if size else None, ram_bytes=size.ram_bytes if size else None,
        instructions=first.instructions, cycles_estimate=first.cycles_estimate, per_op=per_op)
