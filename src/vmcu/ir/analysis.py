"""Static figures of a graph: MACs, weight bytes and activation bytes per op."""

from __future__ import annotations

from vmcu.ir.graph import NO_TENSOR, Graph, Op


def op_macs(graph: Graph, op: Op) -> int:
    """Multiply-accumulates of conv, depthwise and fully-connected ops (0 for the rest, as MODELS.md counts);
    a fused block counts the MACs of the ops it replaces."""
    if "block" in op.options:
        return sum(op_macs(graph, sub) for sub in op.options["block"].ops)
    if op.type not in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"):
        return 0
    out = graph.tensors[op.outputs[0]]
    weights = graph.tensors[op.inputs[1]]
    if op.type == "CONV_2D":
        _, kh, kw, cin = weights.shape
        return out.size * kh * kw * cin
    if op.type == "DEPTHWISE_CONV_2D":
        _, kh, kw, _ = weights.shape
        return out.size * kh * kw
    return out.size * weights.shape[-1]


def graph_macs(graph: Graph) -> int:
    return sum(op_macs(graph, op) for op in graph.ops)


def weight_bytes(graph: Graph) -> int:
    """Bytes of constant tensors that ops read (weights, biases, shape operands): what goes to flash."""
    used = {i for op in graph.ops for i in op.inputs if i != NO_TENSOR}
    return sum(t.nbytes for t in graph.tensors if t.is_const and t.index in used)


def op_activation_bytes(graph: Graph, op: Op) -> int:
    """Bytes of the op's non-constant inputs and outputs: what a tensor-level plan needs at this op."""
    seen = set()
    total = 0
    for i in op.inputs + op.outputs:
        if i != NO_TENSOR and i not in seen and not graph.tensors[i].is_const:
            seen.add(i)
            total += graph.tensors[i].nbytes
    return total
