"""What vmcu can compile: one small function per constraint, whose docstring is the message users read.

`check_supported` runs every constraint on every op and raises one error naming all offending ops,
so a user learns everything that blocks a model in a single run.
"""

from __future__ import annotations

from collections.abc import Callable

from vmcu.errors import ModelError, UnsupportedOpError
from vmcu.ir.graph import NO_TENSOR, Graph, Op

SUPPORTED_OPS = (
    "CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "ADD", "MUL", "AVERAGE_POOL_2D", "MAX_POOL_2D",
    "MEAN", "PAD", "RESHAPE", "SOFTMAX", "LOGISTIC", "QUANTIZE", "DEQUANTIZE", "TRANSPOSE", "CONCATENATION",
)
FLOAT_BOUNDARY_OPS = ("QUANTIZE", "DEQUANTIZE")
WEIGHTED_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")


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


CONSTRAINTS: tuple[Callable[[Graph, Op], bool], ...] = (
    op_type_supported, single_output, activations_int8, weights_int8, fused_activation_supported,
    fully_connected_dense, shape_operands_constant,
)


def unsupported_reasons(graph: Graph, op: Op) -> list[str]:
    """The messages of every constraint the op violates (empty when the op is supported)."""
    if not op_type_supported(graph, op):
        return [op_type_supported.__doc__ or ""]
    return [(c.__doc__ or c.__name__) for c in CONSTRAINTS if not c(graph, op)]


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
