"""TFLite's fixed-point requantization, bit-exact (tensorflow/lite/kernels/internal/common.h).

Everything here is integer arithmetic on int64 NumPy arrays; the results must match TFLite Micro's
reference kernels to the bit, so the rounding of every step follows the C++ code exactly.
"""

from __future__ import annotations

import math

import numpy as np

INT32_MIN = -(2**31)
INT32_MAX = 2**31 - 1

def quantize_multiplier(real_multiplier: float) -> tuple[int, int]:
    """Split a positive double into a Q31 multiplier and a power-of-two shift (TFLite QuantizeMultiplier)."""
    if real_multiplier == 0.0:
        return 0, 0
    q, shift = math.frexp(real_multiplier)
    q_fixed = int(round_half_away(q * (1 << 31)))
    if q_fixed == (1 << 31):
        q_fixed //= 2
        shift += 1
    if shift < -31:
        shift = 0
        q_fixed = 0
    if shift > 30:
        raise ValueError(f"requantization multiplier {real_multiplier:.6g} is out of range (at most 2^30)")
    return q_fixed, shift


def saturating_rounding_doubling_high_mul(a: np.ndarray, b: np.ndarray | int) -> np.ndarray:
    """gemmlowp SaturatingRoundingDoublingHighMul on int32 values held in int64 arrays."""
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    overflow = (a == INT32_MIN) & (b == INT32_MIN)
    ab = a * b
    nudge = np.where(ab >= 0, 1 << 30, 1 - (1 << 30))
    # C++ integer division truncates toward zero.
    s = ab + nudge
    q = np.where(s >= 0, s >> 31, -((-s) >> 31))
    return np.where(overflow, INT32_MAX, q).astype(np.int64)


def rounding_divide_by_pot(x: np.ndarray, exponent: np.ndarray | int) -> np.ndarray:
    """gemmlowp RoundingDivideByPOT: arithmetic shift right, rounding half away from zero."""
    x = np.asarray(x, dtype=np.int64)
    exponent = np.asarray(exponent, dtype=np.int64)
    mask = (np.int64(1) << exponent) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (x < 0).astype(np.int64)
    return (x >> exponent) + (remainder > threshold).astype(np.int64)


def multiply_by_quantized_multiplier(x: np.ndarray, multiplier: np.ndarray | int,
                                     shift: np.ndarray | int) -> np.ndarray:
    """TFLite MultiplyByQuantizedMultiplier (32-bit multiplier, the variant TFLM's reference kernels use)."""
    shift = np.asarray(shift, dtype=np.int64)
    left = np.maximum(shift, 0)
    right = np.maximum(-shift, 0)
    x = np.asarray(x, dtype=np.int64) * (np.int64(1) << left)
    # The left shift is done in int32 in C++; the values used by real models never overflow it.
    return rounding_divide_by_pot(saturating_rounding_doubling_high_mul(x, multiplier), right)


def activation_range(activation: str, scale: float, zero_point: int,
                     qmin: int = -128, qmax: int = 127) -> tuple[int, int]:
    """TFLite CalculateActivationRangeQuantized: the clamp range of a fused activation."""

    def quantize(v: float) -> int:
        # TfLiteQuantizationParams.scale is a float: the division is done in float32.
        return zero_point + int(round_half_away(float(np.float32(v) / np.float32(scale))))

    if activation == "NONE":
        return qmin, qmax
    if activation == "RELU":
        return max(qmin, quantize(0.0)), qmax
    if activation == "RELU6":
        return max(qmin, quantize(0.0)), min(qmax, quantize(6.0))
    if activation == "RELU_N1_TO_1":
        return max(qmin, quantize(-1.0)), min(qmax, quantize(1.0))
    raise ValueError(f"fused activation {activation} has no int8 range")


def round_half_away(v: float) -> float:
    """std::round: halves away from zero (Python's round() rounds halves to even).

    Exact for every double: floor(v + 0.5) would round 0.49999999999999994 up, as v + 0.5 rounds to 1.
    """
    whole = math.trunc(v)
    if abs(v - whole) >= 0.5:  # v - trunc(v) is exact in floating point
        return float(whole + (1 if v > 0 else -1))
    return float(whole)
