"""Scratch memory of the C kernels, in bytes: the code generator reserves exactly this in the arena.

Scratch must start at a 4-byte aligned address (the arm kernels load it with LDRD and store words).
The portable (ref) kernels need none; of the arm kernels, CONV_2D and FULLY_CONNECTED convert inputs to
int16 first (see arm/conv_2d.c and arm/fully_connected.c for the layouts this mirrors).
"""

from __future__ import annotations

from vmcu.ir import params as P

VARIANTS = ("ref", "arm")


def scratch_bytes(op_type: str, params: P.OpParams, variant: str = "ref") -> int:
    """Bytes of `scratch` the kernel for this op needs in the given variant (0 when none)."""
    if variant not in VARIANTS:
        raise ValueError(f"kernel variant must be one of {VARIANTS}, not {variant!r}")
    if variant == "ref":
        return 0
    if isinstance(params, P.Conv2DParams):
        _, fh, fw, cin = params.filter_shape
        k = fh * fw * cin
        groups, tail = divmod(k, 4)
        pointwise = fh == fw == 1 and params.pad_top == params.pad_left == 0
        staged = not pointwise and cin % 4 != 0
        # two int16 columns (16 bytes per group of four, 4 per tail element), then an int8 staging row
        return 16 * groups + 4 * tail + (k if staged else 0)
    if isinstance(params, P.DepthwiseConv2DParams):
        return params.output_shape[3]  # one output pixel, staged
    if isinstance(params, P.FullyConnectedParams):
        groups, tail = divmod(params.accum_depth, 4)
        return 8 * groups + 2 * tail
    return 0
