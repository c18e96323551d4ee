/* FULLY_CONNECTED int8 on the circular pool for Cortex-M with the DSP extension: arm/fully_connected.c
 * with its input read and its output written through segment views (same results as
 * seg_fully_connected.c).
 *
 * The tensor kernel converts each input row once to int16 in scratch and runs SMLAD dot products on it;
 * here the row is resolved once, and only a row that straddles the wrap is converted group by group,
 * each group resolved (and gathered if it straddles). The output row is requantized in place, or in
 * `stage` when it straddles the wrap and then stored in two parts. The row is read before any of its
 * outputs is stored.
 */
#include "vmcu_arm.h"
#include "vmcu_seg.h"

/* Dot products of the converted row with weight rows w0 and w1 (K = 4 * groups + tail). */
static inline void dot_2(const uint32_t *x, const int8_t *w0, const int8_t *w1, int32_t groups, int32_t tail,
                         int16x2_t w_offset, int32_t weights_offset, int32_t *s0, int32_t *s1) {
    int32_t a0 = *s0, a1 = *s1;
    for (int32_t g = 0; g < groups; ++g, x += 2, w0 += 4, w1 += 4) {
        const uint32_t u0 = vmcu_load32(w0), u1 = vmcu_load32(w1);
        a0 = __smlad((int16x2_t)x[0], __sxtab16(w_offset, (int8x4_t)u0), a0);
        a0 = __smlad((int16x2_t)x[1], vmcu_sxtab16_ror8(w_offset, u0), a0);
        a1 = __smlad((int16x2_t)x[0], __sxtab16(w_offset, (int8x4_t)u1), a1);
        a1 = __smlad((int16x2_t)x[1], vmcu_sxtab16_ror8(w_offset, u1), a1);
    }
    const int16_t *t = (const int16_t *)x;
    for (int32_t j = 0; j < tail; ++j) {
        a0 += t[j] * (w0[j] + weights_offset);
        a1 += t[j] * (w1[j] + weights_offset);
    }
    *s0 = a0;
    *s1 = a1;
}

/* Converts input row `row` (depth = 4 * groups + tail bytes) to int16 in col and col_tail. */
static void convert_row(const vmcu_seg_src_t *in, int32_t row, int32_t groups, int32_t tail, int32_t input_offset,
                        uint32_t *col, int16_t *col_tail) {
    const int16x2_t x_offset = vmcu_dup16(input_offset);
    if (!vmcu_seg_straddles(in->split, row, 4 * groups + tail)) {
        const int8_t *x = vmcu_seg_at(in, row);
        for (int32_t g = 0; g < groups; ++g) {
            const uint32_t v = vmcu_load32(x + 4 * g);
            col[2 * g] = (uint32_t)__sxtab16(x_offset, (int8x4_t)v);
            col[2 * g + 1] = (uint32_t)vmcu_sxtab16_ror8(x_offset, v);
        }
        for (int32_t j = 0; j < tail; ++j) {
            col_tail[j] = (int16_t)(x[4 * groups + j] + input_offset);
        }
        return;
    }
    for (int32_t g = 0; g < groups; ++g) {
        int8_t bounce[4];
        const uint32_t v = vmcu_load32(vmcu_seg_span(in, row + 4 * g, 4, bounce));
        col[2 * g] = (uint32_t)__sxtab16(x_offset, (int8x4_t)v);
        col[2 * g + 1] = (uint32_t)vmcu_sxtab16_ror8(x_offset, v);
    }
    for (int32_t j = 0; j < tail; ++j) {
        col_tail[j] = (int16_t)(*vmcu_seg_at(in, row + 4 * groups + j) + input_offset);
    }
}

void vmcu_seg_fully_connected_s8(const vmcu_fully_connected_params_t *p, vmcu_seg_src_t input,
                                 const int8_t *filter, const int32_t *bias, vmcu_seg_dst_t output,
                                 int8_t *stage, int8_t *scratch) {
    const int32_t depth = p->accum_depth, groups = depth / 4, tail = depth % 4, out_depth = p->output_depth;
    uint32_t *col = (uint32_t *)(void *)scratch;
    int16_t *col_tail = (int16_t *)(col + 2 * groups);
    int32_t *acc = (int32_t *)(void *)(scratch + 8 * groups + (2 * tail + 3) / 4 * 4);
    const int16x2_t w_offset = vmcu_dup16(p->weights_offset);
    const vmcu_requant_t r = vmcu_requant_init(p->output_multiplier, p->output_shift, p->output_offset,
                                               p->activation_min, p->activation_max);
    for (int32_t b = 0; b < p->batches; ++b) {
        convert_row(&input, b * depth, groups, tail, p->input_offset, col, col_tail);
        int8_t *const out = vmcu_seg_unit(&output, b * out_depth, out_depth, stage);
        for (int32_t c0 = 0; c0 < out_depth; c0 += VMCU_ACC_CHUNK) {
            const int32_t n = vmcu_min_i32(VMCU_ACC_CHUNK, out_depth - c0);
            for (int32_t i = 0; i < n; i += 2) {
                const int32_t i1 = i + 1 < n ? i + 1 : i;
                int32_t s0 = p->has_bias ? bias[c0 + i] : 0, s1 = p->has_bias ? bias[c0 + i1] : 0;
                dot_2(col, filter + (c0 + i) * depth, filter + (c0 + i1) * depth, groups, tail, w_offset,
                      p->weights_offset, &s0, &s1);
                acc[i] = s0;
                acc[i1] = s1;
            }
            vmcu_requant_block(&r, acc, c0, n, out + c0, NULL);
        }
        vmcu_seg_commit(&output, b * out_depth, out_depth, out, stage);
    }
}
