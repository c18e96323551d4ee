/* MEAN int8 over any set of axes (TFLM reference_ops::QuantizedMeanOrSumExtraArgs): raw int8 values are
 * summed, the zero point times the count is subtracted, and 1/count is folded into the multiplier. Each
 * row of the output's last dimension is computed into scratch and then stored, so it may overlap the
 * input. */
#include <string.h>

#include "vmcu_fixedpoint.h"
#include "vmcu_nd.h"

void vmcu_mean_s8(const vmcu_mean_params_t *p, const int8_t *input, int8_t *output, int8_t *scratch) {
    int32_t strides[VMCU_MAX_DIMS], kept[VMCU_MAX_DIMS], reduced[VMCU_MAX_DIMS];
    vmcu_nd_strides(p->input_shape, 0, strides);
    for (int32_t d = 0; d < VMCU_MAX_DIMS; ++d) {
        kept[d] = p->input_shape[d];
        reduced[d] = 1;
    }
    for (int32_t a = 0; a < p->num_axes; ++a) {
        reduced[p->axes[a]] = p->input_shape[p->axes[a]];
        kept[p->axes[a]] = 1;
    }
    int32_t outputs = 1;
    for (int32_t d = 0; d < VMCU_MAX_DIMS; ++d) {
        outputs *= kept[d];
    }
    const int32_t row = p->output_shape[VMCU_MAX_DIMS - 1];
    int32_t out_idx[VMCU_MAX_DIMS] = {0};
    for (int32_t o = 0; o < outputs; ++o) {
        const int8_t *base = input + vmcu_nd_offset(out_idx, strides);
        int32_t red_idx[VMCU_MAX_DIMS] = {0};
        int32_t sum = 0;
        for (int32_t r = 0; r < p->num_elements; ++r) {
            sum += base[vmcu_nd_offset(red_idx, strides)];
            vmcu_nd_next(red_idx, reduced, 0);
        }
        const int32_t shifted = sum - p->input_zero_point * p->num_elements;
        const int32_t q = vmcu_multiply_by_quantized_multiplier(shifted, p->multiplier, p->shift);
        scratch[o % row] = (int8_t)vmcu_clamp_i32(q + p->output_zero_point, INT8_MIN, INT8_MAX);
        if (o % row == row - 1) {
            memcpy(output + o - (row - 1), scratch, (size_t)row);
        }
        vmcu_nd_next(out_idx, kept, 0);
    }
}
