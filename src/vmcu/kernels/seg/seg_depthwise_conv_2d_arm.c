/* DEPTHWISE_CONV_2D int8 on the circular pool for Cortex-M with the DSP extension (same results as
 * seg_depthwise_conv_2d.c).
 *
 * The work goes to the tensor kernel (arm/depthwise_conv_2d.c, as tuned) wherever the wrap allows: the
 * output rows are walked in order, and each maximal run of them whose input band and output rows straddle
 * neither tensor's wrap is one call on the flat sub-image (its padding adjusted); so is a row whose output
 * alone straddles the wrap, into `stage` (one output row; NULL when the arena has no room for it) and then
 * stored in two parts. The other rows that straddle a wrap run rows_seg, a copy of the tensor kernel's row
 * loop (helpers below unchanged: unpacked weights per group of four channels, an asm loop over 3-wide
 * windows, a C loop over other windows, a scalar path for the last C % 4 channels and depth_multiplier > 1,
 * a staged output row stored once all its inputs have been read, with at most one split). Its band of input
 * rows is one pointer when it does not straddle the wrap. When it does, 3-wide windows gather chunks of
 * VMCU_SEG_DW_CHUNK pixels' taps into a dense word buffer (one resolve per input row of the chunk; the input
 * zero point stands for padding as in border windows) for the asm loop, and other windows run the C loop on
 * the rows before the wrap and on those after it, tap by tap only in a row that straddles it.
 */
#include "vmcu_arm.h"
#include "vmcu_seg.h"

/* First and one-past-last filter index whose input coordinate origin + f * dilation lies in [0, size). */
static void tap_range(int32_t origin, int32_t dilation, int32_t filter, int32_t size, int32_t *f0,
                      int32_t *f1) {
    if (dilation == 1) {
        *f0 = vmcu_min_i32(vmcu_max_i32(-origin, 0), filter);
        *f1 = vmcu_max_i32(*f0, vmcu_min_i32(filter, size - origin));
        return;
    }
    *f0 = origin < 0 ? (-origin + dilation - 1) / dilation : 0;
    *f1 = size > origin ? vmcu_min_i32(filter, (size - origin + dilation - 1) / dilation) : 0;
    if (*f1 < *f0) {
        *f1 = *f0;
    }
}

/* For `pixels` output pixels of one row and one group of four channels whose windows span three full
 * columns: acc[4i .. 4i + 4) = bias4 plus `rows` window rows of three taps, pixel i's first tap at
 * x + i * x_step (channel c), `w` the unpacked weights of that tap row (two words per tap), `c` the input
 * channel stride, `row` the input row stride minus 2c. 26 instructions per window row of 12 MACs (three
 * rows unrolled), 20 per pixel; 13 register operands, the loop state in memory. */
