"""What vmcu can compile: one small function per constraint, whose docstring is the message users read.

`check_supported` runs every constraint on every op and raises one error naming all offending ops,
so a user learns everything that blocks a model in a single run.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from vmcu.errors import ModelError, UnsupportedOpError
from vmcu.ir.graph import NO_TENSOR, Graph, Op
from vmcu.ir.params import op_params

SUPPORTED_OPS = (
    "CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "ADD", "MUL", "AVERAGE_POOL_2D", "MAX_POOL_2D",
    "MEAN", "PAD", "RESHAPE", "SOFTMAX", "LOGISTIC", "QUANTIZE", "DEQUANTIZE", "TRANSPOSE", "CONCATENATION",
)
FLOAT_BOUNDARY_OPS = ("QUANTIZE", "DEQUANTIZE")
WEIGHTED_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")
INT_LIMITS = {"int8": (-128, 127), "uint8": (0, 255), "int16": (-32768, 32767)}


def op_type_supported(graph: Graph, op: Op) -> bool:
    """operator type is not supported"""
    return op.type in SUPPORTED_OPS


def activations_int8(graph: Graph, op: Op) -> bool:
    """activations must be int8 (float32 only at a model's QUANTIZE input or DEQUANTIZE output)"""
    for pos, i in enumerate(op.inputs + op.outputs):
        if i == NO_TENSOR:
            continue
        t = graph.tensors[i]
        if t.is_const:
            continue
        is_input = pos < len(op.inputs)
        float_ok = (op.type == "QUANTIZE" and is_input) or (op.type == "DEQUANTIZE" and not is_input)
        if t.dtype == "float32" and float_ok:
            continue
        if t.dtype != "int8" or t.quant is None:
            return False
    return True


def weights_int8(graph: Graph, op: Op) -> bool:
    """weights must be int8 with zero point 0 and bias int32"""
    if op.type not in WEIGHTED_OPS:
        return True
    w = graph.tensors[op.inputs[1]]
    if w.dtype != "int8" or w.quant is None or any(z != 0 for z in w.quant.zero_point) or not w.is_const:
        return False
    if len(op.inputs) > 2 and op.inputs[2] != NO_TENSOR:
        b = graph.tensors[op.inputs[2]]
        return b.dtype == "int32" and b.is_const
    return True


def fused_activation_supported(graph: Graph, op: Op) -> bool:
    """fused activation must be NONE, RELU, RELU6 or RELU_N1_TO_1"""
    return op.options.get("activation", "NONE") in ("NONE", "RELU", "RELU6", "RELU_N1_TO_1")


def fully_connected_dense(graph: Graph, op: Op) -> bool:
    """fully-connected weights must be in the default (dense) format"""
    return op.type != "FULLY_CONNECTED" or op.options.get("weights_format", 0) == 0


def shape_operands_constant(graph: Graph, op: Op) -> bool:
    """shape, axis, padding and permutation operands must be constant tensors"""
    if op.type not in ("PAD", "MEAN", "TRANSPOSE"):
        return True
    return len(op.inputs) > 1 and graph.tensors[op.inputs[1]].is_const


def single_output(graph: Graph, op: Op) -> bool:
    """operator must have exactly one output"""
    return len(op.outputs) == 1


def quantization_valid(graph: Graph, op: Op) -> bool:
    """scales must be finite and positive, zero points within the dtype, one scale per output channel"""
    for i in op.inputs + op.outputs:
        t = None if i == NO_TENSOR else graph.tensors[i]
        if t is None or t.quant is None:
            continue
        if not all(math.isfinite(s) and s > 0 for s in t.quant.scale):
            return False
        if len(t.quant.zero_point) != len(t.quant.scale):
            return False
        lo, hi = INT_LIMITS.get(t.dtype, (-(2**31), 2**31 - 1))
        if not all(lo <= z <= hi for z in t.quant.zero_point):
            return False
        # TFLM ignores an out-of-range axis (tflm__person_detect's biases have one): use the last dim then.
        axis = t.quant.axis if t.quant.axis < len(t.shape) else len(t.shape) - 1
        if t.quant.per_channel and (not t.shape or t.shape[axis] != len(t.quant.scale)):
            return False
    return True


def shapes_consistent(graph: Graph, op: Op) -> bool:
    """tensor shapes must agree with the operator (channels, spatial sizes, element counts)"""
    ins = [None if i == NO_TENSOR else graph.tensors[i].shape for i in op.inputs] + [None, None]
    out = graph.tensors[op.outputs[0]].shape if op.outputs else None
    if out is None or ins[0] is None:
        return False
    x = ins[0]
    if op.type in ("CONV_2D", "DEPTHWISE_CONV_2D", "AVERAGE_POOL_2D", "MAX_POOL_2D"):
        if len(x) != 4 or len(out) != 4 or x[0] != out[0]:
            return False
        if op.type == "CONV_2D":
            w = ins[1]
            ok = w is not None and len(w) == 4 and w[3] == x[3] and w[0] == out[3]
            kh, kw = (w[1], w[2]) if ok else (0, 0)
        elif op.type == "DEPTHWISE_CONV_2D":
            w = ins[1]
            ok = w is not None and len(w) == 4 and w[3] == out[3] == x[3] * op.options["depth_multiplier"]
            kh, kw = (w[1], w[2]) if ok else (0, 0)
        else:
            ok, kh, kw = x[3] == out[3], op.options["filter_h"], op.options["filter_w"]
        if not ok or (ins[2] is not None and ins[2] != (out[3],)):
            return False
        return (out[1], out[2]) == (
            _out_size(x[1], kh, op.options["stride_h"], op.options.get("dilation_h", 1), op.options["padding"]),
            _out_size(x[2], kw, op.options["stride_w"], op.options.get("dilation_w", 1), op.options["padding"]))
    if op.type == "FULLY_CONNECTED":
        w = ins[1]
        size = math.prod(x)
        return (w is not None and len(w) == 2 and len(out) > 0 and w[1] > 0 and size % w[1] == 0 and out[-1] == w[0]
                and math.prod(out) == size // w[1] * w[0])
    if op.type in ("ADD", "MUL"):
        try:
            return ins[1] is not None and tuple(np.broadcast_shapes(x, ins[1])) == tuple(out)
        except ValueError:
            return False
    if op.type in ("RESHAPE", "SOFTMAX", "LOGISTIC", "QUANTIZE", "DEQUANTIZE", "TRANSPOSE"):
        return math.prod(x) == math.prod(out)
    return True


def _out_size(size: int, k: int, stride: int, dilation: int, padding: str) -> int:
    if stride <= 0 or dilation <= 0 or k <= 0:
        return -1
    if padding == "SAME":
        return (size + stride - 1) // stride
    return (size - (k - 1) * dilation - 1) // stride + 1


CONSTRAINTS: tuple[Callable[[Graph, Op], bool], ...] = (
    op_type_supported, single_output, activations_int8, weights_int8, fused_activation_supported,
    fully_connected_dense, shape_operands_constant, quantization_valid, shapes_consistent,
)


def unsupported_reasons(graph: Graph, op: Op) -> list[str]:
    """The messages of every constraint the op violates (empty when the op is supported).

    Last, the op's integer parameters are derived as code generation will: what TFLM itself would
    reject there (an output scale softmax cannot produce, a multiplier out of range) is reported too.
    """
    if not op_type_supported(graph, op):
        return [op_type_supported.__doc__ or ""]
    reasons = [(c.__doc__ or c.__name__) for c in CONSTRAINTS if not c(graph, op)]
    if not reasons:
        try:
            op_params(graph, op)
        except (UnsupportedOpError, ValueError, OverflowError) as e:
            reasons.append(str(e).split(": ", 1)[-1] if isinstance(e, UnsupportedOpError) else str(e))
    return reasons


def is_float_model(graph: Graph) -> bool:
    """True when the model computes in float: no op has a quantized int8 activation."""
    for op in graph.ops:
        for i in op.inputs + op.outputs:
            if i != NO_TENSOR and not graph.tensors[i].is_const and graph.tensors[i].dtype == "int8":
                return False
    return True


def check_supported(graph: Graph) -> None:
    """Raise one error that names every op vmcu cannot compile, with its index and the reason."""
    if is_float_model(graph):
        raise ModelError(f"{graph.name}: float model (no int8 activations); vmcu compiles int8-quantized "
                         "models: convert with full-integer quantization")
    problems = []
    for op in graph.ops:
        reasons = unsupported_reasons(graph, op)
        if reasons:
            problems.append(f"op {op.index} {op.type} ({'; '.join(reasons)})")
    if problems:
        raise UnsupportedOpError(f"{graph.name}: {len(problems)} unsupported op(s): " + ", ".join(problems))


def supported_ops_markdown() -> str:
    """The user-facing support table, generated from the constraints so docs and code cannot drift."""
    lines = ["| operator |", "|---|"] + [f"| {t} |" for t in SUPPORTED_OPS]
    lines += ["", "Every op must also satisfy:", ""] + [f"- {c.__doc__}" for c in CONSTRAINTS[1:]]
    return "\n".join(lines)
