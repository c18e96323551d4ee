/* The arithmetic of one SOFTMAX row (TFLM reference_ops::Softmax, gemmlowp fixed point), shared by the
 * tensor kernel (ref/softmax.c) and the segment kernel (seg/seg_rows.c), which differ only in how they
 * reach a row: input diffs to the row maximum in Q5.26, exponentials summed in Q12.19, scaled by the
 * fixed-point reciprocal of the sum. */
#ifndef VMCU_SOFTMAX_ROW_H
#define VMCU_SOFTMAX_ROW_H

#include "vmcu_fixedpoint.h"
#include "vmcu_kernels.h"

enum { SCALED_DIFF_INTEGER_BITS = 5, ACCUMULATION_INTEGER_BITS = 12 };

typedef struct {
    int32_t max_in_row;
    int32_t shifted_scale;       /* 1 / sum of exps, Q0.31 */
    int32_t num_bits_over_unit;
} row_state_t;

static inline int32_t exp_of_diff(const vmcu_softmax_params_t *p, int32_t diff) {
    const int32_t rescaled = vmcu_multiply_by_quantized_multiplier_gt_one(diff, p->input_multiplier,
                                                                          p->input_left_shift);
    return vmcu_exp_on_negative_values(rescaled, SCALED_DIFF_INTEGER_BITS);
}

static inline row_state_t row_state(const vmcu_softmax_params_t *p, const int8_t *in) {
    row_state_t s;
    s.max_in_row = INT8_MIN;
    for (int32_t c = 0; c < p->depth; ++c) {
        s.max_in_row = vmcu_max_i32(s.max_in_row, in[c]);
    }
    int32_t sum_of_exps = 0;
    for (int32_t c = 0; c < p->depth; ++c) {
        const int32_t diff = in[c] - s.max_in_row;
        if (diff >= p->diff_min) {
            sum_of_exps = vmcu_wrap_add(sum_of_exps, vmcu_rounding_divide_by_pot(exp_of_diff(p, diff),
                                                                                 ACCUMULATION_INTEGER_BITS));
        }
    }
    s.shifted_scale = vmcu_get_reciprocal(sum_of_exps, ACCUMULATION_INTEGER_BITS, &s.num_bits_over_unit);
    return s;
}

/* One probability as an `out_bits`-bit integer with zero point at the type's minimum. */
static inline int32_t probability(const vmcu_softmax_params_t *p, const row_state_t *s, int32_t x,
                           int32_t out_bits) {
    const int32_t out_min = -((int32_t)1 << (out_bits - 1)), out_max = ((int32_t)1 << (out_bits - 1)) - 1;
    const int32_t diff = x - s->max_in_row;
    if (diff < p->diff_min) {
        return out_min;
    }
    const int32_t prob = vmcu_saturating_rounding_doubling_high_mul(s->shifted_scale, exp_of_diff(p, diff));
    const int32_t unsat = vmcu_rounding_divide_by_pot(prob, s->num_bits_over_unit + 31 - out_bits);
    return vmcu_clamp_i32(unsat + out_min, out_min, out_max);
}

#endif /* VMCU_SOFTMAX_ROW_H */