static void pixels3_asm(const int8_t *x, int32_t x_step, const int16x2_t *w, int32_t rows, int32_t c,
                        int32_t row, int16x2_t offset2, const int32_t *bias4, int32_t *acc, int32_t pixels) {
    int32_t a0, a1, a2, a3, rows_left;
    const int16x2_t *wp;
    const int8_t *xp;
    uint32_t xv, xl, wl, wh;
#define VMCU_TAP                                   \
    "ldrd %[wl], %[wh], [%[wp]], #8\n\t"           \
    "sxtab16 %[xl], %[off], %[xv]\n\t"             \
    "sxtab16 %[xv], %[off], %[xv], ror #8\n\t"     \
    "smlabb %[a0], %[xl], %[wl], %[a0]\n\t"        \
    "smlatt %[a2], %[xl], %[wl], %[a2]\n\t"        \
    "smlabb %[a1], %[xv], %[wh], %[a1]\n\t"        \
    "smlatt %[a3], %[xv], %[wh], %[a3]\n\t"
#define VMCU_ROW                                   \
    "ldr %[xv], [%[xp]]\n\t" VMCU_TAP              \
    "ldr %[xv], [%[xp], %[c]]\n\t" VMCU_TAP        \
    "add %[xp], %[xp], %[c], lsl #1\n\t"           \
    "ldr %[xv], [%[xp]]\n\t" VMCU_TAP              \
    "add %[xp], %[xp], %[row]\n\t"
    __asm__ volatile("3:\n\t"
                     "ldr %[xl], %[bias]\n\t"
                     "ldrd %[a0], %[a1], [%[xl]]\n\t"
                     "ldrd %[a2], %[a3], [%[xl], #8]\n\t"
                     "ldr %[xp], %[x]\n\t"
                     "ldr %[wp], %[w]\n\t"
                     "ldr %[xl], %[rows]\n\t"
                     "cmp %[xl], #3\n\t"
                     "bne 2f\n\t" VMCU_ROW VMCU_ROW VMCU_ROW  /* the usual full window, unrolled */
                     "b 5f\n\t"
                     "2:\n\t"
                     "str %[xl], %[left]\n\t"
                     "1:\n\t" VMCU_ROW
                     "ldr %[xl], %[left]\n\t"
                     "subs %[xl], %[xl], #1\n\t"
                     "str %[xl], %[left]\n\t"
                     "bne 1b\n\t"
                     "5:\n\t"
                     "ldr %[xl], %[acc]\n\t"
                     "strd %[a0], %[a1], [%[xl]], #16\n\t"
                     "strd %[a2], %[a3], [%[xl], #-8]\n\t"
                     "str %[xl], %[acc]\n\t"
                     "ldr %[xl], %[x]\n\t"
                     "ldr %[wl], %[step]\n\t"
                     "add %[xl], %[xl], %[wl]\n\t"
                     "str %[xl], %[x]\n\t"
                     "ldr %[xl], %[pixels]\n\t"
                     "subs %[xl], %[xl], #1\n\t"
                     "str %[xl], %[pixels]\n\t"
                     "bne 3b\n\t"
                     : [a0] "=&r"(a0), [a1] "=&r"(a1), [a2] "=&r"(a2), [a3] "=&r"(a3), [xp] "=&r"(xp),
                       [wp] "=&r"(wp), [xv] "=&r"(xv), [xl] "=&r"(xl), [wl] "=&r"(wl), [wh] "=&r"(wh),
                       [x] "+m"(x), [acc] "+m"(acc), [pixels] "+m"(pixels), [left] "=m"(rows_left)
                     : [c] "r"(c), [row] "r"(row), [off] "r"(offset2), [bias] "m"(bias4), [w] "m"(w),
                       [rows] "m"(rows), [step] "m"(x_step)
                     : "cc", "memory");
#undef VMCU_ROW
#undef VMCU_TAP
}

/* acc[0..4) += the in-bounds taps [fy0, fy1) x [fx0, fx1) of four channels: `x` at image row iy0 + fy0 *
 * dilation_h, column 0, channel c; ix0 the window's first input column; `w` the group's unpacked weights. */
static void window_any(const vmcu_depthwise_conv_2d_params_t *p, const int8_t *x, int32_t ix0,
                       const int16x2_t *w, int32_t fy0, int32_t fy1, int32_t fx0, int32_t fx1,
                       int16x2_t offset2, int32_t *acc) {
    const int32_t in_c = p->input_shape[3], filter_w = p->filter_shape[2];
    const int32_t x_row = p->dilation_h * p->input_shape[2] * in_c;
    for (int32_t fy = fy0; fy < fy1; ++fy, x += x_row) {
        for (int32_t fx = fx0; fx < fx1; ++fx) {
            const int16x2_t *wt = w + 2 * (fy * filter_w + fx);
            const uint32_t xv = vmcu_load32(x + (ix0 + fx * p->dilation_w) * in_c);
            const int16x2_t xl = __sxtab16(offset2, (int8x4_t)xv), xh = vmcu_sxtab16_ror8(offset2, xv);
            acc[0] = __smlabb(xl, wt[0], acc[0]);
            acc[2] = __smlatt(xl, wt[0], acc[2]);
            acc[1] = __smlabb(xh, wt[1], acc[1]);
            acc[3] = __smlatt(xh, wt[1], acc[3]);
        }
    }
}

/* A 3-wide window cut by the left or right border: its `rows` rows are staged as words with the input
 * zero point for the absent columns, then run through the same asm loop. */
