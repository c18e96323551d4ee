/* FULLY_CONNECTED int8 for Cortex-M with the DSP extension (same results as ref/fully_connected.c).
 *
 * Each input row is converted once to int16 (x + input_offset) in scratch, in groups of four stored as
 * (x0,x2),(x1,x3) to match SXTAB16 / SXTAB16 ROR #8 on the weights (which also add weights_offset);
 * then output rows are SMLAD dot products, four at a time in a naked asm loop when K % 4 == 0 (each input
 * pair loaded once for the four rows: 21 instructions per 16 MACs), else two at a time in C (12 per 8),
 * buffered and requantized in chunks. The K % 4 tail follows the groups as plain int16. The input row is
 * read before any of its outputs is stored, so the output may overlap the input as a segment plan allows.
 */
#include "vmcu_arm.h"
#include "vmcu_fc_rows.h"
#include "vmcu_kernels.h"

void vmcu_fully_connected_s8(const vmcu_fully_connected_params_t *p, const int8_t *input,
                             const int8_t *filter, const int32_t *bias, int8_t *output, int8_t *scratch) {
    const int32_t depth = p->accum_depth, groups = depth / 4, tail = depth % 4, out_depth = p->output_depth;
    uint32_t *col = (uint32_t *)(void *)scratch;
    int16_t *col_tail = (int16_t *)(col + 2 * groups);
    int32_t *acc = (int32_t *)(void *)(scratch + 8 * groups + (2 * tail + 3) / 4 * 4);
    const int16x2_t x_offset = vmcu_dup16(p->input_offset);
    const vmcu_requant_t r = vmcu_requant_init(p->output_multiplier, p->output_shift, p->output_offset,
                                               p->activation_min, p->activation_max);
    for (int32_t b = 0; b < p->batches; ++b, input += depth, output += out_depth) {
        for (int32_t g = 0; g < groups; ++g) {
            const uint32_t v = vmcu_load32(input + 4 * g);
            col[2 * g] = (uint32_t)__sxtab16(x_offset, (int8x4_t)v);
            col[2 * g + 1] = (uint32_t)vmcu_sxtab16_ror8(x_offset, v);
        }
        for (int32_t j = 0; j < tail; ++j) {
            col_tail[j] = (int16_t)(input[4 * groups + j] + p->input_offset);
        }
        fc_outputs(p, col, filter, bias, &r, acc, output);
    }
}
