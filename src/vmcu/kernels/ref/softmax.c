/* SOFTMAX int8 -> int8 / int16 (TFLM reference_ops::Softmax, gemmlowp fixed point): input diffs to the
 * row maximum in Q5.26, exponentials summed in Q12.19, scaled by the fixed-point reciprocal of the sum.
 * The int8 output of an element lands no later than its input is read; int16 outputs are wider, so that
 * variant reads each row from a copy in scratch (depth bytes) and may then overlap its input too. */
#include <string.h>

#include "vmcu_fixedpoint.h"
#include "vmcu_kernels.h"

enum { SCALED_DIFF_INTEGER_BITS = 5, ACCUMULATION_INTEGER_BITS = 12 };

typedef struct {
    int32_t max_in_row;
    int32_t shifted_scale;       /* 1 / sum of exps, Q0.31 */
    int32_t num_bits_over_unit;
} row_state_t;

static int32_t exp_of_diff(const vmcu_softmax_params_t *p, int32_t diff) {
    const int32_t rescaled = vmcu_multiply_by_quantized_multiplier_gt_one(diff, p->input_multiplier,
                                                                          p->input_left_shift);
    return vmcu_exp_on_negative_values(rescaled, SCALED_DIFF_INTEGER_BITS);
}

static row_state_t row_state(const vmcu_softmax_params_t *p, const int8_t *in) {
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
static int32_t probability(const vmcu_softmax_params_t *p, const row_state_t *s, int32_t x,
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

void vmcu_softmax_s8(const vmcu_softmax_params_t *p, const int8_t *input, int8_t *output) {
    for (int32_t r = 0; r < p->outer_size; ++r, input += p->depth, output += p->depth) {
        const row_state_t s = row_state(p, input);
        for (int32_t c = 0; c < p->depth; ++c) {
            output[c] = (int8_t)probability(p, &s, input[c], 8);
        }
    }
}

void vmcu_softmax_s8_s16(const vmcu_softmax_params_t *p, const int8_t *input, int16_t *output,
                         int8_t *scratch) {
    for (int32_t r = 0; r < p->outer_size; ++r, input += p->depth, output += p->depth) {
        memcpy(scratch, input, (size_t)p->depth);
        const row_state_t s = row_state(p, scratch);
        for (int32_t c = 0; c < p->depth; ++c) {
            output[c] = (int16_t)probability(p, &s, scratch[c], 16);
        }
    }
}