static void border_window3(const int8_t *x, int32_t ix0, int32_t in_w, int32_t in_c, int32_t x_row,
                           int32_t rows, uint32_t zp_word, const int16x2_t *w, int16x2_t offset2,
                           const int32_t *bias4, int32_t *acc) {
    uint32_t window[3 * 3];
    for (int32_t fy = 0; fy < rows; ++fy, x += x_row) {
        for (int32_t fx = 0; fx < 3; ++fx) {
            const int32_t ix = ix0 + fx;
            window[3 * fy + fx] = ix >= 0 && ix < in_w ? vmcu_load32(x + ix * in_c) : zp_word;
        }
    }
    pixels3_asm((const int8_t *)window, 0, w, rows, 4, 4, offset2, bias4, acc, 1);
}

/* Requantization of one group of four channels: the fast path of vmcu_requant_value for all four when
 * every accumulator of the group allows it, else the checked one. */
typedef struct {
    int32_t m[4], shift[4], e1[4];
    int32_t odd, zp, lo, hi, full_range, fast;
} group_t;

/* `fast` needs |acc| < 2^30: |bias| < 2^29 does it, as the taps add at most taps * 255 * 128 < 2^29. */
static void group_init(group_t *g, const vmcu_depthwise_conv_2d_params_t *p, const int32_t *bias, int32_t c,
                       int32_t taps) {
    g->zp = p->output_offset;
    g->odd = 2 * g->zp + 1;
    g->lo = p->activation_min;
    g->hi = p->activation_max;
    g->full_range = g->lo == -128 && g->hi == 127;
    g->fast = g->full_range && taps < (1 << 29) / (255 * 128);
    for (int32_t j = 0; j < 4; ++j) {
        g->m[j] = p->output_multiplier[c + j];
        g->shift[j] = p->output_shift[c + j];
        g->e1[j] = ~g->shift[j];
        const uint32_t b = p->has_bias ? (uint32_t)bias[c + j] : 0u;
        g->fast &= g->e1[j] >= 0 && b + (UINT32_C(1) << 29) < (UINT32_C(1) << 30);
    }
}

static inline int8_t requant_fast(int32_t acc, int32_t m, int32_t e1, int32_t odd) {
    return (int8_t)vmcu_ssat8_half(vmcu_requant_twice((int32_t)((uint32_t)acc << 1), m, e1, odd));
}

/* acc[4i + j] -> out[i * stride + j] for `pixels` pixels of one group. */
static void requant_group(const group_t *g, const int32_t *acc, int32_t pixels, int8_t *out, int32_t stride) {
    if (g->fast) {
        const int32_t m0 = g->m[0], m1 = g->m[1], m2 = g->m[2], m3 = g->m[3], odd = g->odd;
        const int32_t e0 = g->e1[0], e1 = g->e1[1], e2 = g->e1[2], e3 = g->e1[3];
        for (int32_t i = 0; i < pixels; ++i, acc += 4, out += stride) {
            out[0] = requant_fast(acc[0], m0, e0, odd);
            out[1] = requant_fast(acc[1], m1, e1, odd);
            out[2] = requant_fast(acc[2], m2, e2, odd);
            out[3] = requant_fast(acc[3], m3, e3, odd);
        }
        return;
    }
    for (int32_t i = 0; i < pixels; ++i, acc += 4, out += stride) {
        for (int32_t j = 0; j < 4; ++j) {
            const int32_t y = vmcu_requant_value(acc[j], g->m[j], g->shift[j], g->e1[j], g->odd, g->zp);
            out[j] = (int8_t)(g->full_range ? __ssat(y, 8) : vmcu_clamp_i32(y, g->lo, g->hi));
        }
    }
}

#define VMCU_SEG_DW_CHUNK 8 /* output pixels per gathered chunk of a 3-wide band across the wrap */

/* Four input bytes at tensor offset `off`, gathered when they straddle the wrap. */
static inline uint32_t ring_load32(const vmcu_seg_src_t *in, int32_t off) {
    int8_t bounce[4];
    return vmcu_load32(vmcu_seg_span(in, off, 4, bounce));
}

