/* LOGISTIC int8 (TFLM reference_integer_ops::Logistic): input rescaled to Q4.27, gemmlowp logistic,
 * output scale 1/256 with zero point -128. */
#include "vmcu_fixedpoint.h"
#include "vmcu_kernels.h"

void vmcu_logistic_s8(const vmcu_logistic_params_t *p, const int8_t *input, int8_t *output) {
    for (int32_t i = 0; i < p->size; ++i) {
        const int32_t x = input[i] - p->input_zero_point;
        if (x <= -p->input_range_radius) {
            output[i] = INT8_MIN;
        } else if (x >= p->input_range_radius) {
            output[i] = INT8_MAX;
        } else {
            const int32_t x_q4 = vmcu_multiply_by_quantized_multiplier(x, p->input_multiplier,
                                                                       p->input_left_shift);
            const int32_t y_q23 = vmcu_rounding_divide_by_pot(vmcu_logistic_q4(x_q4), 31 - 8);
            output[i] = (int8_t)vmcu_clamp_i32(y_q23 - 128, INT8_MIN, INT8_MAX);
        }
    }
}
