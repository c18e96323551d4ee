"""Derived integer parameters of every supported op: what TFLite Micro computes in its Prepare() step.

These dataclasses are the single source of truth for the NumPy reference executor and the C code
generator: every multiplier, shift, offset, padding and clamp bound is computed here once, exactly as
TFLM's kernels compute it (tensorflow/lite/micro/kernels/*_common.cc), so that both consumers only do
the per-element arithmetic. Weights and biases are not copied here: they stay in the graph's tensors.

Conventions (as in TFLM): `input_offset` is the negated input zero point, `output_offset` the output
zero point; shapes are NHWC 4-tuples for spatial ops; a `shift` is TFLite's signed exponent (positive
means shift left); per-channel tuples have one entry per output channel. Windowed ops take TFLite's
"SAME"/"VALID" padding or "EXPLICIT" pad_top/pad_bottom/pad_left/pad_right options, which the file
format lacks but vmcu.ir.transform.fold_pads writes (TFLM's kernels already take any pad_top/pad_left).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from vmcu.errors import UnsupportedOpError
from vmcu.ir.graph import NO_TENSOR, Graph, Op, Tensor
from vmcu.ir.quant import activation_range, quantize_multiplier, round_half_away

INT_RANGES: dict[str, tuple[int, int]] = {"int8": (-128, 127), "int16": (-32768, 32767)}


@dataclass(frozen=True)
class Conv2DParams:
    """CONV_2D, int8 per-channel (reference_integer_ops::ConvPerChannel). Filter is OHWI."""

    input_shape: tuple[int, int, int, int]
    filter_shape: tuple[int, int, int, int]
    output_shape: tuple[int, int, int, int]
    stride_h: int
    stride_w: int
    dilation_h: int
    dilation_w: int
    pad_top: int
    pad_left: int
    pad_bottom: int
    pad_right: int
    input_offset: int
    output_offset: int
    output_multiplier: tuple[int, ...]
    output_shift: tuple[int, ...]
    activation_min: int
    activation_max: int
    has_bias: bool


@dataclass(frozen=True)
class DepthwiseConv2DParams:
    """DEPTHWISE_CONV_2D, int8 per-channel. Filter is 1HWO; output channel = in_channel * mult + m."""

    input_shape: tuple[int, int, int, int]
    filter_shape: tuple[int, int, int, int]
    output_shape: tuple[int, int, int, int]
    stride_h: int
    stride_w: int
    dilation_h: int
    dilation_w: int
    pad_top: int
    pad_left: int
    pad_bottom: int
    pad_right: int
    depth_multiplier: int
    input_offset: int
    output_offset: int
    output_multiplier: tuple[int, ...]
    output_shift: tuple[int, ...]
    activation_min: int
    activation_max: int
    has_bias: bool


@dataclass(frozen=True)
class FullyConnectedParams:
    """FULLY_CONNECTED, int8: input viewed as [batches, accum_depth], filter [output_depth, accum_depth].

    `output_multiplier`/`output_shift` always have output_depth entries; when `per_channel` is False
    they are all equal (TFLM's per-tensor path) and a C kernel may use entry 0.
    """

    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    batches: int
    accum_depth: int
    output_depth: int
    input_offset: int
    weights_offset: int
    output_offset: int
    per_channel: bool
    output_multiplier: tuple[int, ...]
    output_shift: tuple[int, ...]
    activation_min: int
    activation_max: int
    has_bias: bool


@dataclass(frozen=True)
class AddParams:
    """ADD, int8: both inputs rescaled after `left_shift` (20), summed, requantized.

    Input shapes are right-aligned to the output rank (leading 1s); broadcasting follows NumPy rules.
    """

    input1_shape: tuple[int, ...]
    input2_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    requires_broadcast: bool
    left_shift: int
    input1_offset: int
    input2_offset: int
    output_offset: int
    input1_multiplier: int
    input1_shift: int
    input2_multiplier: int
    input2_shift: int
    output_multiplier: int
    output_shift: int
    activation_min: int
    activation_max: int


@dataclass(frozen=True)
class MulParams:
    """MUL, int8: (in1 + input1_offset) * (in2 + input2_offset) requantized; shapes as in AddParams."""

    input1_shape: tuple[int, ...]
    input2_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    requires_broadcast: bool
    input1_offset: int
    input2_offset: int
    output_offset: int
    output_multiplier: int
    output_shift: int
    activation_min: int
    activation_max: int


@dataclass(frozen=True)
class Pool2DParams:
    """AVERAGE_POOL_2D / MAX_POOL_2D, int8. TFLM averages raw int8 values with a rounded integer
    division by the number of in-bounds taps (no multiplier, no zero point)."""

    input_shape: tuple[int, int, int, int]
    output_shape: tuple[int, int, int, int]
    filter_h: int
    filter_w: int
    stride_h: int
    stride_w: int
    pad_top: int
    pad_left: int
    pad_bottom: int
    pad_right: int
    activation_min: int
    activation_max: int


@dataclass(frozen=True)
class MeanParams:
    """MEAN, int8 (reference_ops::QuantizedMeanOrSumExtraArgs): sum over `axes`, subtract
    input_zero_point * num_elements, MultiplyByQuantizedMultiplier with the count folded into
    `multiplier`/`shift`, add output_zero_point, clamp to int8."""

    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    axes: tuple[int, ...]
    keep_dims: bool
    num_elements: int
    input_zero_point: int
    output_zero_point: int
    multiplier: int
    shift: int


@dataclass(frozen=True)
class SoftmaxParams:
    """SOFTMAX, int8 input, int8 or int16 output (gemmlowp fixed point, 5 integer bits for the diff)."""

    input_shape: tuple[int, ...]
    outer_size: int
    depth: int
    input_multiplier: int
    input_left_shift: int
    diff_min: int
    output_dtype: str


@dataclass(frozen=True)
class LogisticParams:
    """LOGISTIC, int8 (output scale 1/256, zero point -128); input in Q4.27 after rescaling."""

    input_shape: tuple[int, ...]
    input_zero_point: int
    input_range_radius: int
    input_multiplier: int
    input_left_shift: int


@dataclass(frozen=True)
class QuantizeParams:
    """QUANTIZE. From float32: round_half_away(x / output_scale) + output_zero_point, the division in
    float32 (as TFLM does: checked on halfway inputs), then clamp. From an integer type: Requantize with
    requantize_multiplier/shift (0/0 when unused)."""

    shape: tuple[int, ...]
    input_dtype: str
    output_dtype: str
    output_scale: float
    output_zero_point: int
    input_zero_point: int
    requantize_multiplier: int
    requantize_shift: int


@dataclass(frozen=True)
class DequantizeParams:
    """DEQUANTIZE to float32: float(double(scale) * (q - zero_point))."""

    shape: tuple[int, ...]
    input_dtype: str
    scale: float
    zero_point: int


@dataclass(frozen=True)
class PadParams:
    """PAD / PADV2: `paddings` is (before, after) per dimension; padded bytes hold `pad_value`."""

    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    paddings: tuple[tuple[int, int], ...]
    pad_value: int


@dataclass(frozen=True)
class ReshapeParams:
    """RESHAPE / SQUEEZE / EXPAND_DIMS: a byte copy (often elidable)."""

    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    nbytes: int


@dataclass(frozen=True)
class TransposeParams:
    """TRANSPOSE: output dim i is input dim perm[i]."""

    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    perm: tuple[int, ...]


@dataclass(frozen=True)
class ConcatenationParams:
    """CONCATENATION, int8 with equal quantization on all inputs and output: a copy."""

    input_shapes: tuple[tuple[int, ...], ...]
    output_shape: tuple[int, ...]
    axis: int


OpParams = (Conv2DParams | DepthwiseConv2DParams | FullyConnectedParams | AddParams | MulParams
            | Pool2DParams | MeanParams | SoftmaxParams | LogisticParams | QuantizeParams
            | DequantizeParams | PadParams | ReshapeParams | TransposeParams | ConcatenationParams)


def op_params(graph: Graph, op: Op) -> OpParams:
    """Derive an op's integer parameters; UnsupportedOpError for an op type or variant vmcu lacks."""
    fn = PARAM_BUILDERS.get(op.type)
    if fn is None:
        raise UnsupportedOpError(f"op {op.index}: operator {op.type} is not supported")
    return fn(graph, op)


# --- helpers -------------------------------------------------------------------------------------


def _unsupported(op: Op, why: str) -> UnsupportedOpError:
    return UnsupportedOpError(f"op {op.index} {op.type}: {why}")


def _input(graph: Graph, op: Op, i: int) -> Tensor:
    if i >= len(op.inputs) or op.inputs[i] == NO_TENSOR:
        raise _unsupported(op, f"input {i} is missing")
    return graph.tensors[op.inputs[i]]


def _output(graph: Graph, op: Op) -> Tensor:
    return graph.tensors[op.outputs[0]]


def _per_tensor(op: Op, t: Tensor) -> tuple[float, int]:
    """(scale, zero_point) of a per-tensor quantized activation."""
    if t.quant is None or not t.quant.scale:
        raise _unsupported(op, f"tensor {t.index} '{t.name}' has no quantization parameters")
    return t.quant.scale[0], t.quant.zero_point[0]


def _require_dtype(op: Op, t: Tensor, *dtypes: str) -> None:
    if t.dtype not in dtypes:
        raise _unsupported(op, f"tensor {t.index} '{t.name}' is {t.dtype}, expected {' or '.join(dtypes)}")


def _nhwc(op: Op, t: Tensor) -> tuple[int, int, int, int]:
    if len(t.shape) != 4:
        raise _unsupported(op, f"tensor {t.index} '{t.name}' has shape {list(t.shape)}, expected NHWC")
    n, h, w, c = t.shape
    return n, h, w, c


def _const_ints(graph: Graph, op: Op, i: int) -> list[int]:
    t = _input(graph, op, i)
    if t.data is None:
        raise _unsupported(op, f"input {i} '{t.name}' must be a constant")
    return [int(v) for v in np.asarray(t.data).reshape(-1)]


def _act_range(op: Op, out: Tensor) -> tuple[int, int]:
    scale, zp = _per_tensor(op, out)
    lo, hi = INT_RANGES[out.dtype]
    activation = op.options.get("activation", "NONE")
    try:
        return activation_range(activation, scale, zp, lo, hi)
    except ValueError:
        raise _unsupported(op, f"fused activation {activation} is not supported") from None


def _padding(padding: str, stride: int, dilation: int, in_size: int, filter_size: int,
             out_size: int) -> tuple[int, int]:
    """(before, after) padding as TFLite's ComputePaddingWithOffset; `after` includes the odd offset."""
    effective = (filter_size - 1) * dilation + 1
    expected = ((in_size + stride - 1) // stride if padding == "SAME"
                else (in_size + stride - effective) // stride)
    if expected != out_size:
        raise ValueError(f"output size {out_size} does not match {padding} padding (expected {expected})")
    total = max((out_size - 1) * stride + effective - in_size, 0)
    return total // 2, total - total // 2


def _explicit_padding(before: int, after: int, stride: int, dilation: int, in_size: int, filter_size: int,
                      out_size: int) -> tuple[int, int]:
    """(before, after) as given ("EXPLICIT" padding, what vmcu.ir.transform.fold_pads writes), once checked
    against the output size the kernels assume: (in + before + after - effective filter) // stride + 1."""
    effective = (filter_size - 1) * dilation + 1
    expected = (in_size + before + after - effective) // stride + 1
    if before < 0 or after < 0 or expected != out_size:
        raise ValueError(f"output size {out_size} does not match explicit padding ({before}, {after}) "
                         f"(expected {expected})")
    return before, after


def _spatial(op: Op, in_shape: tuple[int, ...], out_shape: tuple[int, ...], kh: int, kw: int,
             dilation: bool = True) -> dict[str, int]:
    o = op.options
    sh, sw = o.get("stride_h", 1), o.get("stride_w", 1)
    dh, dw = (o.get("dilation_h", 1), o.get("dilation_w", 1)) if dilation else (1, 1)
    padding = o.get("padding", "SAME")
    try:
        if padding == "EXPLICIT":
            top, bottom = _explicit_padding(o["pad_top"], o["pad_bottom"], sh, dh, in_shape[1], kh, out_shape[1])
            left, right = _explicit_padding(o["pad_left"], o["pad_right"], sw, dw, in_shape[2], kw, out_shape[2])
        else:
            top, bottom = _padding(padding, sh, dh, in_shape[1], kh, out_shape[1])
            left, right = _padding(padding, sw, dw, in_shape[2], kw, out_shape[2])
    except ValueError as e:
        raise _unsupported(op, str(e)) from None
    fields = {"stride_h": sh, "stride_w": sw, "pad_top": top, "pad_left": left, "pad_bottom": bottom,
              "pad_right": right}
    if dilation:
        fields |= {"dilation_h": dh, "dilation_w": dw}
    return fields


def _channel_multipliers(op: Op, inp: Tensor, filt: Tensor, out: Tensor,
                         channels: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """PopulateConvolutionQuantizationParams: double(in_scale) * double(f_scale[c]) / double(out_scale)."""
    in_scale, _ = _per_tensor(op, inp)
    out_scale, _ = _per_tensor(op, out)
    if filt.quant is None or not filt.quant.scale:
        raise _unsupported(op, "the filter is not quantized")
    scales = filt.quant.scale
    if len(scales) not in (1, channels):
        raise _unsupported(op, f"filter has {len(scales)} scales for {channels} output channels")
    if any(z != 0 for z in filt.quant.zero_point):
        raise _unsupported(op, "filter zero points must be 0")
    pairs = [quantize_multiplier(in_scale * scales[c if len(scales) > 1 else 0] / out_scale)
             for c in range(channels)]
    return tuple(m for m, _ in pairs), tuple(s for _, s in pairs)


def _has_bias(graph: Graph, op: Op) -> bool:
    if len(op.inputs) < 3 or op.inputs[2] == NO_TENSOR:
        return False
    _require_dtype(op, graph.tensors[op.inputs[2]], "int32")
    return True


# --- per-op builders ------------------------------------------------------------------------------


def _conv2d(graph: Graph, op: Op) -> Conv2DParams:
    inp, filt, out = _input(graph, op, 0), _input(graph, op, 1), _output(graph, op)
    for t in (inp, filt, out):
        _require_dtype(op, t, "int8")
    in_shape, f_shape, out_shape = _nhwc(op, inp), _nhwc(op, filt), _nhwc(op, out)
    if f_shape[3] != in_shape[3]:
        raise _unsupported(op, "grouped convolution is not supported")
    mult, shift = _channel_multipliers(op, inp, filt, out, out_shape[3])
    lo, hi = _act_range(op, out)
    return Conv2DParams(
        input_shape=in_shape, filter_shape=f_shape, output_shape=out_shape,
        **_spatial(op, in_shape, out_shape, f_shape[1], f_shape[2]),
        input_offset=-_per_tensor(op, inp)[1], output_offset=_per_tensor(op, out)[1],
        output_multiplier=mult, output_shift=shift, activation_min=lo, activation_max=hi,
        has_bias=_has_bias(graph, op))


def _depthwise(graph: Graph, op: Op) -> DepthwiseConv2DParams:
    inp, filt, out = _input(graph, op, 0), _input(graph, op, 1), _output(graph, op)
    for t in (inp, filt, out):
        _require_dtype(op, t, "int8")
    in_shape, f_shape, out_shape = _nhwc(op, inp), _nhwc(op, filt), _nhwc(op, out)
    if f_shape[0] != 1 or f_shape[3] != out_shape[3] or out_shape[3] % in_shape[3]:
        raise _unsupported(op, f"filter {list(f_shape)} does not fit input {list(in_shape)}")
    mult, shift = _channel_multipliers(op, inp, filt, out, out_shape[3])
    lo, hi = _act_range(op, out)
    return DepthwiseConv2DParams(
        input_shape=in_shape, filter_shape=f_shape, output_shape=out_shape,
        **_spatial(op, in_shape, out_shape, f_shape[1], f_shape[2]),
        depth_multiplier=out_shape[3] // in_shape[3],
        input_offset=-_per_tensor(op, inp)[1], output_offset=_per_tensor(op, out)[1],
        output_multiplier=mult, output_shift=shift, activation_min=lo, activation_max=hi,
        has_bias=_has_bias(graph, op))


def _fully_connected(graph: Graph, op: Op) -> FullyConnectedParams:
    inp, filt, out = _input(graph, op, 0), _input(graph, op, 1), _output(graph, op)
    for t in (inp, filt, out):
        _require_dtype(op, t, "int8")
    if op.options.get("weights_format", 0) != 0 or len(filt.shape) != 2:
        raise _unsupported(op, "only the default 2-D weights format is supported")
    output_depth, accum_depth = filt.shape
    if inp.size % accum_depth:
        raise _unsupported(op, f"input size {inp.size} is not a multiple of {accum_depth}")
    per_channel = filt.quant is not None and filt.quant.per_channel
    if per_channel:
        mult, shift = _channel_multipliers(op, inp, filt, out, output_depth)
    else:
        # GetQuantizedConvolutionMultipler: the scales multiplied in double.
        m, s = quantize_multiplier(_per_tensor(op, inp)[0] * _per_tensor(op, filt)[0]
                                   / _per_tensor(op, out)[0])
        mult, shift = (m,) * output_depth, (s,) * output_depth
    lo, hi = _act_range(op, out)
    return FullyConnectedParams(
        input_shape=inp.shape, output_shape=out.shape, batches=inp.size // accum_depth,
        accum_depth=accum_depth, output_depth=output_depth, input_offset=-_per_tensor(op, inp)[1],
        weights_offset=-_per_tensor(op, filt)[1] if not per_channel else 0,
        output_offset=_per_tensor(op, out)[1], per_channel=per_channel, output_multiplier=mult,
        output_shift=shift, activation_min=lo, activation_max=hi, has_bias=_has_bias(graph, op))


def _aligned(shape: tuple[int, ...], rank: int) -> tuple[int, ...]:
    return (1,) * (rank - len(shape)) + tuple(shape)


def _binary_shapes(graph: Graph, op: Op) -> tuple[Tensor, Tensor, Tensor, dict]:
    a, b, out = _input(graph, op, 0), _input(graph, op, 1), _output(graph, op)
    for t in (a, b, out):
        _require_dtype(op, t, "int8")
    rank = len(out.shape)
    s1, s2 = _aligned(a.shape, rank), _aligned(b.shape, rank)
    try:
        expected = np.broadcast_shapes(s1, s2)
    except ValueError:
        raise _unsupported(op, f"shapes {list(a.shape)} and {list(b.shape)} do not broadcast") from None
    if tuple(expected) != tuple(out.shape):
        raise _unsupported(op, f"output shape {list(out.shape)} is not the broadcast shape")
    return a, b, out, {"input1_shape": s1, "input2_shape": s2, "output_shape": tuple(out.shape),
                       "requires_broadcast": s1 != s2}


def _add(graph: Graph, op: Op) -> AddParams:
    a, b, out, shapes = _binary_shapes(graph, op)
    (s1, z1), (s2, z2), (so, zo) = _per_tensor(op, a), _per_tensor(op, b), _per_tensor(op, out)
    left_shift = 20
    twice_max = 2.0 * max(s1, s2)
    m1, sh1 = quantize_multiplier(s1 / twice_max)
    m2, sh2 = quantize_multiplier(s2 / twice_max)
    mo, sho = quantize_multiplier(twice_max / ((1 << left_shift) * so))
    lo, hi = _act_range(op, out)
    return AddParams(**shapes, left_shift=left_shift, input1_offset=-z1, input2_offset=-z2,
                     output_offset=zo, input1_multiplier=m1, input1_shift=sh1, input2_multiplier=m2,
                     input2_shift=sh2, output_multiplier=mo, output_shift=sho, activation_min=lo,
                     activation_max=hi)


def _mul(graph: Graph, op: Op) -> MulParams:
    a, b, out, shapes = _binary_shapes(graph, op)
    (s1, z1), (s2, z2), (so, zo) = _per_tensor(op, a), _per_tensor(op, b), _per_tensor(op, out)
    m, s = quantize_multiplier(s1 * s2 / so)
    lo, hi = _act_range(op, out)
    return MulParams(**shapes, input1_offset=-z1, input2_offset=-z2, output_offset=zo,
                     output_multiplier=m, output_shift=s, activation_min=lo, activation_max=hi)


def _pool(graph: Graph, op: Op) -> Pool2DParams:
    inp, out = _input(graph, op, 0), _output(graph, op)
    for t in (inp, out):
        _require_dtype(op, t, "int8")
    in_shape, out_shape = _nhwc(op, inp), _nhwc(op, out)
    fh, fw = op.options["filter_h"], op.options["filter_w"]
    lo, hi = _act_range(op, out)
    return Pool2DParams(input_shape=in_shape, output_shape=out_shape, filter_h=fh, filter_w=fw,
                        **_spatial(op, in_shape, out_shape, fh, fw, dilation=False),
                        activation_min=lo, activation_max=hi)


def _mean(graph: Graph, op: Op) -> MeanParams:
    inp, out = _input(graph, op, 0), _output(graph, op)
    for t in (inp, out):
        _require_dtype(op, t, "int8")
    rank = len(inp.shape)
    axes = tuple(sorted({a % rank for a in _const_ints(graph, op, 1)}))
    count = math.prod(inp.shape[a] for a in axes)
    (si, zi), (so, zo) = _per_tensor(op, inp), _per_tensor(op, out)
    mult, shift = quantize_multiplier(si / so)
    # QuantizedMeanOrSumExtraArgs folds 1/count into the multiplier.
    if count <= 0:
        raise _unsupported(op, "the reduced axes are empty")
    fold = min(count.bit_length() - 1, 32, 31 + shift)
    mult = (mult << fold) // count
    return MeanParams(input_shape=inp.shape, output_shape=out.shape, axes=axes,
                      keep_dims=bool(op.options.get("keep_dims", False)), num_elements=count,
                      input_zero_point=zi, output_zero_point=zo, multiplier=mult, shift=shift - fold)


def _softmax(graph: Graph, op: Op) -> SoftmaxParams:
    inp, out = _input(graph, op, 0), _output(graph, op)
    _require_dtype(op, inp, "int8")
    _require_dtype(op, out, "int8", "int16")
    _require_fixed_output(op, out)
    scale, _ = _per_tensor(op, inp)
    integer_bits = 5
    # PreprocessSoftmaxScaling: beta * scale * 2^(31 - integer_bits), capped, as a >1 multiplier.
    real = min(op.options.get("beta", 1.0) * scale * (1 << (31 - integer_bits)), (1 << 31) - 1.0)
    mult, left_shift = quantize_multiplier(real)
    depth = inp.shape[-1]
    return SoftmaxParams(input_shape=inp.shape, outer_size=inp.size // depth, depth=depth,
                         input_multiplier=mult, input_left_shift=left_shift,
                         diff_min=-_input_radius(integer_bits, left_shift), output_dtype=out.dtype)


def _require_fixed_output(op: Op, out: Tensor) -> None:
    """The kernel writes probabilities in [0, 1) with the fixed output quantization TFLM enforces
    (int8: scale 1/256, zero point -128; int16: 1/65536, -32768); any other would be misread."""
    lo, hi = INT_RANGES[out.dtype]
    expected_scale = 1.0 / (hi - lo + 1)
    scale, zp = _per_tensor(op, out)
    if zp != lo or abs(scale - expected_scale) > 0.001 * expected_scale:
        raise _unsupported(op, f"output quantization ({scale:g}, {zp}) must be ({expected_scale:g}, {lo})")


def _input_radius(integer_bits: int, left_shift: int) -> int:
    """CalculateInputRadius with 31 total signed bits."""
    return math.floor(1.0 * ((1 << integer_bits) - 1) * (1 << (31 - integer_bits)) / (1 << left_shift))


def _logistic(graph: Graph, op: Op) -> LogisticParams:
    inp, out = _input(graph, op, 0), _output(graph, op)
    _require_dtype(op, inp, "int8")
    _require_dtype(op, out, "int8")
    _require_fixed_output(op, out)
    scale, zp = _per_tensor(op, inp)
    integer_bits = 4
    q, left_shift = math.frexp(scale * (1 << (31 - integer_bits)))
    return LogisticParams(input_shape=inp.shape, input_zero_point=zp,
                          input_range_radius=_input_radius(integer_bits, left_shift),
                          input_multiplier=int(round_half_away(q * (1 << 31))),
                          input_left_shift=left_shift)


def _quantize(graph: Graph, op: Op) -> QuantizeParams:
    inp, out = _input(graph, op, 0), _output(graph, op)
    _require_dtype(op, inp, "float32", "int8", "int16")
    _require_dtype(op, out, "int8", "int16")
    out_scale, out_zp = _per_tensor(op, out)
    in_zp, mult, shift = 0, 0, 0
    if inp.dtype != "float32":
        in_scale, in_zp = _per_tensor(op, inp)
        mult, shift = quantize_multiplier(in_scale / out_scale)
    return QuantizeParams(shape=out.shape, input_dtype=inp.dtype, output_dtype=out.dtype,
                          output_scale=out_scale, output_zero_point=out_zp, input_zero_point=in_zp,
                          requantize_multiplier=mult, requantize_shift=shift)


def _dequantize(graph: Graph, op: Op) -> DequantizeParams:
    inp, out = _input(graph, op, 0), _output(graph, op)
    _require_dtype(op, inp, "int8", "int16")
    _require_dtype(op, out, "float32")
    scale, zp = _per_tensor(op, inp)
    return DequantizeParams(shape=inp.shape, input_dtype=inp.dtype, scale=scale, zero_point=zp)


def _pad(graph: Graph, op: Op) -> PadParams:
    inp, out = _input(graph, op, 0), _output(graph, op)
    for t in (inp, out):
        _require_dtype(op, t, "int8")
    flat = _const_ints(graph, op, 1)
    pairs = tuple((flat[2 * i], flat[2 * i + 1]) for i in range(len(flat) // 2))
    if len(pairs) != len(inp.shape) or any(
            i + b + a != o for (b, a), i, o in zip(pairs, inp.shape, out.shape, strict=True)):
        raise _unsupported(op, f"paddings {list(pairs)} do not map {list(inp.shape)} to {list(out.shape)}")
    if len(op.inputs) > 2 and op.inputs[2] != NO_TENSOR:
        pad_value = _const_ints(graph, op, 2)[0]
    else:
        pad_value = _per_tensor(op, out)[1]
    return PadParams(input_shape=inp.shape, output_shape=out.shape, paddings=pairs, pad_value=pad_value)


def _reshape(graph: Graph, op: Op) -> ReshapeParams:
    inp, out = _input(graph, op, 0), _output(graph, op)
    if inp.size != out.size or inp.dtype != out.dtype:
        raise _unsupported(op, f"cannot reshape {list(inp.shape)} {inp.dtype} "
                               f"to {list(out.shape)} {out.dtype}")
    return ReshapeParams(input_shape=inp.shape, output_shape=out.shape, nbytes=inp.nbytes)


def _transpose(graph: Graph, op: Op) -> TransposeParams:
    inp, out = _input(graph, op, 0), _output(graph, op)
    perm = tuple(p % len(inp.shape) for p in _const_ints(graph, op, 1))
    if sorted(perm) != list(range(len(inp.shape))) or tuple(inp.shape[p] for p in perm) != out.shape:
        raise _unsupported(op, f"perm {list(perm)} does not map {list(inp.shape)} to {list(out.shape)}")
    return TransposeParams(input_shape=inp.shape, output_shape=out.shape, perm=perm)


def _concatenation(graph: Graph, op: Op) -> ConcatenationParams:
    out = _output(graph, op)
    ins = [_input(graph, op, i) for i in range(len(op.inputs))]
    for t in (*ins, out):
        _require_dtype(op, t, "int8")
        if t.quant is not None and _per_tensor(op, t) != _per_tensor(op, out):
            raise _unsupported(op, "inputs quantized differently from the output need requantization")
    if op.options.get("activation", "NONE") != "NONE":
        raise _unsupported(op, "a fused activation is not supported")
    axis = op.options.get("axis", 0) % len(out.shape)
    return ConcatenationParams(input_shapes=tuple(t.shape for t in ins), output_shape=out.shape, axis=axis)


PARAM_BUILDERS: dict[str, Callable[[Graph, Op], OpParams]] = {
    "CONV_2D": _conv2d,
    "DEPTHWISE_CONV_2D": _depthwise,
    "FULLY_CONNECTED": _fully_connected,
    "ADD": _add,
    "MUL": _mul,
    "AVERAGE_POOL_2D": _pool,
    "MAX_POOL_2D": _pool,
    "MEAN": _mean,
    "SOFTMAX": _softmax,
    "LOGISTIC": _logistic,
    "QUANTIZE": _quantize,
    "DEQUANTIZE": _dequantize,
    "PAD": _pad,
    "PADV2": _pad,
    "RESHAPE": _reshape,
    "SQUEEZE": _reshape,
    "EXPAND_DIMS": _reshape,
    "TRANSPOSE": _transpose,
    "CONCATENATION": _concatenation,
}
