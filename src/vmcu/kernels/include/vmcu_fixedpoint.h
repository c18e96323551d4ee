/* TFLite / gemmlowp fixed-point arithmetic, bit-exact with tensorflow/lite/kernels/internal/common.h and
 * gemmlowp/fixedpoint/fixedpoint.h (the 32-bit, double-rounding variants that TFLM's reference kernels use).
 *
 * Signed overflow is avoided by doing wrapping steps in uint32_t: the results equal the two's complement
 * behaviour of the C++ code wherever that code is defined.
 */
#ifndef VMCU_FIXEDPOINT_H
#define VMCU_FIXEDPOINT_H

#include <stdint.h>

static inline int32_t vmcu_min_i32(int32_t a, int32_t b) { return a < b ? a : b; }
static inline int32_t vmcu_max_i32(int32_t a, int32_t b) { return a > b ? a : b; }
static inline int32_t vmcu_clamp_i32(int32_t x, int32_t lo, int32_t hi) {
    return vmcu_min_i32(vmcu_max_i32(x, lo), hi);
}

/* a + b and a - b with int32 wrap-around (gemmlowp's Add/Sub on raw int32 values). */
static inline int32_t vmcu_wrap_add(int32_t a, int32_t b) { return (int32_t)((uint32_t)a + (uint32_t)b); }
static inline int32_t vmcu_wrap_sub(int32_t a, int32_t b) { return (int32_t)((uint32_t)a - (uint32_t)b); }

/* gemmlowp SaturatingRoundingDoublingHighMul. Adding 2^30 and flooring equals gemmlowp's sign-dependent
 * nudge followed by truncating division, for every product (proof: ceil((n - 2^30) / 2^31) equals
 * floor((n + 2^30 - 1) / 2^31)); only INT32_MIN * INT32_MIN needs the saturation. */
static inline int32_t vmcu_saturating_rounding_doubling_high_mul(int32_t a, int32_t b) {
    if (a == INT32_MIN && b == INT32_MIN) {
        return INT32_MAX;
    }
    return (int32_t)(((int64_t)a * b + ((int64_t)1 << 30)) >> 31);
}

/* gemmlowp RoundingDivideByPOT: arithmetic shift right rounding half away from zero, 0 <= exponent <= 31. */
static inline int32_t vmcu_rounding_divide_by_pot(int32_t x, int32_t exponent) {
    const int32_t mask = (int32_t)((UINT32_C(1) << exponent) - 1u);
    const int32_t remainder = x & mask;
    const int32_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
    return (x >> exponent) + (remainder > threshold ? 1 : 0);
}

/* gemmlowp SaturatingRoundingMultiplyByPOT for a positive exponent: saturating left shift. */
static inline int32_t vmcu_saturating_shift_left(int32_t x, int32_t exponent) {
    const int32_t threshold = (int32_t)((UINT32_C(1) << (31 - exponent)) - 1u);
    if (x > threshold) {
        return INT32_MAX;
    }
    if (x < -threshold) {
        return INT32_MIN;
    }
    return (int32_t)((uint32_t)x << exponent);
}

/* TFLite MultiplyByQuantizedMultiplier: shift > 0 shifts left before the high multiply (in int32, wrapping
 * as the C++ does on two's complement targets), shift < 0 divides after it. */
static inline int32_t vmcu_multiply_by_quantized_multiplier(int32_t x, int32_t multiplier, int32_t shift) {
    const int32_t left = shift > 0 ? shift : 0;
    const int32_t right = shift > 0 ? 0 : -shift;
    const int32_t shifted = (int32_t)((uint32_t)x << left);
    const int32_t high = vmcu_saturating_rounding_doubling_high_mul(shifted, multiplier);
    return vmcu_rounding_divide_by_pot(high, right);
}

/* MultiplyByQuantizedMultiplier, fused for the usual right shift e = -shift >= 1: the doubling high
 * multiply's floor((acc * m + 2^30) / 2^31) and the round-half-away division by 2^e are one floor
 * division, floor((acc * m + 2^30 + k * 2^31) / 2^(31 + e)) with k = 2^(e - 1) - [acc * m + 2^30 < 0],
 * because nested floor divisions by positive integers compose. Exact for every input (the doubling high
 * multiply saturates only for INT32_MIN * INT32_MIN, and multipliers are positive). */
static inline int32_t vmcu_requantize(int32_t acc, int32_t multiplier, int32_t shift) {
    if (shift < 0) {
        int64_t t = (int64_t)acc * multiplier + ((int64_t)1 << 30);
        const int32_t k = ((int32_t)1 << (-shift - 1)) + ((int32_t)(t >> 32) >> 31);
        t += (int64_t)k << 31;
        return (int32_t)(t >> 32) >> (-shift - 1);
    }
    return vmcu_multiply_by_quantized_multiplier(acc, multiplier, shift);
}

/* TFLite MultiplyByQuantizedMultiplierGreaterThanOne (softmax's diff rescaling). */
static inline int32_t vmcu_multiply_by_quantized_multiplier_gt_one(int32_t x, int32_t multiplier,
                                                                   int32_t left_shift) {
    return vmcu_saturating_rounding_doubling_high_mul((int32_t)((uint32_t)x << left_shift), multiplier);
}

/* gemmlowp RoundingHalfSum for int32. */
static inline int32_t vmcu_rounding_half_sum(int32_t a, int32_t b) {
    const int64_t sum = (int64_t)a + b;
    return (int32_t)((sum + (sum >= 0 ? 1 : -1)) / 2);
}

