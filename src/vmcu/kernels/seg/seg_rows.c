/* Row ops on the circular pool, portable (same arithmetic as ref/softmax.c, mean.c, pad.c): each row of
 * the output's last axis is built in `stage` from the input it depends on, then stored with at most one
 * split. SOFTMAX resolves each input row once (through `scratch` when the row straddles the wrap); an int8
 * row that does not straddle is written in place instead, element c after input element c was read (the
 * gap keeps output byte c at or below input byte c, and the row's max and sum are taken first). MEAN
 * resolves the span of each output's reduced elements once (each element on its own in the spans that
 * straddle the wrap); PAD copies an input row in one or two parts. */
#include "vmcu_fixedpoint.h"
#include "vmcu_nd.h"
#include "vmcu_seg.h"
#include "vmcu_softmax_row.h"

void vmcu_seg_softmax_s8(const vmcu_softmax_params_t *p, vmcu_seg_src_t input, vmcu_seg_dst_t output,
                         int8_t *stage, int8_t *scratch) {
    for (int32_t r = 0, row = 0; r < p->outer_size; ++r, row += p->depth) {
        const int8_t *in = vmcu_seg_span(&input, row, p->depth, scratch);
        const row_state_t s = row_state(p, in);
        const int staged = vmcu_seg_straddles(output.split, row, p->depth);
        int8_t *out = staged ? stage : vmcu_seg_dst_at(&output, row);
        for (int32_t c = 0; c < p->depth; ++c) {
            out[c] = (int8_t)probability(p, &s, in[c], 8);
        }
        if (staged) {
            vmcu_seg_write(&output, row, stage, p->depth);
        }
    }
}

void vmcu_seg_softmax_s8_s16(const vmcu_softmax_params_t *p, vmcu_seg_src_t input, vmcu_seg_dst_t output,
                             int8_t *stage, int8_t *scratch) {
    for (int32_t r = 0, row = 0; r < p->outer_size; ++r, row += p->depth) {
        const int8_t *in = vmcu_seg_span(&input, row, p->depth, scratch);
        const row_state_t s = row_state(p, in);
        for (int32_t c = 0; c < p->depth; ++c) {
            const int16_t y = (int16_t)probability(p, &s, in[c], 16);
            memcpy(stage + 2 * c, &y, sizeof y);
        }
        vmcu_seg_write(&output, 2 * row, stage, 2 * p->depth);
    }
}

void vmcu_seg_mean_s8(const vmcu_mean_params_t *p, vmcu_seg_src_t input, vmcu_seg_dst_t output, int8_t *stage) {
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
    int32_t span = 1;  /* bytes from an output's first reduced element to its last, inclusive */
    for (int32_t d = 0; d < VMCU_MAX_DIMS; ++d) {
        span += (reduced[d] - 1) * strides[d];
    }
    const int32_t row = p->output_shape[VMCU_MAX_DIMS - 1];
    int32_t out_idx[VMCU_MAX_DIMS] = {0};
    for (int32_t o = 0; o < outputs; ++o) {
        const int32_t base = vmcu_nd_offset(out_idx, strides);
        int32_t red_idx[VMCU_MAX_DIMS] = {0};
        int32_t sum = 0;
        if (!vmcu_seg_straddles(input.split, base, span)) {
            const int8_t *x = vmcu_seg_at(&input, base);
            for (int32_t r = 0; r < p->num_elements; ++r) {
                sum += x[vmcu_nd_offset(red_idx, strides)];
                vmcu_nd_next(red_idx, reduced, 0);
            }
        } else {
            for (int32_t r = 0; r < p->num_elements; ++r) {
                sum += *vmcu_seg_at(&input, base + vmcu_nd_offset(red_idx, strides));
                vmcu_nd_next(red_idx, reduced, 0);
            }
        }
        const int32_t shifted = sum - p->input_zero_point * p->num_elements;
        const int32_t q = vmcu_multiply_by_quantized_multiplier(shifted, p->multiplier, p->shift);
        stage[o % row] = (int8_t)vmcu_clamp_i32(q + p->output_zero_point, INT8_MIN, INT8_MAX);
        if (o % row == row - 1) {
            vmcu_seg_write(&output, o - (row - 1), stage, row);
        }
        vmcu_nd_next(out_idx, kept, 0);
    }
}

void vmcu_seg_pad_s8(const vmcu_pad_params_t *p, vmcu_seg_src_t input, vmcu_seg_dst_t output, int8_t *stage) {
    const int32_t last = VMCU_MAX_DIMS - 1;
    const int32_t out_inner = p->output_shape[last], in_inner = p->input_shape[last];
    const int32_t before = p->paddings[last][0], after = p->paddings[last][1];
    int32_t in_strides[VMCU_MAX_DIMS], out_strides[VMCU_MAX_DIMS];
    vmcu_nd_strides(p->input_shape, 0, in_strides);
    const int32_t rows = vmcu_nd_strides(p->output_shape, 0, out_strides) / out_inner;
    int32_t idx[VMCU_MAX_DIMS] = {0};
    for (int32_t r = 0, row = 0; r < rows; ++r, row += out_inner) {
        int32_t inside = 1, in_off = 0;
        for (int32_t d = 0; d < last; ++d) {
            const int32_t i = idx[d] - p->paddings[d][0];
            inside &= i >= 0 && i < p->input_shape[d];
            in_off += i * in_strides[d];
        }
        if (inside) {
            vmcu_seg_read(&input, in_off, stage + before, in_inner);
            memset(stage, p->pad_value, (size_t)before);
            memset(stage + before + in_inner, p->pad_value, (size_t)after);
            vmcu_seg_write(&output, row, stage, out_inner);
        } else {
            vmcu_seg_fill(&output, row, (int8_t)p->pad_value, out_inner);
        }
        vmcu_nd_next(idx, p->output_shape, 1);
    }
}
