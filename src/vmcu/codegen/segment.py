"""Code for segment plans (vMCU): every activation lives in one circular pool and each op runs its segment
kernel (kernels/seg, vmcu_seg.h) on views of it.

The arena is the pool, then the plan's workspace, then kernel scratch:

    ARENA[0, pool_bytes)                          the circular pool; tensor bases are the plan's
    ARENA[pool_bytes, pool_bytes + workspace)     `stage`: the output unit a kernel builds before storing it
    ARENA[scratch_offset, + scratch_bytes)        4-byte aligned: DSP column buffers, bounce pixels or rows,
                                                  and a `stage` larger than the workspace, if any

A call's scratch (and such a stage) goes instead into pool bytes that no tensor holds during its step
when an aligned run of them is long enough (`segment_buffers`; the segment checker replays those bytes as
overwritten). The scratch area holds only the calls that find none, so arena_bytes = pool_bytes +
workspace_bytes whenever every call does.

The generated API hands graph inputs and outputs out as flat arrays, but the planner may place one across
the pool end (it does on MLPerf Tiny AD). Rather than constrain the placement (which costs pool bytes),
`<model>_run()` then rotates the pool in place (vmcu_seg_rotate, three reversals, no extra memory): inputs
are written where a rotation by k_in makes them all contiguous and rotated to their planned bases before
the first op; after the last op the pool is rotated by k_out so that the outputs are. A rotation that makes
every tensor of a set contiguous puts one of them at offset 0, so trying those finds one when one exists.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vmcu.codegen.program import SCRATCH_ALIGN, Body, ConstTable
from vmcu.errors import BuildError, PlanError
from vmcu.ir.graph import NO_TENSOR, Graph
from vmcu.kernels.segbind import SegBinding, segment_binding
from vmcu.plan.segment import SegmentPlan, SegmentStep
from vmcu.plan.segment_check import check_segment_plan

PREAMBLE = """#include "vmcu_seg.h"

/* Tensors of the circular pool ARENA[0, POOL_BYTES) as segment-kernel views (vmcu_seg_src/dst), and flat
 * constants (vmcu_seg_flat), initialised at file scope: views built in the run function would each take a
 * stack slot of their own. */
#define POOL_BYTES {pool}
#define POOL_VIEW(base) {{ARENA + (base), ARENA, POOL_BYTES - (base)}}
#define FLAT_VIEW(data) {{(data), (data), INT32_MAX}}

"""


@dataclass(frozen=True)
class SegmentBuffers:
    """Where each call's kernel buffers go: its scratch, then its stage when the plan's workspace cannot
    hold it. A call whose buffers fit a 4-byte aligned run of pool bytes that no tensor holds during its
    step takes them there (`in_pool`: op -> (offset, bytes)); the others share the scratch area after pool
    and workspace, of `scratch_bytes` (their largest need)."""

    pool: int
    workspace: int
    scratch_offset: int
    scratch_bytes: int
    in_pool: dict[int, tuple[int, int]]

    def scratch(self, op: int) -> int:
        """Arena offset of the op's scratch."""
        return self.in_pool[op][0] if op in self.in_pool else self.scratch_offset

    def stage(self, op: int, b: SegBinding) -> str:
        """The plan's workspace when the stage fits it, else the bytes after the kernel's scratch."""
        if not b.stage_bytes:
            return "NULL"
        return f"ARENA + {self.pool if b.stage_bytes <= self.workspace else self.scratch(op) + b.scratch_bytes}"