/* A chunk of a band that straddles the wrap, copied densely for one group of four channels: `rows` input
 * rows (tensor offset `row0` of the first, column 0, channel c; `row_stride` apart) by `cols` columns from
 * input column ix0, one word per pixel, the input zero point for columns outside the image. Each row's run
 * of in-bounds pixels is resolved once (pixel by pixel in the row that straddles the wrap). */
static void gather_chunk(const vmcu_seg_src_t *in, int32_t row0, int32_t row_stride, int32_t rows, int32_t ix0,
                         int32_t cols, int32_t in_w, int32_t in_c, uint32_t zp_word, uint32_t *dst) {
    const int32_t j0 = vmcu_min_i32(vmcu_max_i32(-ix0, 0), cols);
    const int32_t j1 = vmcu_max_i32(j0, vmcu_min_i32(cols, in_w - ix0));
    for (int32_t r = 0; r < rows; ++r, row0 += row_stride, dst += cols) {
        const int32_t first = row0 + (ix0 + j0) * in_c;
        const int straddles = vmcu_seg_straddles(in->split, first, (j1 - j0) * in_c);
        const int8_t *x = vmcu_seg_at(in, first);
        for (int32_t j = 0; j < j0; ++j) {
            dst[j] = zp_word;
        }
        for (int32_t j = j0; j < j1; ++j, x += in_c) {
            dst[j] = straddles ? ring_load32(in, first + (j - j0) * in_c) : vmcu_load32(x);
        }
        for (int32_t j = j1; j < cols; ++j) {
            dst[j] = zp_word;
        }
    }
}

/* window_any for a window whose band straddles the wrap (tensor offset `band` of row fy0, column 0,
 * channel c): the window rows whose taps all lie before the wrap and those after it each through
 * window_any on one resolved pointer (at the first tap), the row whose taps straddle it tap by tap. */
static void ring_window_any(const vmcu_depthwise_conv_2d_params_t *p, const vmcu_seg_src_t *in, int32_t band,
                            int32_t ix0, const int16x2_t *w, int32_t fy0, int32_t fy1, int32_t fx0, int32_t fx1,
                            int16x2_t offset2, int32_t *acc) {
    const int32_t in_c = p->input_shape[3], filter_w = p->filter_shape[2], dil_w = p->dilation_w;
    const int32_t x_row = p->dilation_h * p->input_shape[2] * in_c;
    const int32_t lo = (ix0 + fx0 * dil_w) * in_c, hi = (ix0 + (fx1 - 1) * dil_w) * in_c + 4;  /* a row's taps */
    if (fx1 <= fx0) {
        return;
    }
    const int32_t room = in->split - band - hi;  /* rows fy0 .. fy0 + room / x_row end before the wrap */
    int32_t fy = fy0 + vmcu_min_i32(fy1 - fy0, room >= 0 ? room / x_row + 1 : 0);
    if (fy > fy0) {
        window_any(p, in->head + band + lo, -fx0 * dil_w, w, fy0, fy, fx0, fx1, offset2, acc);
    }
    const int32_t row = band + (fy - fy0) * x_row;
    if (fy < fy1 && row + lo < in->split) {
        for (int32_t fx = fx0; fx < fx1; ++fx) {
            const int16x2_t *wt = w + 2 * (fy * filter_w + fx);
            const uint32_t xv = ring_load32(in, row + (ix0 + fx * dil_w) * in_c);
            const int16x2_t xl = __sxtab16(offset2, (int8x4_t)xv), xh = vmcu_sxtab16_ror8(offset2, xv);
            acc[0] = __smlabb(xl, wt[0], acc[0]);
            acc[2] = __smlatt(xl, wt[0], acc[2]);
            acc[1] = __smlabb(xh, wt[1], acc[1]);
            acc[3] = __smlatt(xh, wt[1], acc[3]);
        }
        fy += 1;
    }
    if (fy < fy1) {
        window_any(p, vmcu_seg_at(in, band + (fy - fy0) * x_row + lo), -fx0 * dil_w, w, fy, fy1, fx0, fx1, offset2,
                   acc);
    }
}

/* One output row of one group when its band straddles the wrap. 3-wide windows: chunks of
 * VMCU_SEG_DW_CHUNK pixels are gathered into `g` and run through the tensor kernel's asm loop. Others:
 * ring_window_any per pixel. */
