"""Find the inverted bottlenecks vMCU fuses, and rewrite a graph with each one as a single op.

A fusable block is the chain 1x1 CONV_2D (expand) -> [PAD] -> DEPTHWISE_CONV_2D -> 1x1 CONV_2D (project)
-> [ADD with the block input], int8, batch 1, in which every intermediate tensor has exactly one reader
and is not a graph output: then the fused kernel can compute the intermediates a few pixels at a time
and they never exist in full. The windows of consecutive output pixels must not skip expanded pixels
(depthwise stride x project stride <= kernel), so every expanded pixel up to the last window's is used.
The optional PAD (converters from PyTorch emit explicit PAD + VALID depthwise) is absorbed into the
depthwise padding when it pads only height and width with the zero point, so a padded tap contributes
nothing, exactly like a tap the depthwise skips.

`fuse_graph` replaces each block by one FUSED_OP op placed where its expand conv was (every input of the
block exists by then, and only later ops read its output). The rewritten graph shares the tensors of the
original, so tensor indices and the sub-ops' TFLite parameters stay valid; the op's options hold the
block (its original ops) and the variant of the fused schedule.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from vmcu.ir.graph import NO_TENSOR, Graph, Op
from vmcu.ir.params import op_params

FUSED_OP = "FUSED_INVERTED_BOTTLENECK"
VARIANTS = ("recompute", "cache")


@dataclass(frozen=True)
class FusedBlock:
    """One fusable inverted bottleneck: the original ops (`pad` and `add` None when absent)."""

    expand: Op
    pad: Op | None
    depthwise: Op
    project: Op
    add: Op | None

    @property
    def ops(self) -> tuple[Op, ...]:
        """The block's ops in execution order."""
        return tuple(op for op in (self.expand, self.pad, self.depthwise, self.project, self.add) if op)

    @property
    def input(self) -> int:
        return self.expand.inputs[0]

    @property
    def output(self) -> int:
        return (self.add or self.project).outputs[0]

    def constants(self) -> tuple[int, ...]:
        """Weights and biases of expand, depthwise and project (-1 for an absent bias)."""
        return tuple(t for op in (self.expand, self.depthwise, self.project)
                     for t in (op.inputs[1], op.inputs[2] if len(op.inputs) > 2 else NO_TENSOR))


def _is_pointwise(graph: Graph, op: Op) -> bool:
    """A 1x1 CONV_2D on an int8 activation (its padding is always 0, whatever the padding option)."""
    if op.type != "CONV_2D" or graph.tensors[op.inputs[0]].is_const:
        return False
    _, kh, kw, _ = graph.tensors[op.inputs[1]].shape
    return kh == kw == 1 and all(graph.tensors[t].dtype == "int8" for t in (op.inputs[0], op.outputs[0]))


def _only_reader(graph: Graph, readers: dict[int, list[int]], tensor: int) -> Op | None:
    """The single op reading `tensor`, or None if it has several readers or is a graph output."""
    ops = readers.get(tensor, [])
    if len(ops) != 1 or tensor in graph.outputs:
        return None
    return graph.ops[ops[0]]


def _absorbable_pad(graph: Graph, op: Op, depthwise_input_offset: int) -> bool:
    """A PAD of height and width only, with the zero point the depthwise subtracts."""
    if op.type != "PAD":
        return False
    p = op_params(graph, op)
    return (len(p.paddings) == 4 and p.paddings[0] == (0, 0) and p.paddings[3] == (0, 0)
            and p.pad_value == -depthwise_input_offset)


def _fusable_depthwise(graph: Graph, op: Op) -> bool:
    """Depthwise multiplier 1, no dilation, int8 output."""
    if op.type != "DEPTHWISE_CONV_2D":
        return False
    p = op_params(graph, op)
    return (p.depth_multiplier == 1 and p.dilation_h == p.dilation_w == 1
            and graph.tensors[op.outputs[0]].dtype == "int8")


def _block_at(graph: Graph, expand: Op, readers: dict[int, list[int]]) -> FusedBlock | None:
    """The fusable block starting at `expand`, or None (see the module docstring for the conditions)."""
    x = expand.inputs[0]
    if not _is_pointwise(graph, expand) or graph.tensors[x].shape[0] != 1:
        return None
    nxt = _only_reader(graph, readers, expand.outputs[0])
    pad = None
    if nxt is not None and nxt.type == "PAD":
        pad, nxt = nxt, _only_reader(graph, readers, nxt.outputs[0])
    if nxt is None or not _fusable_depthwise(graph, nxt) or nxt.inputs[0] != (pad or expand).outputs[0]:
        return None
    if pad is not None and not _absorbable_pad(graph, pad, op_params(graph, nxt).input_offset):
        return None
    depthwise = nxt
    project = _only_reader(graph, readers, depthwise.outputs[0])
    if project is None or not _is_pointwise(graph, project) or project.inputs[0] != depthwise.outputs[0]:
        return None
    d, p = op_params(graph, depthwise), op_params(graph, project)
    if d.stride_h * p.stride_h > d.filter_shape[1] or d.stride_w * p.stride_w > d.filter_shape[2]:
        return None
    add = _only_reader(graph, readers, project.outputs[0])
    if add is not None and not (add.type == "ADD" and sorted(add.inputs) == sorted((x, project.outputs[0]))
                                and graph.tensors[x].shape == graph.tensors[add.outputs[0]].shape
                                and graph.tensors[add.outputs[0]].dtype == "int8"):
        add = None
    return FusedBlock(expand, pad, depthwise, project, add)


def find_fusable_blocks(graph: Graph) -> list[FusedBlock]:
    """Every fusable block, in execution order; where two chains share an op (MobileNetV1's conv 1x1 is
    the project of one chain and the expand of the next), the earlier one wins."""
    readers = graph.consumers()
    used: set[int] = set()
    blocks = []
    for op in graph.ops:
        if op.index in used:
            continue
        block = _block_at(graph, op, readers)
        if block is not None and not used & {o.index for o in block.ops}:
            blocks.append(block)
            used.update(o.index for o in block.ops)
    return blocks


def fuse_graph(graph: Graph, blocks: Sequence[FusedBlock], variants: Sequence[str]) -> Graph:
    """`graph` with each block replaced by one FUSED_OP op running the given variant (see VARIANTS)."""
    if len(blocks) != len(variants) or any(v not in VARIANTS for v in variants):
        raise ValueError(f"one variant of {VARIANTS} per block is needed, got {list(variants)}")
    first = {b.expand.index: (b, v) for b, v in zip(blocks, variants, strict=True)}
    absorbed = {op.index for b in blocks for op in b.ops}
    ops: list[Op] = []
    for op in graph.ops:
        if op.index in first:
            block, variant = first[op.index]
            inputs = (block.input,) + block.constants()
            ops.append(Op(len(ops), FUSED_OP, inputs, (block.output,), {"block": block, "variant": variant}))
        elif op.index not in absorbed:
            ops.append(replace(op, index=len(ops)))
    return Graph(graph.name, graph.tensors, tuple(ops), graph.inputs, graph.outputs)


def fused_block(op: Op) -> FusedBlock:
    """The original ops of a FUSED_OP op."""
    return op.options["block"]
