/* FULLY_CONNECTED int8 (TFLM reference_integer_ops::FullyConnected and its per-channel variant). Each output
 * row is computed into scratch (output_depth bytes) and then stored, so it may overlap its input row. */
#include <string.h>

#include "vmcu_fixedpoint.h"
#include "vmcu_kernels.h"

void vmcu_fully_connected_s8(const vmcu_fully_connected_params_t *p, const int8_t *input,
                             const int8_t *filter, const int32_t *bias, int8_t *output, int8_t *scratch) {
    const int32_t depth = p->accum_depth;
    for (int32_t b = 0; b < p->batches; ++b) {
        const int8_t *x = input + b * depth;
        for (int32_t oc = 0; oc < p->output_depth; ++oc) {
            const int8_t *w = filter + oc * depth;
            int32_t acc = 0;
            for (int32_t d = 0; d < depth; ++d) {
                acc += (w[d] + p->weights_offset) * (x[d] + p->input_offset);
            }
            if (p->has_bias) {
                acc += bias[oc];
            }
            acc = vmcu_multiply_by_quantized_multiplier(acc, p->output_multiplier[oc], p->output_shift[oc]);
            acc = vmcu_clamp_i32(acc + p->output_offset, p->activation_min, p->activation_max);
            scratch[oc] = (int8_t)acc;
        }
        memcpy(output + b * p->output_depth, scratch, (size_t)p->output_depth);
    }
}
