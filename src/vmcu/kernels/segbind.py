"""How to call a segment kernel (kernels/seg/*.c, vmcu_seg.h) for one step of a segment plan.

A segment kernel takes the params struct of its tensor-level twin (the same `KernelBinding` values), its
activation tensors as views of the circular pool and two working buffers outside the pool: `stage`, one
output unit the kernel builds before storing it, and `scratch` (4-byte aligned: what the tensor kernel the
DSP segment kernels call needs, their own column buffers, a bounce pixel or row for input that straddles
the wrap). Both are sized here from the step's placement, exactly: a buffer that only a straddling pixel or
unit needs is reserved only when one does.
"""

from __future__ import annotations

from dataclasses import dataclass

from vmcu.errors import UnsupportedOpError
from vmcu.ir import params as P
from vmcu.ir.fusion import FUSED_OP
from vmcu.ir.graph import Graph, Op
from vmcu.ir.params import op_params
from vmcu.kernels.cparams import KernelBinding, c_definition, kernel_binding
from vmcu.kernels.scratch import (
    conv_views_arm_scratch_bytes,
    depthwise_arm_scratch_bytes,
    scratch_bytes,
    unit_pointwise,
)
from vmcu.plan.segment import SegmentStep
from vmcu.plan.segment_gap import unit_bytes

ACC_CHUNK = 64  # VMCU_ACC_CHUNK in arm/vmcu_arm.h: accumulators the DSP kernels buffer

# Pointer arguments after `&params`, by seg kernel: "view:N" input N as a view of the pool (a constant as a
# flat view), "ptr:N" constant input N as a plain pointer (NULL when absent), "views" an array of the views
# of all inputs, "output" the output's view, "stage" and "scratch" the working buffers (NULL when empty).
_WINDOWED = ("view:0", "ptr:1", "ptr:2", "output", "stage", "scratch")
ARGS: dict[str, tuple[str, ...]] = {
    "vmcu_seg_conv_2d_s8": _WINDOWED,
    "vmcu_seg_depthwise_conv_2d_s8": _WINDOWED,
    "vmcu_seg_fully_connected_s8": _WINDOWED,
    "vmcu_seg_average_pool_2d_s8": ("view:0", "output", "stage", "scratch"),
    "vmcu_seg_max_pool_2d_s8": ("view:0", "output", "stage", "scratch"),
    "vmcu_seg_add_s8": ("view:0", "view:1", "output"),
    "vmcu_seg_mul_s8": ("view:0", "view:1", "output"),
    "vmcu_seg_logistic_s8": ("view:0", "output"),
    "vmcu_seg_quantize_s8": ("view:0", "output"),
    "vmcu_seg_quantize_f32_s8": ("view:0", "output"),
    "vmcu_seg_dequantize_s8": ("view:0", "output", "stage"),
    "vmcu_seg_softmax_s8": ("view:0", "output", "stage", "scratch"),
    "vmcu_seg_softmax_s8_s16": ("view:0", "output", "stage", "scratch"),
    "vmcu_seg_mean_s8": ("view:0", "output", "stage"),
    "vmcu_seg_pad_s8": ("view:0", "output", "stage"),
    "vmcu_seg_reshape_s8": ("view:0", "output"),
    "vmcu_seg_transpose_s8": ("view:0", "output"),
    "vmcu_seg_concatenation_s8": ("views", "output"),
}
_DSP = ("vmcu_seg_conv_2d_s8", "vmcu_seg_depthwise_conv_2d_s8", "vmcu_seg_fully_connected_s8")


@dataclass(frozen=True)
class SegBinding:
    """One segment-kernel call: `params` is the tensor-level binding whose struct and values it passes,
    `args` the roles above, `stage_bytes` and `scratch_bytes` the buffers it needs (0: pass NULL)."""

    symbol: str
    params: KernelBinding
    args: tuple[str, ...]
    stage_bytes: int
    scratch_bytes: int

    def needs(self, workspace: int) -> int:
        """Bytes of arena scratch the call takes: its scratch, then its stage if the workspace cannot hold it."""
        return self.scratch_bytes + (self.stage_bytes if self.stage_bytes > workspace else 0)

    def definition(self, name: str) -> str:
        """C source defining the params struct `name` that the call passes as `&name`."""
        return c_definition(self.params, name)


def _round4(n: int) -> int:
    return (n + 3) // 4 * 4


def straddles(base: int, nbytes: int, pool: int, run: int) -> bool:
    """Whether a run of `run` bytes at a multiple of `run` in a tensor at `base` straddles the pool end:
    the tensor wraps, and its wrap offset pool - base is not a multiple of the run."""
    wrap = pool - base
    return 0 < wrap < nbytes and wrap % run != 0


