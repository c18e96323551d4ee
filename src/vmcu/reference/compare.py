"""Check the NumPy reference against TFLite Micro, tensor by tensor, on random inputs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vmcu.frontend.tflite import read_tflite
from vmcu.reference.executor import random_inputs, run_reference
from vmcu.reference.tflm import run_tflm


@dataclass(frozen=True)
class Mismatch:
    """The first differing element: input set, op, its output tensor and the two values."""

    input: int
    op: int
    op_type: str
    tensor: int
    tensor_name: str
    index: int
    expected: int | float | None
    got: int | float | None


@dataclass(frozen=True)
class CompareResult:
    """Outcome of one comparison; `expected` values come from TFLM, `got` from the reference."""

    bit_exact: bool
    inputs: int
    ops_compared: int
    mismatch: Mismatch | None

    def to_json(self) -> dict[str, Any]:
        m = self.mismatch
        return {"bit_exact": self.bit_exact, "inputs": self.inputs, "ops_compared": self.ops_compared,
                "mismatch": None if m is None else {
                    "input": m.input, "op": m.op, "op_type": m.op_type, "tensor": m.tensor,
                    "tensor_name": m.tensor_name, "index": m.index, "expected": m.expected, "got": m.got}}


def compare_with_tflm(path: str | Path, n_inputs: int = 3, seed: int = 0) -> CompareResult:
    """Run reference and TFLM on `n_inputs` random inputs; report the first op, in execution order,
    whose output differs in any input set (VerifyError if TFLM cannot run the model)."""
    graph = read_tflite(path)
    inputs = random_inputs(graph, n_inputs, seed)
    ours = [run_reference(graph, xs) for xs in inputs]
    theirs = run_tflm(path, inputs, [op.outputs[0] for op in graph.ops])
    for op in graph.ops:
        t = graph.tensors[op.outputs[0]]
        for k in range(n_inputs):
            expected, got = theirs[k][t.index].reshape(-1), ours[k][t.index].reshape(-1)
            index = _first_difference(expected, got)
            if index is not None:
                return CompareResult(False, n_inputs, op.index + 1, Mismatch(
                    k, op.index, op.type, t.index, t.name, index, _item(expected, index), _item(got, index)))
    return CompareResult(True, n_inputs, len(graph.ops), None)


def _first_difference(expected: np.ndarray, got: np.ndarray) -> int | None:
    """Flat index of the first differing element (bitwise, so floats compare exactly), or None."""
    if expected.dtype != got.dtype or expected.size != got.size:
        return 0
    a = np.ascontiguousarray(expected).view(np.uint8).reshape(expected.size, -1)
    b = np.ascontiguousarray(got).view(np.uint8).reshape(got.size, -1)
    rows = np.flatnonzero((a != b).any(axis=1))
    return int(rows[0]) if rows.size else None


def _item(values: np.ndarray, index: int) -> int | float | None:
    return values[index].item() if index < values.size else None
