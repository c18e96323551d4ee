"""Code for segment plans (vMCU): every activation lives in one circular pool and each op runs its segment
kernel (kernels/seg, vmcu_seg.h) on views of it.

The arena is the pool, then the plan's workspace, then kernel scratch:

    ARENA[0, pool_bytes)                          the circular pool; tensor bases are the plan's
    ARENA[pool_bytes, pool_bytes + workspace)     `stage`: the output unit a kernel builds before storing it
    ARENA[scratch_offset, + scratch_bytes)        4-byte aligned: DSP column buffers, bounce pixels or rows,
                                                  and a `stage` larger than the workspace, if any

so arena_bytes = pool_bytes + workspace_bytes (+ alignment and scratch). A kernel's optional stage (a faster
path) is given only where it adds no byte to that (segbind.arena_scratch_bytes).

The generated API hands graph inputs and outputs out as flat arrays, but the planner may place one across
the pool end (it does on MLPerf Tiny AD). Rather than constrain the placement (which costs pool bytes),
`<model>_run()` then rotates the pool in place (vmcu_seg_rotate, three reversals, no extra memory): inputs
are written where a rotation by k_in makes them all contiguous and rotated to their planned bases before
the first op; after the last op the pool is rotated by k_out so that the outputs are. A rotation that makes
every tensor of a set contiguous puts one of them at offset 0, so trying those finds one when one exists.
"""

from __future__ import annotations

from dataclasses import dataclass

from vmcu.codegen.program import SCRATCH_ALIGN, Body, ConstTable
from vmcu.errors import BuildError
from vmcu.ir.graph import NO_TENSOR, Graph
from vmcu.kernels.segbind import SegBinding, arena_scratch_bytes, segment_binding
from vmcu.plan.segment import SegmentPlan, SegmentStep

PREAMBLE = """#include "vmcu_seg.h"

/* Tensors of the circular pool ARENA[0, POOL_BYTES) as segment-kernel views (vmcu_seg_src/dst), and flat
 * constants (vmcu_seg_flat), initialised at file scope: views built in the run function would each take a
 * stack slot of their own. */
#define POOL_BYTES {pool}
#define POOL_VIEW(base) {{ARENA + (base), ARENA, POOL_BYTES - (base)}}
#define FLAT_VIEW(data) {{(data), (data), INT32_MAX}}

"""


@dataclass(frozen=True)
class _Arena:
    """Where the working buffers start: the workspace right after the pool, scratch 4-byte aligned."""

    pool: int
    workspace: int
    scratch_offset: int

    def stage(self, b: SegBinding) -> str:
        """The plan's workspace when the stage fits it, else the bytes after the kernel's scratch."""
        if not b.stage_bytes:
            return "NULL"
        return f"ARENA + {self.pool if b.stage_bytes <= self.workspace else self.scratch_offset + b.scratch_bytes}"


def _bindings(g: Graph, splan: SegmentPlan, variant: str) -> tuple[int, dict[int, SegBinding]]:
    """The kernel scratch of the plan's calls and each call's binding, by op (an aliased RESHAPE has none)."""
    aliases = dict(splan.plan.aliases)
    calls = [s for s in splan.steps if s.output not in aliases]
    scratch, kept = arena_scratch_bytes([segment_binding(g, g.ops[s.op], s, variant) for s in calls],
                                        splan.workspace_bytes)
    return scratch, {s.op: b for s, b in zip(calls, kept, strict=True)}


def _scratch_offset(plan_bytes: int, scratch: int) -> int:
    return -(-plan_bytes // SCRATCH_ALIGN) * SCRATCH_ALIGN if scratch else plan_bytes


def segment_arena_bytes(graph: Graph, splan: SegmentPlan, variant: str) -> int:
    """The arena of the program `segment_body` makes of the plan with `variant`'s kernels: pool, workspace
    and kernel scratch (what fuse="auto" weighs when it knows the kernels)."""
    scratch, _ = _bindings(splan.step_graph(graph), splan, variant)
    return _scratch_offset(splan.pool_bytes + splan.workspace_bytes, scratch) + scratch


def segment_body(graph: Graph, splan: SegmentPlan, variant: str) -> Body:
    """One seg-kernel call per step in the plan's order; an aliased RESHAPE (same base) needs none."""
    g = splan.step_graph(graph)
    bases = splan.plan.offsets()
    pool, workspace = splan.pool_bytes, splan.workspace_bytes
    k_in = _flat_shift(g, g.inputs, bases, pool)
    k_out = -_flat_shift(g, g.outputs, bases, pool) % pool
    scratch, bindings = _bindings(g, splan, variant)
    plan_bytes = pool + workspace
    arena = _Arena(pool, workspace, _scratch_offset(plan_bytes, scratch))
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
        views, statement = _step(g, step, b, arena, constants)
        definitions.append(b.definition(f"op{step.op}_params") + views)
        statements.append(statement)
    if k_out:
        statements.append(f"    vmcu_mark(-1); /* the rotation is no op's work */\n"
                          f"    vmcu_seg_rotate(ARENA, POOL_BYTES, {k_out}); /* outputs made contiguous */\n")
    io = {t: (bases[t] + k_in) % pool for t in g.inputs} | {t: (bases[t] - k_out) % pool for t in g.outputs}
    return Body(strategy="segment", definitions=tuple(definitions), statements=tuple(statements),
                constants=constants, plan_bytes=plan_bytes, scratch_bytes=scratch, io_offsets=io,
                order=splan.plan.order, op_graph=g)


def _flat_shift(g: Graph, tensors: tuple[int, ...], bases: dict[int, int], pool: int) -> int:
    """A k such that every tensor lies contiguously at (base + k) mod pool: 0 if none wraps, else one that
    puts some tensor at offset 0."""
    for k in [0] + [-bases[t] % pool for t in tensors]:
        if all((bases[t] + k) % pool + g.tensors[t].nbytes <= pool for t in tensors):
            return k
    raise BuildError(f"{g.name}: no rotation of the segment pool makes every graph input (or output) contiguous")


def _step(g: Graph, step: SegmentStep, b: SegBinding, arena: _Arena, constants: ConstTable) -> tuple[str, str]:
    """The file-scope views of one step and the statement that runs its kernel on them."""
    name = f"op{step.op}"
    views, args = [], []
    for role in b.args:
        if role == "output":
            views.append(f"static const vmcu_seg_dst_t {name}_output = POOL_VIEW({step.output_base});\n")
            args.append(f"{name}_output")
        elif role == "stage":
            args.append(arena.stage(b))
        elif role == "scratch":
            args.append(f"ARENA + {arena.scratch_offset}" if b.scratch_bytes else "NULL")
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
