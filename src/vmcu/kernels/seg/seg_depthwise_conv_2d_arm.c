/* DEPTHWISE_CONV_2D int8 on the circular pool for Cortex-M with the DSP extension (same results as
 * seg_depthwise_conv_2d.c).
 *
 * The tensor kernel (arm/depthwise_conv_2d.c, as tuned) runs the whole op on the pool's views: it resolves
 * each row of input once, stages a band of rows that straddles the wrap and builds an output row that
 * straddles it in scratch (`stage` is not used). Groups of four channels run one after another over the
 * whole op when no output byte lands on an input byte of another channel: the output then lies whole
 * pixels before its input (the segment gap) on both sides of the wrap. Otherwise (a depth multiplier
 * above 1, or another placement) only the rows whose output lands on no input byte do, and the others go
 * row by row, all channels of a row before its store.
 */
#include "vmcu_arm.h"
#include "vmcu_dw.h"

/* How many output rows (from the first) may run channel group after group: all when no output byte lands
 * on an input byte, or (a depth multiplier of 1, c bytes a pixel in both tensors) each one that does lands
 * on one of its own channel; else those whose output lies before the input's first byte. Output offset
 * `lead` is input byte 0, and output byte 0 is input byte pool - lead. */
static int32_t grouped_rows(const vmcu_depthwise_conv_2d_params_t *p, const vmcu_seg_src_t *in,
                            const vmcu_seg_dst_t *out) {
    if (in->tail != out->tail) {
        return INT32_MAX;  /* not in the same pool */
    }
    const int32_t in_bytes = vmcu_seg_nhwc_bytes(p->input_shape), out_bytes = vmcu_seg_nhwc_bytes(p->output_shape);
    const int32_t in_base = (int32_t)(in->head - in->tail), out_base = (int32_t)(out->head - out->tail);
    const int32_t pool = in->split + in_base, c = p->depth_multiplier == 1 ? p->input_shape[3] : 0;
    const int32_t lead = in_base >= out_base ? in_base - out_base : in_base - out_base + pool;
    const int before = pool - lead >= in_bytes;  /* output byte 0 lies outside the input */
    if ((lead >= out_bytes || (c && lead % c == 0)) && (before || (c && (pool - lead) % c == 0))) {
        return INT32_MAX;
    }
    return before ? lead / (p->output_shape[2] * p->output_shape[3]) : 0;
}

void vmcu_seg_depthwise_conv_2d_s8(const vmcu_depthwise_conv_2d_params_t *p, vmcu_seg_src_t input,
                                   const int8_t *filter, const int32_t *bias, vmcu_seg_dst_t output,
                                   int8_t *stage, int8_t *scratch) {
    (void)stage;
    vmcu_depthwise_conv_2d_views_s8(p, &input, filter, bias, &output, grouped_rows(p, &input, &output), NULL,
                                    scratch);
}
