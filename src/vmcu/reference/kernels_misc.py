"""Reference kernels of the elementwise, activation, (de)quantization and data-movement ops.

Each follows TFLM's reference kernel to the bit: reference_integer_ops::AddElementwise / MulElementwise
(and their 6-D broadcast variants, which do the same per-element math), reference_ops::Softmax (int8 ->
int8/int16), reference_integer_ops::Logistic, AffineQuantize, Requantize, Dequantize, Pad, Transpose,
Concatenation and Reshape.
"""

from __future__ import annotations

import numpy as np

from vmcu.ir.params import (
    AddParams,
    ConcatenationParams,
    DequantizeParams,
    LogisticParams,
    MulParams,
    PadParams,
    QuantizeParams,
    ReshapeParams,
    SoftmaxParams,
    TransposeParams,
)
from vmcu.ir.quant import (
    multiply_by_quantized_multiplier,
    rounding_divide_by_pot,
    saturating_rounding_doubling_high_mul,
)
from vmcu.reference import fixedpoint as fp

Arrays = list[np.ndarray | None]
INT_LIMITS = {"int8": (-128, 127, np.int8), "int16": (-32768, 32767, np.int16)}


def add(p: AddParams, inputs: Arrays) -> np.ndarray:
    """ADD: both inputs shifted left by 20, rescaled to the common scale, summed, requantized."""
    a = (inputs[0].reshape(p.input1_shape).astype(np.int64) + p.input1_offset) << p.left_shift
    b = (inputs[1].reshape(p.input2_shape).astype(np.int64) + p.input2_offset) << p.left_shift
    raw_sum = (multiply_by_quantized_multiplier(a, p.input1_multiplier, p.input1_shift)
               + multiply_by_quantized_multiplier(b, p.input2_multiplier, p.input2_shift))
    out = multiply_by_quantized_multiplier(raw_sum, p.output_multiplier, p.output_shift) + p.output_offset
    return np.clip(out, p.activation_min, p.activation_max).astype(np.int8).reshape(p.output_shape)


def mul(p: MulParams, inputs: Arrays) -> np.ndarray:
    """MUL: product of the offset inputs, requantized."""
    a = inputs[0].reshape(p.input1_shape).astype(np.int64) + p.input1_offset
    b = inputs[1].reshape(p.input2_shape).astype(np.int64) + p.input2_offset
    out = multiply_by_quantized_multiplier(a * b, p.output_multiplier, p.output_shift) + p.output_offset
    return np.clip(out, p.activation_min, p.activation_max).astype(np.int8).reshape(p.output_shape)


def softmax(p: SoftmaxParams, inputs: Arrays) -> np.ndarray:
    """SOFTMAX: exp of the rescaled differences to the row maximum (Q5.26), summed in Q12.19,
    multiplied by the reciprocal of the sum, shifted down to the output width."""
    x = inputs[0].reshape(p.outer_size, p.depth).astype(np.int64)
    diff = x - x.max(axis=1, keepdims=True)
    valid = diff >= p.diff_min
    rescaled = saturating_rounding_doubling_high_mul(diff * (1 << p.input_left_shift), p.input_multiplier)
    exp_q0 = fp.exp_on_negative_values(rescaled, 5)
    sum_of_exps = fp.wrap32(np.where(valid, rounding_divide_by_pot(exp_q0, 12), 0).sum(axis=1, keepdims=True))
    headroom_plus_one = fp.count_leading_zeros_u32(sum_of_exps)
    num_bits_over_unit = 12 - headroom_plus_one
    shifted_sum_minus_one = fp.wrap32((sum_of_exps << headroom_plus_one) - (1 << 31))
    shifted_scale = fp.one_over_one_plus_x_for_x_in_0_1(shifted_sum_minus_one)
    lo, hi, dtype = INT_LIMITS[p.output_dtype]
    bits = np.dtype(dtype).itemsize * 8
    unsat = rounding_divide_by_pot(saturating_rounding_doubling_high_mul(shifted_scale, exp_q0),
                                   num_bits_over_unit + 31 - bits)
    out = np.where(valid, np.clip(unsat + lo, lo, hi), lo)
    return out.astype(dtype).reshape(p.input_shape)


def logistic(p: LogisticParams, inputs: Arrays) -> np.ndarray:
    """LOGISTIC: saturate outside +-input_range_radius, else gemmlowp logistic on Q4.27."""
    x = inputs[0].astype(np.int64) - p.input_zero_point
    q4 = multiply_by_quantized_multiplier(x, p.input_multiplier, p.input_left_shift)
    q0 = fp.logistic(q4, 4)
    out = np.clip(rounding_divide_by_pot(q0, 23) - 128, -128, 127)
    out = np.where(x <= -p.input_range_radius, -128, np.where(x >= p.input_range_radius, 127, out))
    return out.astype(np.int8)


def quantize(p: QuantizeParams, inputs: Arrays) -> np.ndarray:
    """QUANTIZE: float -> round_half_away(x / scale) + zp (float32 division), or integer requantization."""
    lo, hi, dtype = INT_LIMITS[p.output_dtype]
    x = inputs[0]
    if p.input_dtype == "float32":
        v = (x.astype(np.float32) / np.float32(p.output_scale)).astype(np.float64)
        v = np.nan_to_num(v, nan=0.0)  # undefined in TFLM; the generated C maps NaN to 0 as well
        whole = np.trunc(v)
        rounded = np.where(np.abs(v - whole) >= 0.5, whole + np.sign(v), whole)
        out = np.clip(rounded, -2.0**31, 2.0**31 - 1).astype(np.int64) + p.output_zero_point
    else:
        out = multiply_by_quantized_multiplier(x.astype(np.int64) - p.input_zero_point,
                                               p.requantize_multiplier, p.requantize_shift)
        out = out + p.output_zero_point
    return np.clip(out, lo, hi).astype(dtype).reshape(p.shape)


def dequantize(p: DequantizeParams, inputs: Arrays) -> np.ndarray:
    """DEQUANTIZE: float32(double(scale) * (q - zero_point))."""
    return (p.scale * (inputs[0].astype(np.float64) - p.zero_point)).astype(np.float32)


def pad(p: PadParams, inputs: Arrays) -> np.ndarray:
    """PAD / PADV2: constant padding with pad_value."""
    return np.pad(inputs[0], p.paddings, constant_values=p.pad_value)


def reshape(p: ReshapeParams, inputs: Arrays) -> np.ndarray:
    """RESHAPE / SQUEEZE / EXPAND_DIMS: the same bytes under a new shape."""
    return inputs[0].reshape(p.output_shape).copy()


def transpose(p: TransposeParams, inputs: Arrays) -> np.ndarray:
    """TRANSPOSE: output dimension i is input dimension perm[i]."""
    return np.ascontiguousarray(np.transpose(inputs[0], p.perm))


def concatenation(p: ConcatenationParams, inputs: Arrays) -> np.ndarray:
    """CONCATENATION: inputs joined along `axis` (same quantization, so a plain copy)."""
    arrays = [x.reshape(s) for x, s in zip(inputs, p.input_shapes, strict=True)]
    return np.concatenate(arrays, axis=p.axis)
