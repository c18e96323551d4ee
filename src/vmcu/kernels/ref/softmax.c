/* SOFTMAX int8 -> int8 / int16 (TFLM reference_ops::Softmax, gemmlowp fixed point): input diffs to the
 * row maximum in Q5.26, exponentials summed in Q12.19, scaled by the fixed-point reciprocal of the sum.
 * The int8 output of an element lands no later than its input is read; int16 outputs are wider, so that
 * variant reads each row from a copy in scratch (depth bytes) and may then overlap its input too. */
#include <string.h>

#include "vmcu_kernels.h"
#include "vmcu_softmax_row.h"

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