static void ring_row(const vmcu_depthwise_conv_2d_params_t *p, const vmcu_seg_src_t *in, int32_t band, int32_t fy0,
                     int32_t fy1, const int16x2_t *w, int16x2_t offset2, const int32_t *bias4, uint32_t zp_word,
                     uint32_t *g, int32_t *acc) {
    const int32_t in_w = p->input_shape[2], in_c = p->input_shape[3], filter_w = p->filter_shape[2];
    const int32_t stride_w = p->stride_w, dil_w = p->dilation_w, out_w = p->output_shape[2];
    const int32_t rows = fy1 - fy0, row_stride = p->dilation_h * in_w * in_c;
    if (filter_w != 3 || dil_w != 1) {
        for (int32_t ox = 0, ix0 = -p->pad_left; ox < out_w; ++ox, ix0 += stride_w) {
            int32_t fx0, fx1;
            tap_range(ix0, dil_w, filter_w, in_w, &fx0, &fx1);
            memcpy(acc + 4 * ox, bias4, 4 * sizeof *acc);
            ring_window_any(p, in, band, ix0, w, fy0, fy1, fx0, fx1, offset2, acc + 4 * ox);
        }
        return;
    }
    for (int32_t ox0 = 0; ox0 < out_w; ox0 += VMCU_SEG_DW_CHUNK) {
        const int32_t k = vmcu_min_i32(VMCU_SEG_DW_CHUNK, out_w - ox0);
        const int32_t cols = (k - 1) * stride_w + 3;
        gather_chunk(in, band, row_stride, rows, ox0 * stride_w - p->pad_left, cols, in_w, in_c, zp_word, g);
        pixels3_asm((const int8_t *)g, 4 * stride_w, w + 6 * fy0, rows, 4, 4 * cols - 8, offset2, bias4,
                    acc + 4 * ox0, k);
    }
}

/* One output channel of the scalar path at input column ix0: the band at `x` (flat) or, when `ring`,
 * at tensor offset `band` of the view. Specialised for both cases when inlined. */
static inline __attribute__((always_inline)) int32_t scalar_window(
    const vmcu_depthwise_conv_2d_params_t *p, const int8_t *filter, int32_t acc, int32_t oc, int32_t ix0,
    int32_t fy0, int32_t fy1, const int8_t *x, const vmcu_seg_src_t *in, int32_t band, const int ring) {
    const int32_t in_w = p->input_shape[2], in_c = p->input_shape[3], filter_w = p->filter_shape[2];
    const int32_t dil_w = p->dilation_w, out_c = p->output_shape[3];
    int32_t fx0, fx1;
    tap_range(ix0, dil_w, filter_w, in_w, &fx0, &fx1);
    for (int32_t fy = fy0; fy < fy1; ++fy) {
        const int32_t row = ((fy - fy0) * p->dilation_h * in_w + ix0) * in_c + oc / p->depth_multiplier;
        for (int32_t fx = fx0; fx < fx1; ++fx) {
            const int32_t off = row + fx * dil_w * in_c;
            const int32_t xv = ring ? *vmcu_seg_at(in, band + off) : x[off];
            acc += filter[(fy * filter_w + fx) * out_c + oc] * (xv + p->input_offset);
        }
    }
    return acc;
}

