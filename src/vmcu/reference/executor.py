"""Run a graph with the NumPy reference kernels: the executable specification of vmcu's semantics."""

from __future__ import annotations

import numpy as np

from vmcu.errors import UnsupportedOpError, VerifyError
from vmcu.frontend.tflite import NUMPY_DTYPES
from vmcu.ir.graph import NO_TENSOR, Graph
from vmcu.ir.params import op_params
from vmcu.reference.kernels import REFERENCE_KERNELS


def run_reference(graph: Graph, inputs: list[np.ndarray]) -> dict[int, np.ndarray]:
    """Run every op in order; return each non-constant tensor's value by index (inputs included)."""
    if len(inputs) != len(graph.inputs):
        raise VerifyError(f"{graph.name}: {len(inputs)} inputs given, the model has {len(graph.inputs)}")
    values: dict[int, np.ndarray] = {}
    for idx, x in zip(graph.inputs, inputs, strict=True):
        t = graph.tensors[idx]
        x = np.asarray(x)
        if x.size != t.size:
            raise VerifyError(f"{graph.name}: input '{t.name}' needs {t.size} elements, got {x.size}")
        values[idx] = x.astype(NUMPY_DTYPES[t.dtype]).reshape(t.shape)
    for op in graph.ops:
        kernel = REFERENCE_KERNELS.get(op.type)
        if kernel is None:
            raise UnsupportedOpError(f"op {op.index}: operator {op.type} is not supported")
        args = [None if i == NO_TENSOR else
                graph.tensors[i].data if graph.tensors[i].is_const else values[i] for i in op.inputs]
        out = graph.tensors[op.outputs[0]]
        result = kernel(op_params(graph, op), args)
        values[out.index] = np.asarray(result, dtype=NUMPY_DTYPES[out.dtype]).reshape(out.shape)
    return values


def random_inputs(graph: Graph, n: int, seed: int) -> list[list[np.ndarray]]:
    """`n` input sets: integers uniform over their dtype's range; a float32 input uniform over the
    real range its consuming QUANTIZE can represent (so the quantized values cover all of int8)."""
    rng = np.random.default_rng(seed)
    consumers = graph.consumers()
    sets = []
    for _ in range(n):
        xs = []
        for idx in graph.inputs:
            t = graph.tensors[idx]
            if t.dtype == "float32":
                lo, hi = _float_range(graph, idx, consumers)
                xs.append(rng.uniform(lo, hi, t.shape).astype(np.float32))
            else:
                dtype = NUMPY_DTYPES[t.dtype]
                info = np.iinfo(dtype)
                xs.append(rng.integers(info.min, info.max, t.shape, endpoint=True, dtype=dtype))
        sets.append(xs)
    return sets


def _float_range(graph: Graph, idx: int, consumers: dict[int, list[int]]) -> tuple[float, float]:
    """Real range of the int8/int16 QUANTIZE reading a float input; [-1, 1] if there is none."""
    for op_index in consumers.get(idx, []):
        op = graph.ops[op_index]
        out = graph.tensors[op.outputs[0]]
        if op.type == "QUANTIZE" and out.quant is not None and out.dtype in ("int8", "int16"):
            info = np.iinfo(NUMPY_DTYPES[out.dtype])
            scale, zp = out.quant.scale[0], out.quant.zero_point[0]
            return scale * (info.min - zp), scale * (info.max - zp)
    return -1.0, 1.0
