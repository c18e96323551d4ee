/* DEPTHWISE_CONV_2D int8 for Cortex-M with the DSP extension (same results as ref/depthwise_conv_2d.c).
 *
 * Output pixels in row-major order; for each, channels four at a time: per in-bounds tap one input word
 * and one weight word, unpacked by SXTAB16 (adding input_offset) and SXTB16, then SMLABB/SMLATT into four
 * accumulators (channels 0,2 from the low unpack, 1,3 from the ROR #8 one). Only the taps inside the
 * image are visited, so padding costs nothing. depth_multiplier > 1 and the last C % 4 channels take the
 * scalar path.
 */
#include "vmcu_arm.h"
#include "vmcu_kernels.h"

/* First and one-past-last filter index whose input coordinate origin + f * dilation lies in [0, size). */
static void tap_range(int32_t origin, int32_t dilation, int32_t filter, int32_t size, int32_t *f0, int32_t *f1) {
    *f0 = origin < 0 ? (-origin + dilation - 1) / dilation : 0;
    *f1 = size > origin ? vmcu_min_i32(filter, (size - origin + dilation - 1) / dilation) : 0;
    if (*f1 < *f0) {
        *f1 = *f0;
    }
}

void vmcu_depthwise_conv_2d_s8(const vmcu_depthwise_conv_2d_params_t *p, const int8_t *input,
                               const int8_t *filter, const int32_t *bias, int8_t *output, int8_t *scratch) {
    (void)scratch;
    const int32_t in_h = p->input_shape[1], in_w = p->input_shape[2], in_c = p->input_shape[3];
    const int32_t filter_w = p->filter_shape[2], out_c = p->output_shape[3], mult = p->depth_multiplier;
    const int32_t simd_c = mult == 1 ? out_c & ~3 : 0;
    const int32_t x_step = p->dilation_w * in_c, lo = p->activation_min, hi = p->activation_max;
    const int16x2_t offset2 = vmcu_dup16(p->input_offset);
    for (int32_t b = 0; b < p->output_shape[0]; ++b) {
        const int8_t *image = input + b * in_h * in_w * in_c;
        for (int32_t oy = 0; oy < p->output_shape[1]; ++oy) {
            const int32_t iy0 = oy * p->stride_h - p->pad_top;
            int32_t fy0, fy1;
            tap_range(iy0, p->dilation_h, p->filter_shape[1], in_h, &fy0, &fy1);
            for (int32_t ox = 0; ox < p->output_shape[2]; ++ox, output += out_c) {
                const int32_t ix0 = ox * p->stride_w - p->pad_left;
                int32_t fx0, fx1;
                tap_range(ix0, p->dilation_w, filter_w, in_w, &fx0, &fx1);
                for (int32_t c = 0; c < simd_c; c += 4) {
                    int32_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
                    if (p->has_bias) {
                        a0 = bias[c];
                        a1 = bias[c + 1];
                        a2 = bias[c + 2];
                        a3 = bias[c + 3];
                    }
                    for (int32_t fy = fy0; fy < fy1; ++fy) {
                        const int8_t *x = image + ((iy0 + fy * p->dilation_h) * in_w + ix0 + fx0 * p->dilation_w)
                                                      * in_c + c;
                        const int8_t *w = filter + (fy * filter_w + fx0) * out_c + c;
                        for (int32_t fx = fx0; fx < fx1; ++fx, x += x_step, w += out_c) {
                            const uint32_t xv = vmcu_load32(x), wv = vmcu_load32(w);
                            const int16x2_t xl = __sxtab16(offset2, (int8x4_t)xv);
                            const int16x2_t xh = vmcu_sxtab16_ror8(offset2, xv);
                            const int16x2_t wl = __sxtb16((int8x4_t)wv), wh = vmcu_sxtb16_ror8(wv);
                            a0 = __smlabb(xl, wl, a0);
                            a2 = __smlatt(xl, wl, a2);
                            a1 = __smlabb(xh, wh, a1);
                            a3 = __smlatt(xh, wh, a3);
                        }
                    }
                    output[c] = vmcu_requantize_s8(a0, p->output_multiplier[c], p->output_shift[c],
                                                   p->output_offset, lo, hi);
                    output[c + 1] = vmcu_requantize_s8(a1, p->output_multiplier[c + 1], p->output_shift[c + 1],
                                                       p->output_offset, lo, hi);
                    output[c + 2] = vmcu_requantize_s8(a2, p->output_multiplier[c + 2], p->output_shift[c + 2],
                                                       p->output_offset, lo, hi);
                    output[c + 3] = vmcu_requantize_s8(a3, p->output_multiplier[c + 3], p->output_shift[c + 3],
                                                       p->output_offset, lo, hi);
                }
                for (int32_t oc = simd_c; oc < out_c; ++oc) {
                    int32_t acc = p->has_bias ? bias[oc] : 0;
                    for (int32_t fy = fy0; fy < fy1; ++fy) {
                        const int32_t iy = iy0 + fy * p->dilation_h;
                        for (int32_t fx = fx0; fx < fx1; ++fx) {
                            const int32_t x = image[(iy * in_w + ix0 + fx * p->dilation_w) * in_c + oc / mult];
                            acc += filter[(fy * filter_w + fx) * out_c + oc] * (x + p->input_offset);
                        }
                    }
                    output[oc] = vmcu_requantize_s8(acc, p->output_multiplier[oc], p->output_shift[oc],
                                                    p->output_offset, lo, hi);
                }
            }
        }
    }
}
