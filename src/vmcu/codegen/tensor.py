"""Code for tensor-level plans: every tensor at its fixed arena offset, one kernel call per op."""

from __future__ import annotations

from vmcu.codegen.program import Body, ConstTable, arena_ptr
from vmcu.ir.graph import NO_TENSOR, Graph, Tensor
from vmcu.ir.params import DepthwiseConv2DParams, op_params
from vmcu.kernels import kernel_binding
from vmcu.kernels.cparams import KernelBinding, c_definition, inplace_depthwise_binding
from vmcu.plan.plan import MemoryPlan
from vmcu.plan.tensor import inplace_ops


def tensor_body(graph: Graph, plan: MemoryPlan, variant: str) -> Body:
    """Kernel calls in the plan's order; an aliased RESHAPE output needs no call at all, an aliased
    depthwise conv calls the in-place kernel on the bytes it shares with its input, and an aliased
    pointwise conv or ADD the ordinary kernel with its output at its input's offset."""
    offsets = plan.offsets()
    aliases = dict(plan.aliases)
    inplace = inplace_ops(graph, plan)
    bindings: dict[int, KernelBinding] = {}
    for i in plan.order:
        params = op_params(graph, graph.ops[i])
        if i in inplace:
            assert isinstance(params, DepthwiseConv2DParams)
            bindings[i] = inplace_depthwise_binding(params, variant)
        elif graph.ops[i].type != "RESHAPE" or graph.ops[i].outputs[0] not in aliases:
            bindings[i] = kernel_binding(graph.ops[i].type, params, variant)
    scratch = max((b.scratch_bytes for b in bindings.values()), default=0)
    constants = ConstTable()
    body = Body(strategy=plan.strategy, definitions=(), statements=(), constants=constants,
                plan_bytes=plan.peak_bytes, scratch_bytes=scratch, io_offsets=offsets, order=plan.order)
    definitions: list[str] = []
    statements: list[str] = []
    for op_index in plan.order:
        op = graph.ops[op_index]
        if op_index not in bindings:
            statements.append(f"    /* op {op_index} {op.type}: output aliases its input, nothing to do */\n")
            continue
        b = bindings[op_index]
        pname = f"op{op_index}_params"
        definitions.append(c_definition(b, pname))
        args = [_arg(graph, op.inputs, op.outputs, role, offsets, constants,
                     body.scratch_offset if b.scratch_bytes else None, op_index) for role in b.args]
        if "inputs" in b.args:
            ptrs = ", ".join(_tensor_ptr(graph.tensors[i], offsets, constants, const=True) for i in op.inputs)
            statements.append(f"    vmcu_mark({op_index});\n    {{\n"
                              f"        const int8_t *const op{op_index}_inputs[] = {{{ptrs}}};\n"
                              f"        {b.symbol}(&{pname}, {', '.join(args)});\n    }}\n")
        else:
            statements.append(f"    vmcu_mark({op_index});\n    {b.symbol}(&{pname}, {', '.join(args)});\n")
    return Body(strategy=plan.strategy, definitions=tuple(definitions), statements=tuple(statements),
                constants=constants, plan_bytes=plan.peak_bytes, scratch_bytes=scratch, io_offsets=offsets,
                order=plan.order)


def _arg(graph: Graph, inputs: tuple[int, ...], outputs: tuple[int, ...], role: str, offsets: dict[int, int],
         constants: ConstTable, scratch_offset: int | None, op_index: int) -> str:
    if role == "output":
        return _tensor_ptr(graph.tensors[outputs[0]], offsets, constants, const=False)
    if role == "scratch":
        return "NULL" if scratch_offset is None else f"ARENA + {scratch_offset}"
    if role == "inputs":
        return f"op{op_index}_inputs"
    n = int(role.removeprefix("input"))
    if n >= len(inputs) or inputs[n] == NO_TENSOR:
        return "NULL"
    return _tensor_ptr(graph.tensors[inputs[n]], offsets, constants, const=True)


def _tensor_ptr(t: Tensor, offsets: dict[int, int], constants: ConstTable, *, const: bool) -> str:
    """The C expression for a tensor's data: a flash array for constants, else its arena address."""
    if t.is_const:
        return constants.ref(t)
    return arena_ptr(t, offsets[t.index], const=const)


