/* CONV_2D int8 on the circular pool, portable (same arithmetic as ref/conv_2d.c). Per output pixel, each
 * in-bounds tap's input pixel is resolved once per output channel (through `scratch` when it straddles
 * the wrap); the pixel's channels are computed into `stage` and then stored. */
#include "vmcu_fixedpoint.h"
#include "vmcu_seg.h"

void vmcu_seg_conv_2d_s8(const vmcu_conv_2d_params_t *p, vmcu_seg_src_t input, const int8_t *filter,
                         const int32_t *bias, vmcu_seg_dst_t output, int8_t *stage, int8_t *scratch) {
    const int32_t batches = p->input_shape[0], in_h = p->input_shape[1], in_w = p->input_shape[2];
    const int32_t in_c = p->input_shape[3];
    const int32_t filter_h = p->filter_shape[1], filter_w = p->filter_shape[2];
    const int32_t out_h = p->output_shape[1], out_w = p->output_shape[2], out_c = p->output_shape[3];
    int32_t unit = 0;
    for (int32_t b = 0; b < batches; ++b) {
        for (int32_t oy = 0; oy < out_h; ++oy) {
            const int32_t in_y0 = oy * p->stride_h - p->pad_top;
            for (int32_t ox = 0; ox < out_w; ++ox, unit += out_c) {
                const int32_t in_x0 = ox * p->stride_w - p->pad_left;
                for (int32_t oc = 0; oc < out_c; ++oc) {
                    int32_t acc = 0;
                    for (int32_t fy = 0; fy < filter_h; ++fy) {
                        const int32_t iy = in_y0 + p->dilation_h * fy;
                        if (iy < 0 || iy >= in_h) {
                            continue;
                        }
                        for (int32_t fx = 0; fx < filter_w; ++fx) {
                            const int32_t ix = in_x0 + p->dilation_w * fx;
                            if (ix < 0 || ix >= in_w) {
                                continue;
                            }
                            const int8_t *x = vmcu_seg_span(&input, ((b * in_h + iy) * in_w + ix) * in_c, in_c,
                                                            scratch);
                            const int8_t *w = filter + ((oc * filter_h + fy) * filter_w + fx) * in_c;
                            for (int32_t ic = 0; ic < in_c; ++ic) {
                                acc += w[ic] * (x[ic] + p->input_offset);
                            }
                        }
                    }
                    if (p->has_bias) {
                        acc += bias[oc];
                    }
                    acc = vmcu_multiply_by_quantized_multiplier(acc, p->output_multiplier[oc], p->output_shift[oc]);
                    stage[oc] = (int8_t)vmcu_clamp_i32(acc + p->output_offset, p->activation_min, p->activation_max);
                }
                vmcu_seg_write(&output, unit, stage, out_c);
            }
        }
    }
}
