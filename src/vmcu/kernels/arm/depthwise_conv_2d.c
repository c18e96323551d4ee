/* DEPTHWISE_CONV_2D int8 for Cortex-M with the DSP extension (same results as ref/depthwise_conv_2d.c).
 *
 * Output pixels in row-major order; for each, channels four at a time: per in-bounds tap one input word
 * and one weight word, unpacked by SXTAB16 (adding input_offset) and SXTB16, then SMLABB/SMLATT into four
 * accumulators (channels 0,2 from the low unpack, 1,3 from the ROR #8 one). Interior pixels of a 3x3
 * filter run an unrolled asm window (100 instructions per 36 MACs); border pixels visit only their
 * in-bounds taps. depth_multiplier > 1 and the last C % 4 channels take the scalar path. Each output
 * pixel is computed into scratch and then stored, so the output may overlap the input as a segment plan
 * allows.
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

/* acc += the full 3x3 window of four channels: `x` at the window's top-left input, `w` at filter tap 0,
 * `c` the channel stride of both, `row` the input row stride minus 2c. 13 register operands. */
static inline void window_3x3_asm(const int8_t *x, const int8_t *w, int32_t c, int32_t row, int16x2_t offset2,
                                  int32_t *acc) {
    int32_t a0 = acc[0], a1 = acc[1], a2 = acc[2], a3 = acc[3];
    uint32_t xv, wv, xl, wl;
#define VMCU_TAP                                   \
    "sxtab16 %[xl], %[off], %[xv]\n\t"             \
    "sxtab16 %[xv], %[off], %[xv], ror #8\n\t"     \
    "sxtb16 %[wl], %[wv]\n\t"                      \
    "sxtb16 %[wv], %[wv], ror #8\n\t"              \
    "smlabb %[a0], %[xl], %[wl], %[a0]\n\t"        \
    "smlatt %[a2], %[xl], %[wl], %[a2]\n\t"        \
    "smlabb %[a1], %[xv], %[wv], %[a1]\n\t"        \
    "smlatt %[a3], %[xv], %[wv], %[a3]\n\t"
#define VMCU_ROW                                   \
    "ldr %[xv], [%[x]]\n\t"                        \
    "ldr %[wv], [%[w]]\n\t" VMCU_TAP               \
    "ldr %[xv], [%[x], %[c]]\n\t"                  \
    "ldr %[wv], [%[w], %[c]]\n\t" VMCU_TAP         \
    "add %[x], %[x], %[c], lsl #1\n\t"             \
    "add %[w], %[w], %[c], lsl #1\n\t"             \
    "ldr %[xv], [%[x]]\n\t"                        \
    "ldr %[wv], [%[w]]\n\t" VMCU_TAP
#define VMCU_NEXT_ROW                              \
    "add %[x], %[x], %[row]\n\t"                   \
    "add %[w], %[w], %[c]\n\t"
    __asm__(VMCU_ROW VMCU_NEXT_ROW VMCU_ROW VMCU_NEXT_ROW VMCU_ROW
            : [a0] "+r"(a0), [a1] "+r"(a1), [a2] "+r"(a2), [a3] "+r"(a3), [x] "+r"(x), [w] "+r"(w),
              [xv] "=&r"(xv), [wv] "=&r"(wv), [xl] "=&r"(xl), [wl] "=&r"(wl)
            : [c] "r"(c), [row] "r"(row), [off] "r"(offset2)
            : "memory");
#undef VMCU_NEXT_ROW
#undef VMCU_ROW
#undef VMCU_TAP
    acc[0] = a0;
    acc[1] = a1;
    acc[2] = a2;
    acc[3] = a3;
}

