"""The segment-kernel call of a fused inverted bottleneck (vmcu_seg_fused_ib_s8): its params struct points
at the sub-ops' tensor-level structs, so the C side reuses their layout and the Python side their values."""

from __future__ import annotations

from dataclasses import dataclass

from vmcu.ir.fusion import fused_block
from vmcu.ir.graph import Graph, Op
from vmcu.kernels.cparams import c_definition, kernel_binding
from vmcu.kernels.segbind import SegBinding
from vmcu.plan.fused import FusedIBParams, fused_params, kernel_scratch_bytes
from vmcu.plan.segment import SegmentStep

# The block input as a pool view, then expand, depthwise and project filters and biases from flash.
FUSED_ARGS = ("view:0", "ptr:1", "ptr:2", "ptr:3", "ptr:4", "ptr:5", "ptr:6", "output", "stage", "scratch")


@dataclass(frozen=True, kw_only=True)
class FusedSegBinding(SegBinding):
    """A SegBinding whose definition is the fused struct plus the structs of its sub-ops."""

    fused: FusedIBParams
    kernels: str

    def definition(self, name: str) -> str:
        f = self.fused
        subs = [("expand", "CONV_2D", f.expand), ("depthwise", "DEPTHWISE_CONV_2D", f.depthwise),
                ("project", "CONV_2D", f.project)] + ([("add", "ADD", f.add)] if f.add is not None else [])
        parts = [c_definition(kernel_binding(op_type, params, self.kernels), f"{name}_{sub}")
                 for sub, op_type, params in subs]
        add = f"&{name}_add" if f.add is not None else "NULL"
        parts.append(f"static const vmcu_fused_ib_params_t {name} = {{&{name}_expand, &{name}_depthwise, "
                     f"&{name}_project, {add}, {int(f.residual_first)}, {int(f.cache)}, {f.ring_h}, {f.ring_w}}};\n")
        return "".join(parts)


def fused_binding(graph: Graph, op: Op, step: SegmentStep, kernels: str) -> FusedSegBinding:
    """The call of one FUSED_INVERTED_BOTTLENECK step: the ring and depthwise pixel live in the plan's
    workspace (the kernel's `stage`), the DSP kernel's tables, columns and depthwise row in scratch."""
    fused = fused_params(graph, fused_block(op), op.options["variant"])
    return FusedSegBinding(symbol="vmcu_seg_fused_ib_s8", params=kernel_binding("CONV_2D", fused.project, kernels),
                           args=FUSED_ARGS, stage_bytes=step.workspace_bytes,
                           scratch_bytes=kernel_scratch_bytes(fused, kernels), fused=fused, kernels=kernels)
