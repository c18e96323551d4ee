/* CONV_2D int8, per-channel (TFLM reference_integer_ops::ConvPerChannel). Each output pixel is computed
 * into scratch (out_c bytes) and then stored, so the output may overlap the input as a segment plan
 * allows. */
#include <string.h>

#include "vmcu_fixedpoint.h"
#include "vmcu_kernels.h"

void vmcu_conv_2d_s8(const vmcu_conv_2d_params_t *p, const int8_t *input, const int8_t *filter,
                     const int32_t *bias, int8_t *output, int8_t *scratch) {
    const int32_t batches = p->input_shape[0], in_h = p->input_shape[1], in_w = p->input_shape[2];
    const int32_t in_c = p->input_shape[3];
    const int32_t filter_h = p->filter_shape[1], filter_w = p->filter_shape[2];
    const int32_t out_h = p->output_shape[1], out_w = p->output_shape[2], out_c = p->output_shape[3];
    for (int32_t b = 0; b < batches; ++b) {
        for (int32_t oy = 0; oy < out_h; ++oy) {
            const int32_t in_y0 = oy * p->stride_h - p->pad_top;
            for (int32_t ox = 0; ox < out_w; ++ox) {
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
                            const int8_t *x = input + ((b * in_h + iy) * in_w + ix) * in_c;
                            const int8_t *w = filter + ((oc * filter_h + fy) * filter_w + fx) * in_c;
                            for (int32_t ic = 0; ic < in_c; ++ic) {
                                acc += w[ic] * (x[ic] + p->input_offset);
                            }
                        }
                    }
                    if (p->has_bias) {
                        acc += bias[oc];
                    }
                    acc = vmcu_multiply_by_quantized_multiplier(acc, p->output_multiplier[oc],
                                                                p->output_shift[oc]);
                    acc = vmcu_clamp_i32(acc + p->output_offset, p->activation_min, p->activation_max);
                    scratch[oc] = (int8_t)acc;
                }
                memcpy(output + ((b * out_h + oy) * out_w + ox) * out_c, scratch, (size_t)out_c);
            }
        }
    }
}
