"""Graph rewrites that keep every result bit-exact and save memory before any planner runs.

`fold_pads` removes a PAD whose padded border only convolutions read: with pad value = zero point, every
border tap contributes (zp + input_offset) * w = 0, exactly as TFLM's kernels skip out-of-bounds taps, so
the PAD's paddings become the convolution's own (padding "EXPLICIT", see vmcu.ir.params) and the padded
tensor, a little larger than its input and live alongside it, is never materialised (TinyEngine does the
same). Pools are left alone: AVERAGE_POOL_2D divides by the count of in-bounds taps and MAX_POOL_2D would
see the pad value, so padding by PAD and pool padding differ.

Rewritten graphs keep the tensor table as it is (a removed PAD's output stays unreferenced), so tensor
indices, and everything that compares tensors by index with TFLM, stay valid; op indices are renumbered.
"""

from __future__ import annotations

from dataclasses import replace

from vmcu.errors import UnsupportedOpError
from vmcu.ir.graph import NO_TENSOR, Graph, Op
from vmcu.ir.params import Conv2DParams, DepthwiseConv2DParams, PadParams, op_params

PAD_OPS = frozenset({"PAD", "PADV2"})
ZERO_PAD_READERS = frozenset({"CONV_2D", "DEPTHWISE_CONV_2D"})


def fold_pads(graph: Graph) -> Graph:
    """The graph with every foldable PAD merged into the convolutions that read it (see module doc)."""
    while True:
        folded = _fold_one(graph)
        if folded is None:
            return graph
        graph = folded


def _fold_one(graph: Graph) -> Graph | None:
    """Fold the last foldable PAD (last first, so a PAD feeding another PAD folds on the next pass)."""
    consumers = graph.consumers()
    for op in reversed(graph.ops):
        readers = _foldable(graph, op, consumers)
        if readers is None:
            continue
        pad = op_params(graph, op)
        assert isinstance(pad, PadParams)
        (top, bottom), (left, right) = pad.paddings[1], pad.paddings[2]
        src, padded = op.inputs[0], op.outputs[0]
        rewritten = {r: _explicit(graph, graph.ops[r], src, padded, top, bottom, left, right) for r in readers}
        kept = [rewritten.get(o.index, o) for o in graph.ops if o.index != op.index]
        ops = tuple(replace(o, index=k) for k, o in enumerate(kept))
        return Graph(graph.name, graph.tensors, ops, graph.inputs, graph.outputs)
    return None


def _foldable(graph: Graph, op: Op, consumers: dict[int, list[int]]) -> list[int] | None:
    """The ops reading a PAD's output, if the PAD can be folded into all of them; else None."""
    if op.type not in PAD_OPS or len(op.outputs) != 1 or not op.inputs:
        return None
    src, padded = op.inputs[0], op.outputs[0]
    readers = consumers.get(padded, [])
    if src == NO_TENSOR or padded in graph.outputs or not readers:
        return None
    a, b = graph.tensors[src], graph.tensors[padded]
    if a.is_const or a.quant is None or a.quant != b.quant or len(a.quant.scale) != 1:
        return None
    try:
        pad = op_params(graph, op)
    except UnsupportedOpError:
        return None
    assert isinstance(pad, PadParams)
    if len(pad.paddings) != 4 or pad.paddings[0] != (0, 0) or pad.paddings[3] != (0, 0):
        return None
    if pad.pad_value != a.quant.zero_point[0]:
        return None
    for r in readers:
        reader = graph.ops[r]
        if reader.type not in ZERO_PAD_READERS or reader.inputs[0] != padded or padded in reader.inputs[1:]:
            return None
    return list(dict.fromkeys(readers))


def _explicit(graph: Graph, op: Op, src: int, padded: int, top: int, bottom: int, left: int,
              right: int) -> Op:
    """A convolution reading `src` directly, its padding the PAD's plus its own, made explicit."""
    p = op_params(graph, op)
    assert isinstance(p, Conv2DParams | DepthwiseConv2DParams)
    options = {**op.options, "padding": "EXPLICIT", "pad_top": p.pad_top + top, "pad_bottom": p.pad_bottom + bottom,
               "pad_left": p.pad_left + left, "pad_right": p.pad_right + right}
    inputs = tuple(src if t == padded else t for t in op.inputs)
    return replace(op, inputs=inputs, options=options)