/* Output rows [row0, row1) (row-major over all batches) with the copied loops on resolved bands. */
static void rows_seg(const vmcu_depthwise_conv_2d_params_t *p, vmcu_seg_src_t input, const int8_t *filter,
                     const int32_t *bias, vmcu_seg_dst_t output, int8_t *scratch, int32_t row0, int32_t row1) {
    const int32_t in_h = p->input_shape[1], in_w = p->input_shape[2], in_c = p->input_shape[3];
    const int32_t filter_h = p->filter_shape[1], filter_w = p->filter_shape[2], taps = filter_h * filter_w;
    const int32_t out_w = p->output_shape[2], out_c = p->output_shape[3], row_bytes = out_w * out_c;
    const int32_t mult = p->depth_multiplier, dil_h = p->dilation_h, dil_w = p->dilation_w;
    const int32_t stride_w = p->stride_w, simd_c = mult == 1 ? out_c & ~3 : 0;
    const int32_t rows3 = filter_w == 3 && dil_w == 1, x_row = (dil_h * in_w - 2) * in_c;
    const int32_t row_stride = dil_h * in_w * in_c;
    const int16x2_t offset2 = vmcu_dup16(p->input_offset);
    const vmcu_requant_t r = vmcu_requant_init(p->output_multiplier, p->output_shift, p->output_offset,
                                               p->activation_min, p->activation_max);
    int8_t *const stage = scratch;
    int16x2_t *const wbuf = (int16x2_t *)(void *)(scratch + (row_bytes + 3) / 4 * 4);
    int32_t *const acc = (int32_t *)(wbuf + 2 * taps);  /* four accumulators per pixel of the row */
    int32_t *const zeros = acc + 4 * out_w;              /* the bias of a layer without */
    uint32_t *const gather = (uint32_t *)(zeros + 4);    /* a chunk of a band that straddles the wrap */
    memset(zeros, 0, 4 * sizeof *zeros);
    const uint32_t zp_word = (uint8_t)-p->input_offset * 0x01010101u;  /* four input zero points */
    /* output columns whose windows span three full input columns: [ox_lo, ox_hi) */
    const int32_t ox_lo = vmcu_min_i32((p->pad_left + stride_w - 1) / stride_w, out_w);
    const int32_t last_full = in_w - 3 + p->pad_left;  /* stride_w * ox of the last such column, at most */
    const int32_t ox_hi = vmcu_max_i32(ox_lo,
                                       vmcu_min_i32(out_w, last_full >= 0 ? last_full / stride_w + 1 : 0));
    for (int32_t row = row0; row < row1; ++row) {
        const int32_t b = row / p->output_shape[1], oy = row % p->output_shape[1], out_row = row * row_bytes;
        const int32_t iy0 = oy * p->stride_h - p->pad_top;
        int32_t fy0, fy1;
        tap_range(iy0, dil_h, filter_h, in_h, &fy0, &fy1);
        /* the band of input rows the windows read: [band, band_end), one pointer unless it wraps */
        const int32_t band = fy1 > fy0 ? (b * in_h + iy0 + fy0 * dil_h) * in_w * in_c : 0;
        const int32_t band_end = fy1 > fy0 ? band + ((fy1 - fy0 - 1) * dil_h + 1) * in_w * in_c : 0;
        const int ring = vmcu_seg_straddles(input.split, band, band_end - band);
        const int8_t *const x_first = vmcu_seg_at(&input, band);
        for (int32_t c = 0; c < simd_c; c += 4) {
            for (int32_t t = 0; t < taps; ++t) {
                const uint32_t wv = vmcu_load32(filter + t * out_c + c);
                wbuf[2 * t] = __sxtb16((int8x4_t)wv);
                wbuf[2 * t + 1] = vmcu_sxtb16_ror8(wv);
            }
            group_t g;
            group_init(&g, p, bias, c, taps);
            const int32_t *bias4 = p->has_bias ? bias + c : zeros;
            if (ring) {
                ring_row(p, &input, band + c, fy0, fy1, wbuf, offset2, bias4, zp_word, gather, acc);
            } else if (rows3 && fy1 > fy0) {
                const int32_t rows = fy1 - fy0;
                if (ox_hi > ox_lo) {
                    pixels3_asm(x_first + (ox_lo * stride_w - p->pad_left) * in_c + c, stride_w * in_c,
                                wbuf + 6 * fy0, rows, in_c, x_row, offset2, bias4, acc + 4 * ox_lo,
                                ox_hi - ox_lo);
                }
                for (int32_t ox = 0; ox < out_w; ++ox) {
                    if (ox >= ox_lo && ox < ox_hi) {  /* done above: skip to the right border */
                        ox = ox_hi - 1;
                        continue;
                    }
                    border_window3(x_first + c, ox * stride_w - p->pad_left, in_w, in_c, row_stride, rows,
                                   zp_word, wbuf + 6 * fy0, offset2, bias4, acc + 4 * ox);
                }
            } else {
                for (int32_t ox = 0, ix0 = -p->pad_left; ox < out_w; ++ox, ix0 += stride_w) {
                    int32_t fx0, fx1;
                    tap_range(ix0, dil_w, filter_w, in_w, &fx0, &fx1);
                    memcpy(acc + 4 * ox, bias4, 4 * sizeof *acc);
                    window_any(p, x_first + c, ix0, wbuf, fy0, fy1, fx0, fx1, offset2, acc + 4 * ox);
                }
            }
            requant_group(&g, acc, out_w, stage + c, out_c);
        }
        for (int32_t oc = simd_c; oc < out_c; ++oc) {
            for (int32_t ox = 0, ix0 = -p->pad_left; ox < out_w; ++ox, ix0 += stride_w) {
                int32_t a = p->has_bias ? bias[oc] : 0;
                a = ring ? scalar_window(p, filter, a, oc, ix0, fy0, fy1, x_first, &input, band, 1)
                         : scalar_window(p, filter, a, oc, ix0, fy0, fy1, x_first, &input, band, 0);
                vmcu_requant_block(&r, &a, oc, 1, stage + ox * out_c + oc, NULL);
            }
        }
        vmcu_seg_write(&output, out_row, stage, row_bytes);
    }
}