def _free_run(used: np.ndarray, need: int) -> int | None:
    """The first SCRATCH_ALIGN-aligned offset with `need` unused bytes from it (no wrap), if any."""
    free = np.concatenate(([False], ~used, [False]))
    edges = np.flatnonzero(free[1:] != free[:-1])
    for start, end in zip(edges[::2], edges[1::2], strict=True):
        at = -(-int(start) // SCRATCH_ALIGN) * SCRATCH_ALIGN
        if at + need <= end:
            return at
    return None


def segment_buffers(graph: Graph, splan: SegmentPlan, variant: str
                    ) -> tuple[SegmentBuffers, dict[int, SegBinding]]:
    """Each call's binding (an aliased RESHAPE has none) and where its buffers go. Buffers in the pool are
    proven by the segment checker, which replays them as garbage (BuildError if it refuses them); with none
    in the pool the plan is as plan_memory checked it."""
    g = splan.step_graph(graph)
    pool, workspace = splan.pool_bytes, splan.workspace_bytes
    aliases = dict(splan.plan.aliases)
    bindings = {s.op: segment_binding(g, g.ops[s.op], s, variant) for s in splan.steps if s.output not in aliases}
    in_pool: dict[int, tuple[int, int]] = {}
    outside = 0
    for position, step in enumerate(splan.steps):
        need = bindings[step.op].needs(workspace) if step.op in bindings else 0
        if not need:
            continue
        used = np.zeros(pool, dtype=bool)
        for p in splan.plan.placements:
            if p.first_use <= position <= p.last_use:
                used[(p.offset + np.arange(p.size_bytes)) % pool] = True
        at = _free_run(used, need)
        if at is None:
            outside = max(outside, need)
        else:
            in_pool[step.op] = (at, need)
    if in_pool:
        try:
            check_segment_plan(graph, splan, in_pool)
        except PlanError as exc:
            raise BuildError(f"kernel scratch placed in the pool: {exc}") from exc
    plan_bytes = pool + workspace
    offset = -(-plan_bytes // SCRATCH_ALIGN) * SCRATCH_ALIGN if outside else plan_bytes
    return SegmentBuffers(pool, workspace, offset, outside, in_pool), bindings


def segment_arena_bytes(graph: Graph, splan: SegmentPlan, variant: str) -> int:
    """The arena of the program `segment_body` makes of the plan with `variant`'s kernels: pool, workspace
    and the kernel buffers that do not fit the pool's free bytes (what fuse="auto" weighs when it knows
    the kernels)."""
    buffers, _ = segment_buffers(graph, splan, variant)
    return buffers.scratch_offset + buffers.scratch_bytes


def segment_body(graph: Graph, splan: SegmentPlan, variant: str) -> Body:
    """One seg-kernel call per step in the plan's order; an aliased RESHAPE (same base) needs none."""
    g = splan.step_graph(graph)
    bases = splan.plan.offsets()
    pool, workspace = splan.pool_bytes, splan.workspace_bytes
    k_in = _flat_shift(g, g.inputs, bases, pool)
    k_out = -_flat_shift(g, g.outputs, bases, pool) % pool
    buffers, bindings = segment_buffers(graph, splan, variant)
    constants = ConstTable()
    definitions = [PREAMBLE.format(pool=pool)]
    statements = []
    if k_in:
        statements.append(f"    vmcu_seg_rotate(ARENA, POOL_BYTES, {k_in}); /* inputs to their planned bases */\n")
    for step in splan.steps:
        if step.op not in bindings:
            statements.append(f"    /* op {step.op} {step.op_type}: output aliases its input, nothing to do */\n")
            continue
        b = bindings[step.op]
        views, statement = _step(g, step, b, buffers, constants)
        definitions.append(b.definition(f"op{step.op}_params") + views)
        statements.append(statement)
    if k_out:
        statements.append(f"    vmcu_mark(-1); /* the rotation is no op's work */\n"
                          f"    vmcu_seg_rotate(ARENA, POOL_BYTES, {k_out}); /* outputs made contiguous */\n")
    io = {t: (bases[t] + k_in) % pool for t in g.inputs} | {t: (bases[t] - k_out) % pool for t in g.outputs}
    return Body(strategy="segment", definitions=tuple(definitions), statements=tuple(statements),
                constants=constants, plan_bytes=pool + workspace, scratch_bytes=buffers.scratch_bytes, io_offsets=io,
                order=splan.plan.order, op_graph=g)


def _flat_shift(g: Graph, tensors: tuple[int, ...], bases: dict[int, int], pool: int) -> int:
    """A k such that every tensor lies contiguously at (base + k) mod pool: 0 if none wraps, else one that
    puts some tensor at offset 0."""
    for k in [0] + [-bases[t] % pool for t in tensors]:
        if all((bases[t] + k) % pool + g.tensors[t].nbytes <= pool for t in tensors):
            return k
    raise BuildError(f"{g.name}: no rotation of the segment pool makes every graph input (or output) contiguous")


def _step(g: Graph, step: SegmentStep, b: SegBinding, buffers: SegmentBuffers, constants: ConstTable
          ) -> tuple[str, str]:
    """The file-scope views of one step and the statement that runs its kernel on them."""
    name = f"op{step.op}"
    views, args = [], []
    for role in b.args:
        if role == "output":
            views.append(f"static const vmcu_seg_dst_t {name}_output = POOL_VIEW({step.output_base});\n")
            args.append(f"{name}_output")
        elif role == "stage":
            args.append(buffers.stage(step.op, b))
        elif role == "scratch":
            args.append(f"ARENA + {buffers.scratch(step.op)}" if b.scratch_bytes else "NULL")
        elif role == "views":
            items = ", ".join(_view(g, t, base, constants) for t, base in zip(step.inputs, step.input_bases,
                                                                               strict=True))
            views.append(f"static const vmcu_seg_src_t {name}_inputs[] = {{{items}}};\n")
            args.append(f"{name}_inputs")
        else:
            kind, n = role.split(":")
            index = int(n)
            if index >= len(step.inputs) or step.inputs[index] == NO_TENSOR:
                args.append("NULL")
            elif kind == "ptr":
                args.append(constants.ref(g.tensors[step.inputs[index]]))
            else:
                view = _view(g, step.inputs[index], step.input_bases[index], constants)
                views.append(f"static const vmcu_seg_src_t {name}_input{index} = {view};\n")
                args.append(f"{name}_input{index}")
    return "".join(views), f"    vmcu_mark({step.op});\n    {b.symbol}(&{name}_params, {', '.join(args)});\n"


def _view(g: Graph, t: int, base: int, constants: ConstTable) -> str:
    """The initializer of a tensor's view: of the pool at its base, or of a constant's flash array."""
    tensor = g.tensors[t]
    return f"FLAT_VIEW({constants.ref(tensor)})" if tensor.is_const else f"POOL_VIEW({base})"