void vmcu_depthwise_conv_2d_s8(const vmcu_depthwise_conv_2d_params_t *p, const int8_t *input,
                               const int8_t *filter, const int32_t *bias, int8_t *output, int8_t *scratch) {
    const int32_t in_h = p->input_shape[1], in_w = p->input_shape[2], in_c = p->input_shape[3];
    const int32_t filter_h = p->filter_shape[1], filter_w = p->filter_shape[2], out_c = p->output_shape[3];
    const int32_t mult = p->depth_multiplier, dil_h = p->dilation_h, dil_w = p->dilation_w;
    const int32_t simd_c = mult == 1 ? out_c & ~3 : 0;
    const int32_t is_3x3 = filter_h == 3 && filter_w == 3 && dil_h == 1 && dil_w == 1;
    const int16x2_t offset2 = vmcu_dup16(p->input_offset);
    const vmcu_requant_t r = vmcu_requant_init(p->output_multiplier, p->output_shift, p->output_offset,
                                               p->activation_min, p->activation_max, bias, p->has_bias, out_c,
                                               filter_h * filter_w * 255 * 128);
    for (int32_t b = 0; b < p->output_shape[0]; ++b) {
        const int8_t *image = input + b * in_h * in_w * in_c;
        for (int32_t oy = 0; oy < p->output_shape[1]; ++oy) {
            const int32_t iy0 = oy * p->stride_h - p->pad_top;
            int32_t fy0, fy1;
            tap_range(iy0, dil_h, filter_h, in_h, &fy0, &fy1);
            for (int32_t ox = 0; ox < p->output_shape[2]; ++ox, output += out_c) {
                const int32_t ix0 = ox * p->stride_w - p->pad_left;
                int32_t fx0, fx1;
                tap_range(ix0, dil_w, filter_w, in_w, &fx0, &fx1);
                const int32_t full = is_3x3 && fy0 == 0 && fy1 == 3 && fx0 == 0 && fx1 == 3;
                for (int32_t c = 0; c < simd_c; c += 4) {
                    int32_t acc[4] = {0, 0, 0, 0};
                    if (p->has_bias) {
                        for (int32_t j = 0; j < 4; ++j) {
                            acc[j] = bias[c + j];
                        }
                    }
                    if (full) {
                        window_3x3_asm(image + (iy0 * in_w + ix0) * in_c + c, filter + c, in_c,
                                       (in_w - 2) * in_c, offset2, acc);
                    } else {
                        for (int32_t fy = fy0; fy < fy1; ++fy) {
                            const int8_t *x = image + ((iy0 + fy * dil_h) * in_w + ix0 + fx0 * dil_w) * in_c + c;
                            const int8_t *w = filter + (fy * filter_w + fx0) * out_c + c;
                            for (int32_t fx = fx0; fx < fx1; ++fx, x += dil_w * in_c, w += out_c) {
                                const uint32_t xv = vmcu_load32(x), wv = vmcu_load32(w);
                                const int16x2_t xl = __sxtab16(offset2, (int8x4_t)xv);
                                const int16x2_t xh = vmcu_sxtab16_ror8(offset2, xv);
                                const int16x2_t wl = __sxtb16((int8x4_t)wv), wh = vmcu_sxtb16_ror8(wv);
                                acc[0] = __smlabb(xl, wl, acc[0]);
                                acc[2] = __smlatt(xl, wl, acc[2]);
                                acc[1] = __smlabb(xh, wh, acc[1]);
                                acc[3] = __smlatt(xh, wh, acc[3]);
                            }
                        }
                    }
                    for (int32_t j = 0; j < 4; ++j) {
                        scratch[c + j] = vmcu_requant_one(&r, acc[j], c + j);
                    }
                }
                for (int32_t oc = simd_c; oc < out_c; ++oc) {
                    int32_t acc = p->has_bias ? bias[oc] : 0;
                    for (int32_t fy = fy0; fy < fy1; ++fy) {
                        const int32_t iy = iy0 + fy * dil_h;
                        for (int32_t fx = fx0; fx < fx1; ++fx) {
                            const int32_t x = image[(iy * in_w + ix0 + fx * dil_w) * in_c + oc / mult];
                            acc += filter[(fy * filter_w + fx) * out_c + oc] * (x + p->input_offset);
                        }
                    }
                    scratch[oc] = vmcu_requant_one(&r, acc, oc);
                }
                memcpy(output, scratch, (size_t)out_c);
            }
        }
    }
}
