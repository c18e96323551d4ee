/* FULLY_CONNECTED int8 on the circular pool, portable (same arithmetic as ref/fully_connected.c). An input
 * row that straddles the wrap is read as its two parts; the output row is computed into `stage` and then
 * stored. */
#include "vmcu_fixedpoint.h"
#include "vmcu_seg.h"

static int32_t dot(const int8_t *w, const int8_t *x, int32_t n, int32_t w_offset, int32_t x_offset) {
    int32_t acc = 0;
    for (int32_t d = 0; d < n; ++d) {
        acc += (w[d] + w_offset) * (x[d] + x_offset);
    }
    return acc;
}

void vmcu_seg_fully_connected_s8(const vmcu_fully_connected_params_t *p, vmcu_seg_src_t input,
                                 const int8_t *filter, const int32_t *bias, vmcu_seg_dst_t output,
                                 int8_t *stage, int8_t *scratch) {
    const int32_t depth = p->accum_depth, out_depth = p->output_depth;
    (void)scratch;
    for (int32_t b = 0; b < p->batches; ++b) {
        const int32_t row = b * depth;
        const int32_t first = vmcu_min_i32(depth, vmcu_seg_run(input.split, row));
        const int8_t *x0 = vmcu_seg_at(&input, row), *x1 = input.tail;
        for (int32_t oc = 0; oc < out_depth; ++oc) {
            const int8_t *w = filter + oc * depth;
            int32_t acc = dot(w, x0, first, p->weights_offset, p->input_offset) +
                          dot(w + first, x1, depth - first, p->weights_offset, p->input_offset);
            if (p->has_bias) {
                acc += bias[oc];
            }
            acc = vmcu_multiply_by_quantized_multiplier(acc, p->output_multiplier[oc], p->output_shift[oc]);
            stage[oc] = (int8_t)vmcu_clamp_i32(acc + p->output_offset, p->activation_min, p->activation_max);
        }
        vmcu_seg_write(&output, b * out_depth, stage, out_depth);
    }
}
