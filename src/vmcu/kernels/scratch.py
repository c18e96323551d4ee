"""Scratch memory of the C kernels, in bytes: the code generator reserves exactly this in the arena.

Scratch must start at a 4-byte aligned address (the arm kernels load it with LDRD and store words).
It is also each kernel's workspace for segment plans: a kernel reads all the input one output unit (a
pixel, an FC row, a MEAN row, a softmax row) depends on before it stores any byte of that unit, staging
either the inputs or the outputs here. Sizes mirror the layouts described at the top of each C file.
"""

from __future__ import annotations

from vmcu.ir import params as P

VARIANTS = ("ref", "arm")
ACC_CHUNK = 64  # VMCU_ACC_CHUNK in arm/vmcu_arm.h
SCRATCH_MAX = 2304  # VMCU_SCRATCH_MAX in arm/vmcu_arm.h
DW_NARROW = 8  # VMCU_DW_NARROW in arm/depthwise_conv_2d.c
DW_IMAGE_MAX = 1024  # VMCU_DW_IMAGE_MAX in arm/depthwise_conv_2d.c


def _round4(n: int) -> int:
    return (n + 3) // 4 * 4


def scratch_bytes(op_type: str, params: P.OpParams, variant: str = "ref") -> int:
    """Bytes of `scratch` the kernel for this op needs in the given variant (0 when none)."""
    if variant not in VARIANTS:
        raise ValueError(f"kernel variant must be one of {VARIANTS}, not {variant!r}")
    if variant == "arm" and isinstance(params, P.Conv2DParams):
        k, groups, px, rest = _conv_arm_column(params)
        out_c = params.output_shape[3]
        blocks = 8 * px * groups + rest
        if unit_pointwise(params) and k in (8, 16) and out_c % 2 == 0 and (2 * k + 16) * out_c <= SCRATCH_MAX:
            # or one record a channel (its weights unpacked, four constants) for the one-pixel kernels
            blocks = max(blocks, (2 * k + 16) * out_c)
        return blocks
    if variant == "arm" and isinstance(params, P.DepthwiseConv2DParams):
        return depthwise_arm_scratch_bytes(params)
    if variant == "arm" and isinstance(params, P.FullyConnectedParams):
        groups, tail = divmod(params.accum_depth, 4)
        return 8 * groups + _round4(2 * tail) + 4 * min(params.output_depth, ACC_CHUNK)
    return _staged_unit_bytes(params)


def unit_pointwise(params: P.Conv2DParams) -> bool:
    """A 1x1, stride-1, unpadded conv: output pixel t reads input pixel t alone."""
    _, fh, fw, _ = params.filter_shape
    return (fh, fw, params.pad_top, params.pad_left, params.stride_h, params.stride_w) == (1, 1, 0, 0, 1, 1)


def _conv_arm_column(params: P.Conv2DParams) -> tuple[int, int, int, int]:
    """The arm conv kernel's K, its groups of four, the pixels of a block (four, or two when four's int16
    columns take more than SCRATCH_MAX) and the bytes after the column: the int8 staging row when C_in % 4,
    a padded copy of the last weight row when K % 4, and the channel table (a word a channel and two more)."""
    _, fh, fw, cin = params.filter_shape
    k = fh * fw * cin
    groups = (k + 3) // 4
    rest = (4 * groups if cin % 4 else 0) + (4 * groups if k % 4 else 0) + 4 * (params.output_shape[3] + 2)
    return k, groups, 4 if 32 * groups + rest <= SCRATCH_MAX else 2, rest


def conv_views_arm_scratch_bytes(params: P.Conv2DParams, fields_straddle: bool) -> int:
    """vmcu_conv_2d_views_s8 (arm/conv_2d.c, the segment conv's pixels that the tensor kernel cannot take as flat
    runs): the tensor kernel's column, staging row, padded last weight row and channel table, and, when a
    receptive field may straddle the pool end and C_in % 4 == 0 (no staging row otherwise), a staging row
    after the table to gather it. A pixel whose output straddles the end goes through the plan's stage."""
    _, groups, px, rest = _conv_arm_column(params)
    return 8 * px * groups + rest + (4 * groups if fields_straddle and params.input_shape[3] % 4 == 0 else 0)


