/* FULLY_CONNECTED int8 on the circular pool for Cortex-M with the DSP extension (same results as
 * seg_fully_connected.c).
 *
 * Rows in order: each maximal run of rows whose input and output straddle neither tensor's wrap is one call
 * of the tensor kernel (arm/fully_connected.c, as tuned) on the flat rows. A row that straddles a wrap
 * runs rows_seg on that kernel's own row loops (vmcu_fc_rows.h): the input row converted to int16 in scratch (group by
 * group, each resolved, when it straddles), SMLAD dot products, the output row requantized in place or in
 * `stage` when it straddles the wrap and then stored in two parts. The row is read before any of its
 * outputs is stored.
 */
#include "vmcu_arm.h"
#include "vmcu_fc_rows.h"
#include "vmcu_seg.h"

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

/* Rows [b0, b1) with the copied loops: each input row converted once (group by group, each resolved, when
 * it straddles the wrap), each output row requantized in place or, when it straddles the wrap, in `stage`. */
static void rows_seg(const vmcu_fully_connected_params_t *p, const vmcu_seg_src_t *input, const int8_t *filter,
                     const int32_t *bias, const vmcu_seg_dst_t *output, int8_t *stage, int8_t *scratch, int32_t b0,
                     int32_t b1) {
    const int32_t depth = p->accum_depth, groups = depth / 4, tail = depth % 4, out_depth = p->output_depth;
    uint32_t *col = (uint32_t *)(void *)scratch;
    int16_t *col_tail = (int16_t *)(col + 2 * groups);
    int32_t *acc = (int32_t *)(void *)(scratch + 8 * groups + (2 * tail + 3) / 4 * 4);
    const vmcu_requant_t r = vmcu_requant_init(p->output_multiplier, p->output_shift, p->output_offset,
                                               p->activation_min, p->activation_max);
    for (int32_t b = b0; b < b1; ++b) {
        convert_row(input, b * depth, groups, tail, p->input_offset, col, col_tail);
        int8_t *const out = vmcu_seg_unit(output, b * out_depth, out_depth, stage);
        fc_outputs(p, col, filter, bias, &r, acc, out);
        vmcu_seg_commit(output, b * out_depth, out_depth, out, stage);
    }
}

/* The rows when a tensor wraps: runs of rows that straddle neither wrap to the tensor kernel, the others to
 * rows_seg, in order. Apart from the entry, which then stays a test and a tail call. */
static __attribute__((noinline)) void rows_wrapped(const vmcu_fully_connected_params_t *p,
                                                   const vmcu_seg_src_t *input, const int8_t *filter,
                                                   const int32_t *bias, const vmcu_seg_dst_t *output, int8_t *stage,
                                                   int8_t *scratch) {
    const int32_t depth = p->accum_depth, out_depth = p->output_depth;
    vmcu_fully_connected_params_t q = *p;
    for (int32_t b = 0; b < p->batches;) {
        const int32_t flat = vmcu_min_i32(vmcu_seg_run(input->split, b * depth) / depth,
                                          vmcu_seg_run(output->split, b * out_depth) / out_depth);
        const int32_t k = vmcu_min_i32(p->batches - b, flat);
        if (k == 0) {
            rows_seg(p, input, filter, bias, output, stage, scratch, b, b + 1);
            b += 1;
            continue;
        }
        q.batches = k;
        vmcu_fully_connected_s8(&q, vmcu_seg_at(input, b * depth), filter, bias,
                                vmcu_seg_dst_at(output, b * out_depth), scratch);
        b += k;
    }
}

void vmcu_seg_fully_connected_s8(const vmcu_fully_connected_params_t *p, vmcu_seg_src_t input,
                                 const int8_t *filter, const int32_t *bias, vmcu_seg_dst_t output,
                                 int8_t *stage, int8_t *scratch) {
    if (vmcu_seg_contiguous(input.split, p->batches * p->accum_depth) &&
        vmcu_seg_contiguous(output.split, p->batches * p->output_depth)) {
        vmcu_fully_connected_s8(p, input.head, filter, bias, output.head, scratch);  /* nothing wraps */
        return;
    }
    rows_wrapped(p, &input, filter, bias, &output, stage, scratch);
}