void vmcu_seg_depthwise_conv_2d_s8(const vmcu_depthwise_conv_2d_params_t *p, vmcu_seg_src_t input,
                                   const int8_t *filter, const int32_t *bias, vmcu_seg_dst_t output,
                                   int8_t *stage, int8_t *scratch) {
    if (vmcu_seg_contiguous(input.split, vmcu_seg_nhwc_bytes(p->input_shape)) &&
        vmcu_seg_contiguous(output.split, vmcu_seg_nhwc_bytes(p->output_shape))) {
        vmcu_depthwise_conv_2d_s8(p, input.head, filter, bias, output.head, scratch);  /* nothing wraps */
        return;
    }
    /* Output rows in order, per image: maximal runs of rows whose input band and output rows straddle
     * neither wrap are sub-images for the tensor kernel (input rows [r0, r1), padding adjusted); a row
     * that straddles one goes to the copy. */
    const vmcu_seg_rows_t g = {p->input_shape[1], p->input_shape[2] * p->input_shape[3], p->output_shape[1],
                               p->output_shape[2] * p->output_shape[3], p->stride_h, p->pad_top,
                               (p->filter_shape[1] - 1) * p->dilation_h + 1};
    vmcu_depthwise_conv_2d_params_t q = *p;
    for (int32_t b = 0; b < p->output_shape[0]; ++b) {
        for (int32_t oy0 = 0; oy0 < g.out_h;) {
            int32_t r0, r1;
            int32_t oy1 = vmcu_seg_flat_rows(&g, &input, &output, b, oy0, &r0, &r1);
            const int32_t row = b * g.out_h + oy0;
            int8_t *out = vmcu_seg_dst_at(&output, row * g.row_out);
            if (oy1 == oy0) {  /* row oy0 straddles a wrap */
                r1 = vmcu_clamp_i32(oy0 * p->stride_h - p->pad_top + g.reach, r0, g.in_h);
                if (!stage || vmcu_seg_straddles(input.split, (b * g.in_h + r0) * g.row_in, (r1 - r0) * g.row_in)) {
                    rows_seg(p, input, filter, bias, output, scratch, row, row + 1);
                    oy0 += 1;
                    continue;
                }
                oy1 = oy0 + 1;  /* only its output does: the tensor kernel into `stage`, then stored */
                out = stage;
            }
            q.input_shape[0] = q.output_shape[0] = 1;
            q.input_shape[1] = r1 - r0;
            q.output_shape[1] = oy1 - oy0;
            q.pad_top = r0 - (oy0 * p->stride_h - p->pad_top);
            q.pad_bottom = vmcu_max_i32(0, (oy1 - 1) * p->stride_h - p->pad_top + g.reach - r1);
            vmcu_depthwise_conv_2d_s8(&q, vmcu_seg_at(&input, (b * g.in_h + r0) * g.row_in), filter, bias, out,
                                      scratch);
            if (out == stage) {
                vmcu_seg_write(&output, row * g.row_out, stage, g.row_out);
            }
            oy0 = oy1;
        }
    }
}