def depthwise_arm_scratch_bytes(params: P.DepthwiseConv2DParams, input_wraps: bool = False,
                                grouped: bool = False) -> int:
    """The arm depthwise kernel (arm/depthwise_conv_2d.c), on flat tensors or, for a segment plan, on views of
    the pool (`input_wraps`: the input straddles the pool end; `grouped`: the placement lets channel groups
    run one after another, which keeps a single record). Without `grouped`, enough for the row-by-row pass
    an overlapping output may need."""
    _, out_w, out_c = params.output_shape[1:]
    groups = out_c // 4
    staging, record = _depthwise_arm_parts(params, input_wraps)
    # the staging, the staged output row, and every group's record when they all fit in SCRATCH_MAX (row
    # by row), else one
    fixed = staging + _round4(out_w * out_c)
    return fixed + record * (groups if not grouped and fixed + record * groups <= SCRATCH_MAX else 1)


def _depthwise_arm_parts(params: P.DepthwiseConv2DParams, input_wraps: bool,
                         whole_image: bool = False) -> tuple[int, int]:
    """The arm depthwise kernel's staging (a staged window, the staged tap rows or whole padded image of
    narrow outputs, rows of fewer than DW_NARROW pixels, or of depth multipliers above 1, else of a band of
    rows across the pool end) and one group's record (its starts, unpacked weights and constants).
    `whole_image`: one pass over the image and no more (the in-place kernel), which needs only the padded
    image or, when that does not fit in the DW_IMAGE_MAX bytes reserved otherwise, the tap rows."""
    out_h, out_w = params.output_shape[1:3]
    _, fh, fw, _ = params.filter_shape
    padded_w = (out_w - 1) * params.stride_w + (fw - 1) * params.dilation_w + 1
    staged = out_w < DW_NARROW or params.depth_multiplier > 1
    rows = max(DW_IMAGE_MAX // 4, fh * padded_w) if staged else fh * padded_w if input_wraps else 0
    if staged and whole_image:
        image = ((out_h - 1) * params.stride_h + (fh - 1) * params.dilation_h + 1) * padded_w
        rows = image if image <= rows else fh * padded_w
    return 4 * fh * fw + 4 * rows, 4 * (16 + 2 * fh * fw)


def inplace_depthwise_scratch_bytes(params: P.DepthwiseConv2DParams, variant: str = "ref") -> int:
    """vmcu_depthwise_conv_2d_inplace_s8: the portable kernel's one output channel plane, Ho * Wo bytes; the
    arm kernel's plane of four channels, Ho * Wo * 4 bytes, then the DSP kernel's staging and one record
    (vmcu_depthwise_conv_2d_plane_s8 in arm/depthwise_conv_2d.c)."""
    if variant not in VARIANTS:
        raise ValueError(f"kernel variant must be one of {VARIANTS}, not {variant!r}")
    plane = params.output_shape[1] * params.output_shape[2]
    if variant == "ref":
        return _round4(plane)
    return 4 * plane + sum(_depthwise_arm_parts(params, input_wraps=False, whole_image=True))


def _staged_unit_bytes(params: P.OpParams) -> int:
    """The portable kernels' workspace: one output unit (or, for row kernels, one input row)."""
    if isinstance(params, P.Conv2DParams | P.DepthwiseConv2DParams | P.Pool2DParams):
        return params.output_shape[3]
    if isinstance(params, P.FullyConnectedParams):
        return params.output_depth
    if isinstance(params, P.MeanParams):
        return params.output_shape[-1] if params.output_shape else 1
    if isinstance(params, P.SoftmaxParams) and params.output_dtype == "int16":
        return params.depth
    if isinstance(params, P.DequantizeParams):
        return params.shape[-1] if params.shape else 1
    return 0
