/* MUL int8 (TFLM reference_integer_ops::Mul / BroadcastMul6DSlow). */
#include "vmcu_fixedpoint.h"
#include "vmcu_nd.h"

static inline int8_t mul_one(const vmcu_mul_params_t *p, int32_t a, int32_t b) {
    const int32_t product = (a + p->input1_offset) * (b + p->input2_offset);
    const int32_t raw = vmcu_multiply_by_quantized_multiplier(product, p->output_multiplier, p->output_shift);
    return (int8_t)vmcu_clamp_i32(raw + p->output_offset, p->activation_min, p->activation_max);
}

void vmcu_mul_s8(const vmcu_mul_params_t *p, const int8_t *input1, const int8_t *input2, int8_t *output) {
    int32_t s1[VMCU_MAX_DIMS], s2[VMCU_MAX_DIMS], so[VMCU_MAX_DIMS];
    const int32_t size = vmcu_nd_strides(p->output_shape, 0, so);
    if (!p->requires_broadcast) {
        for (int32_t i = 0; i < size; ++i) {
            output[i] = mul_one(p, input1[i], input2[i]);
        }
        return;
    }
    vmcu_nd_strides(p->input1_shape, p->output_shape, s1);
    vmcu_nd_strides(p->input2_shape, p->output_shape, s2);
    const int32_t inner = p->output_shape[VMCU_MAX_DIMS - 1];
    const int32_t i1 = s1[VMCU_MAX_DIMS - 1], i2 = s2[VMCU_MAX_DIMS - 1];
    int32_t idx[VMCU_MAX_DIMS] = {0};
    for (int32_t row = 0; row < size / inner; ++row) {
        const int8_t *a = input1 + vmcu_nd_offset(idx, s1);
        const int8_t *b = input2 + vmcu_nd_offset(idx, s2);
        for (int32_t i = 0; i < inner; ++i) {
            *output++ = mul_one(p, a[i * i1], b[i * i2]);
        }
        vmcu_nd_next(idx, p->output_shape, 1);
    }
}