def segment_binding(graph: Graph, op: Op, step: SegmentStep, variant: str) -> SegBinding:
    """The seg kernel, arguments and buffer sizes of `op` run as `step` of a segment plan."""
    if op.type == FUSED_OP:
        from vmcu.kernels.fusedbind import fused_binding  # it builds on SegBinding: imported here, not above

        return fused_binding(graph, op, step, variant)
    params = op_params(graph, op)
    tensor = kernel_binding(op.type, params, variant)
    symbol = "vmcu_seg_" + tensor.symbol.removeprefix("vmcu_")
    if symbol not in ARGS:
        raise UnsupportedOpError(f"op {op.index} {op.type} has no segment kernel")
    out = graph.tensors[step.output]
    unit = unit_bytes(graph, op)
    stage = _stage_bytes(symbol, variant, step, params, unit, out.nbytes)
    scratch = _scratch_bytes(graph, symbol, params, variant, step)
    return SegBinding(symbol, tensor, ARGS[symbol], stage, scratch)


def _stage_bytes(symbol: str, variant: str, step: SegmentStep, params: P.OpParams, unit: int, out_bytes: int
                 ) -> int:
    """One output unit for the kernels that build units before storing them. The DSP conv and FC store in
    place unless a unit straddles the wrap; the DSP depthwise needs none (it builds an output row that
    straddles the wrap in its scratch); DEQUANTIZE stages only when its output overlaps its input (the
    plan's workspace for the step)."""
    if "stage" not in ARGS[symbol] or (variant == "arm" and isinstance(params, P.DepthwiseConv2DParams)):
        return 0
    if variant == "arm" and symbol in _DSP:
        return unit if straddles(step.output_base, out_bytes, step.pool_bytes, unit) else 0
    if symbol == "vmcu_seg_dequantize_s8":
        return unit if step.workspace_bytes else 0
    return unit


def _scratch_bytes(graph: Graph, symbol: str, params: P.OpParams, variant: str, step: SegmentStep) -> int:
    """The DSP kernels' column buffers, the pools' int32 accumulators and the bounce buffer of an input
    pixel or row that straddles the wrap. The DSP conv and FC run the tensor kernel on the flat parts of
    their tensors, with that kernel's scratch (vmcu.kernels.scratch), and when one of them wraps also the
    loops for the parts that straddle (the conv kernel on the pool's views, the FC's copy), laid out as in
    their C files; the DSP depthwise runs the tensor kernel on the pool's views, which stages a band of input
    rows that straddles the wrap."""
    inp = graph.tensors[step.inputs[0]]
    base, pool = step.input_bases[0], step.pool_bytes
    if variant == "arm" and isinstance(params, P.DepthwiseConv2DParams):
        out_base, out_bytes = step.output_base, graph.tensors[step.output].nbytes
        return depthwise_arm_scratch_bytes(params, base + inp.nbytes > pool,
                                           _groups_apart(params, base, inp.nbytes, out_base, out_bytes, pool))
    if variant == "arm" and symbol in _DSP:
        tensor = scratch_bytes(graph.ops[step.op].type, params, variant)
        wraps = base + inp.nbytes > pool or step.output_base + graph.tensors[step.output].nbytes > pool
        return max(tensor, _wrap_scratch_bytes(params, _fields_straddle(params, base, inp.nbytes, pool))) if wraps \
            else tensor
    if isinstance(params, P.Conv2DParams):
        cin = params.input_shape[3]
        return cin if straddles(base, inp.nbytes, pool, cin) else 0
    if isinstance(params, P.Pool2DParams):
        return 4 * params.input_shape[3]
    if isinstance(params, P.SoftmaxParams):
        return params.depth if straddles(base, inp.nbytes, pool, params.depth) else 0
    return 0


def _groups_apart(params: P.DepthwiseConv2DParams, in_base: int, in_bytes: int, out_base: int, out_bytes: int,
                  pool: int) -> bool:
    """Whether the DSP depthwise runs channel groups one after another (groups_apart in
    seg/seg_depthwise_conv_2d_arm.c): no output byte lands on an input byte, or, with a depth multiplier of
    1, each one that does lands on one of its own channel."""
    lead = (in_base - out_base) % pool  # the output offset of input byte 0
    c = params.input_shape[3] if params.depth_multiplier == 1 else 0
    return ((lead >= out_bytes or (c > 0 and lead % c == 0))
            and (pool - lead >= in_bytes or (c > 0 and (pool - lead) % c == 0)))


def _fields_straddle(params: P.OpParams, base: int, in_bytes: int, pool: int) -> bool:
    """Whether a conv's receptive field may straddle the pool end: an input pixel does, for a 1x1 stride-1
    unpadded conv (its field is one pixel); for other convs, whenever the input wraps."""
    if not isinstance(params, P.Conv2DParams):
        return False
    if unit_pointwise(params):
        return straddles(base, in_bytes, pool, params.input_shape[3])
    return base + in_bytes > pool


def _wrap_scratch_bytes(params: P.OpParams, fields_straddle: bool) -> int:
    """The scratch of the DSP kernels' loops for the parts that straddle a wrap: the conv's tensor kernel on
    the pool's views (vmcu_conv_2d_views_s8), the FC's row loops (seg/seg_fully_connected_arm.c)."""
    if isinstance(params, P.Conv2DParams):
        return conv_views_arm_scratch_bytes(params, fields_straddle)
    groups, tail = divmod(params.accum_depth, 4)
    return 8 * groups + _round4(2 * tail) + 4 * min(params.output_depth, ACC_CHUNK)