/* gemmlowp exp_on_interval_between_negative_one_quarter_and_0_excl, Q0.31 in and out. */
static inline int32_t vmcu_exp_on_interval_neg_quarter_to_0(int32_t a) {
    const int32_t constant_term = 1895147668;     /* exp(-1/8) */
    const int32_t constant_1_over_3 = 715827883;  /* 1/3 */
    const int32_t x = vmcu_wrap_add(a, 1 << 28);  /* Taylor expansion around -1/8 */
    const int32_t x2 = vmcu_saturating_rounding_doubling_high_mul(x, x);
    const int32_t x3 = vmcu_saturating_rounding_doubling_high_mul(x2, x);
    const int32_t x4 = vmcu_saturating_rounding_doubling_high_mul(x2, x2);
    const int32_t x4_over_4 = vmcu_rounding_divide_by_pot(x4, 2);
    const int32_t poly = vmcu_rounding_divide_by_pot(
        vmcu_wrap_add(vmcu_saturating_rounding_doubling_high_mul(vmcu_wrap_add(x4_over_4, x3),
                                                                 constant_1_over_3), x2), 1);
    return vmcu_wrap_add(constant_term,
                         vmcu_saturating_rounding_doubling_high_mul(constant_term, vmcu_wrap_add(x, poly)));
}

/* gemmlowp exp_on_negative_values: `a` is a raw fixed-point value with `integer_bits` integer bits
 * (a <= 0); the result is exp(a) in Q0.31. */
static inline int32_t vmcu_exp_on_negative_values(int32_t a, int32_t integer_bits) {
    static const int32_t barrel[7] = {1672461947, 1302514674, 790015084, 290630308, 39332535, 720401, 242};
    const int32_t fractional_bits = 31 - integer_bits;
    const int32_t one_quarter = (int32_t)1 << (fractional_bits - 2);
    const int32_t a_mod_quarter_minus_quarter = vmcu_wrap_sub(a & (one_quarter - 1), one_quarter);
    const int32_t remainder = vmcu_wrap_sub(a_mod_quarter_minus_quarter, a);
    int32_t result = vmcu_exp_on_interval_neg_quarter_to_0(
        vmcu_saturating_shift_left(a_mod_quarter_minus_quarter, integer_bits));
    for (int32_t exponent = -2; exponent <= 4; ++exponent) {
        if (integer_bits > exponent && (remainder & ((int32_t)1 << (fractional_bits + exponent)))) {
            result = vmcu_saturating_rounding_doubling_high_mul(result, barrel[exponent + 2]);
        }
    }
    if (integer_bits > 5 && a < -((int32_t)1 << (36 - integer_bits))) {
        result = 0;
    }
    return a == 0 ? INT32_MAX : result;
}

/* gemmlowp one_over_one_plus_x_for_x_in_0_1: Q0.31 in and out, Newton-Raphson in Q2.29. */
static inline int32_t vmcu_one_over_one_plus_x_for_x_in_0_1(int32_t a) {
    const int32_t half_denominator = vmcu_rounding_half_sum(a, INT32_MAX);
    const int32_t constant_48_over_17 = 1515870810;
    const int32_t constant_neg_32_over_17 = -1010580540;
    int32_t x = vmcu_wrap_add(constant_48_over_17,
                              vmcu_saturating_rounding_doubling_high_mul(half_denominator,
                                                                         constant_neg_32_over_17));
    for (int i = 0; i < 3; ++i) {
        const int32_t denominator_x = vmcu_saturating_rounding_doubling_high_mul(half_denominator, x);
        const int32_t one_minus = vmcu_wrap_sub((int32_t)1 << 29, denominator_x);
        const int32_t step = vmcu_saturating_rounding_doubling_high_mul(x, one_minus);
        x = vmcu_wrap_add(x, vmcu_saturating_shift_left(step, 2));
    }
    return vmcu_saturating_shift_left(x, 1);
}

/* gemmlowp logistic for a Q4.27 input; Q0.31 result. */
static inline int32_t vmcu_logistic_q4(int32_t a) {
    if (a == 0) {
        return (int32_t)1 << 30;
    }
    const int32_t abs_a = a > 0 ? a : -a;
    const int32_t positive = vmcu_one_over_one_plus_x_for_x_in_0_1(vmcu_exp_on_negative_values(-abs_a, 4));
    return a > 0 ? positive : vmcu_wrap_sub(INT32_MAX, positive);
}

/* TFLite GetReciprocal: 1 / x for x with `integer_digits` integer bits, as a Q0.31 value and a shift. */
static inline int32_t vmcu_get_reciprocal(int32_t x, int32_t integer_digits, int32_t *num_bits_over_unit) {
    int32_t headroom_plus_one = 0;
    while (headroom_plus_one < 32 && !(((uint32_t)x << headroom_plus_one) & UINT32_C(0x80000000))) {
        ++headroom_plus_one;
    }
    *num_bits_over_unit = integer_digits - headroom_plus_one;
    const int32_t shifted_sum_minus_one =
        (int32_t)(((uint32_t)x << headroom_plus_one) - UINT32_C(0x80000000));
    return vmcu_one_over_one_plus_x_for_x_in_0_1(shifted_sum_minus_one);
}

#endif /* VMCU_FIXEDPOINT_H */
