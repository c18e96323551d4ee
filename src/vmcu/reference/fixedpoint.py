"""gemmlowp's fixed-point transcendental functions (fixedpoint/fixedpoint.h), vectorised and bit-exact.

SOFTMAX and LOGISTIC in TFLM's reference kernels are built from these. Values are int32 held in int64
arrays; a FixedPoint<int32, k> has 31 - k fractional bits, and its product with a FixedPoint<int32, j>
is a SaturatingRoundingDoublingHighMul giving a FixedPoint<int32, k + j>.
"""

from __future__ import annotations

import numpy as np

from vmcu.ir.quant import INT32_MAX, INT32_MIN, rounding_divide_by_pot
from vmcu.ir.quant import saturating_rounding_doubling_high_mul as mul

# exp(-2^e) in Q0.31 for the barrel shifter of exp_on_negative_values.
EXP_BARREL = ((-2, 1672461947), (-1, 1302514674), (0, 790015084), (1, 290630308), (2, 39332535),
              (3, 720401), (4, 242))


def wrap32(x: np.ndarray) -> np.ndarray:
    """Two's-complement int32 wrap-around of plain C additions."""
    return ((np.asarray(x, dtype=np.int64) + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)


def saturating_rounding_multiply_by_pot(x: np.ndarray, exponent: int) -> np.ndarray:
    """gemmlowp SaturatingRoundingMultiplyByPOT<exponent> on int32 values."""
    x = np.asarray(x, dtype=np.int64)
    if exponent < 0:
        return rounding_divide_by_pot(x, -exponent)
    if exponent == 0:
        return x
    threshold = (1 << (31 - exponent)) - 1
    return np.where(x > threshold, INT32_MAX, np.where(x < -threshold, INT32_MIN, x << exponent))


def rounding_half_sum(a: np.ndarray, b: np.ndarray | int) -> np.ndarray:
    """(a + b) / 2 rounded away from zero, with C's truncating division."""
    s = np.asarray(a, dtype=np.int64) + b
    n = s + np.where(s >= 0, 1, -1)
    return np.where(n >= 0, n // 2, -((-n) // 2))


def _exp_on_quarter_interval(a: np.ndarray) -> np.ndarray:
    """exp(a) for a in [-1/4, 0), Q0.31 in and out (Taylor expansion around -1/8)."""
    constant_term, one_third = 1895147668, 715827883
    x = wrap32(a + (1 << 28))
    x2 = mul(x, x)
    x3 = mul(x2, x)
    x4 = mul(x2, x2)
    x4_over_4 = saturating_rounding_multiply_by_pot(x4, -2)
    poly = saturating_rounding_multiply_by_pot(wrap32(mul(wrap32(x4_over_4 + x3), one_third) + x2), -1)
    return wrap32(constant_term + mul(constant_term, wrap32(x + poly)))


def exp_on_negative_values(a: np.ndarray, integer_bits: int) -> np.ndarray:
    """exp(a) for a <= 0 given as FixedPoint<int32, integer_bits>; result in Q0.31."""
    a = np.asarray(a, dtype=np.int64)
    fractional_bits = 31 - integer_bits
    one_quarter = 1 << (fractional_bits - 2)
    a_mod_quarter_minus_one_quarter = wrap32((a & (one_quarter - 1)) - one_quarter)
    result = _exp_on_quarter_interval(
        saturating_rounding_multiply_by_pot(a_mod_quarter_minus_one_quarter, integer_bits))
    remainder = wrap32(a_mod_quarter_minus_one_quarter - a)
    for exponent, multiplier in EXP_BARREL:
        if integer_bits > exponent:
            bit = 1 << (fractional_bits + exponent)
            result = np.where((remainder & bit) != 0, mul(result, multiplier), result)
    if integer_bits > 5:
        result = np.where(a < -(1 << (36 - integer_bits)), 0, result)
    return np.where(a == 0, INT32_MAX, result)


def one_over_one_plus_x_for_x_in_0_1(a: np.ndarray) -> np.ndarray:
    """1 / (1 + a) for a in [0, 1) in Q0.31, by three Newton-Raphson steps in Q2.29."""
    half_denominator = rounding_half_sum(a, INT32_MAX)
    one_q2 = 1 << 29
    x = wrap32(1515870810 + mul(half_denominator, -1010580540))
    for _ in range(3):
        one_minus = wrap32(one_q2 - mul(half_denominator, x))
        x = wrap32(x + saturating_rounding_multiply_by_pot(mul(x, one_minus), 2))
    return saturating_rounding_multiply_by_pot(x, 1)


def logistic(a: np.ndarray, integer_bits: int) -> np.ndarray:
    """1 / (1 + exp(-a)) for FixedPoint<int32, integer_bits> input; result in Q0.31."""
    a = np.asarray(a, dtype=np.int64)
    positive = a > 0
    abs_input = np.where(positive, a, wrap32(-a))
    if_positive = one_over_one_plus_x_for_x_in_0_1(exp_on_negative_values(wrap32(-abs_input), integer_bits))
    if_negative = wrap32(INT32_MAX - if_positive)
    return np.where(a == 0, 1 << 30, np.where(positive, if_positive, if_negative))


def count_leading_zeros_u32(x: np.ndarray) -> np.ndarray:
    """Leading zero bits of values in [0, 2^32) (32 for 0)."""
    x = np.asarray(x, dtype=np.int64)
    _, exponent = np.frexp(x.astype(np.float64))  # exact: x < 2^53, exponent = bit length
    return np.where(x == 0, 32, 32 - exponent).astype(np.int64)
