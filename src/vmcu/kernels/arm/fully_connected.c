/* FULLY_CONNECTED int8 for Cortex-M with the DSP extension (same results as ref/fully_connected.c).
 *
 * Each input row is converted once to int16 (x + input_offset) in scratch, in groups of four stored as
 * (x0,x2),(x1,x3) to match SXTAB16 / SXTAB16 ROR #8 on the weights (which also add weights_offset);
 * then two output rows at a time are SMLAD dot products: 12 instructions per 8 MACs. The K % 4 tail
 * follows the groups as plain int16.
 */
#include "vmcu_arm.h"
#include "vmcu_kernels.h"

void vmcu_fully_connected_s8(const vmcu_fully_connected_params_t *p, const int8_t *input,
                             const int8_t *filter, const int32_t *bias, int8_t *output, int8_t *scratch) {
    const int32_t depth = p->accum_depth, groups = depth / 4, tail = depth % 4;
    uint32_t *col = (uint32_t *)(void *)scratch;
    int16_t *col_tail = (int16_t *)(col + 2 * groups);
    const int16x2_t x_offset = vmcu_dup16(p->input_offset), w_offset = vmcu_dup16(p->weights_offset);
    for (int32_t b = 0; b < p->batches; ++b, input += depth, output += p->output_depth) {
        for (int32_t g = 0; g < groups; ++g) {
            const uint32_t v = vmcu_load32(input + 4 * g);
            col[2 * g] = (uint32_t)__sxtab16(x_offset, (int8x4_t)v);
            col[2 * g + 1] = (uint32_t)vmcu_sxtab16_ror8(x_offset, v);
        }
        for (int32_t j = 0; j < tail; ++j) {
            col_tail[j] = (int16_t)(input[4 * groups + j] + p->input_offset);
        }
        for (int32_t oc = 0; oc < p->output_depth; oc += 2) {
            const int32_t oc1 = oc + 1 < p->output_depth ? oc + 1 : oc;
            const int8_t *w0 = filter + oc * depth, *w1 = filter + oc1 * depth;
            int32_t s0 = p->has_bias ? bias[oc] : 0, s1 = p->has_bias ? bias[oc1] : 0;
            const uint32_t *x = col;
            for (int32_t g = 0; g < groups; ++g, x += 2, w0 += 4, w1 += 4) {
                const uint32_t u0 = vmcu_load32(w0), u1 = vmcu_load32(w1);
                s0 = __smlad((int16x2_t)x[0], __sxtab16(w_offset, (int8x4_t)u0), s0);
                s0 = __smlad((int16x2_t)x[1], vmcu_sxtab16_ror8(w_offset, u0), s0);
                s1 = __smlad((int16x2_t)x[0], __sxtab16(w_offset, (int8x4_t)u1), s1);
                s1 = __smlad((int16x2_t)x[1], vmcu_sxtab16_ror8(w_offset, u1), s1);
            }
            for (int32_t j = 0; j < tail; ++j) {
                s0 += col_tail[j] * (w0[j] + p->weights_offset);
                s1 += col_tail[j] * (w1[j] + p->weights_offset);
            }
            output[oc] = (int8_t)vmcu_clamp_i32(vmcu_requantize(s0, p->output_multiplier[oc], p->output_shift[oc])
                                                + p->output_offset, p->activation_min, p->activation_max);
            output[oc1] = (int8_t)vmcu_clamp_i32(vmcu_requantize(s1, p->output_multiplier[oc1], p->output_shift[oc1])
                                                 + p->output_offset, p->activation_min, p->activation_max);
        }
    }
}
