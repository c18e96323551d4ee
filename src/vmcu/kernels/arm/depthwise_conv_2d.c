/* DEPTHWISE_CONV_2D int8 for Cortex-M with the DSP extension (same results as ref/depthwise_conv_2d.c).
 *
 * Channels go by groups of four. A group record holds the four channels' accumulator starts (2 * bias,
 * from vmcu_chan_word), their weights unpacked and doubled, (2w0, 2w2) and (2w1, 2w3) per tap, and their
 * requantization constants m, c, e1. A naked asm loop runs over a row's pixels: per tap one input word
 * unpacked by SXTAB16 (adding input_offset) and SMLABB/SMLATT into four accumulators (8 instructions per
 * 4 MACs), then VMCU_REQUANT and the four bytes stored. Windows take the unrolled loop when they are 3x3,
 * else a loop over their rows and taps; a window cut by the border runs its in-bounds taps only. Rows of
 * fewer than VMCU_DW_NARROW pixels, and depth multipliers above 1 (whose four channels gather their
 * inputs), run from staged rows instead: the group's input words with the input zero point around the
 * image, so every window is whole. A constant channel gets zero weights and constants that give its
 * value; a group leaves the asm only when a channel needs the exact 64-bit path (a scalar path, as for
 * the last C % 4 channels).
 *
 * When the output does not overlap the input, each group runs over the whole image with its record
 * built once (and, when it fits, the whole padded image staged once). Otherwise (a segment plan) rows go
 * one at a time, all groups within a row, and the row is staged and stored once all its inputs have been
 * read; the records are then built once per call when they all fit in VMCU_SCRATCH_MAX, else per row and
 * group.
 */
#include "vmcu_arm.h"
#include "vmcu_kernels.h"

/* Arguments of the pixel loops, copied to their stack frame: the offsets below are fixed. */
typedef struct {
    const int8_t *x;       /* #0: the first pixel's first tap, at the group's first channel */
    int32_t x_step;        /* #4: bytes to the next pixel's */
    const uint32_t *b2;    /* #8: the record's four accumulator starts */
    const uint32_t *w;     /* #12: the record's weights of the first tap */
    const uint32_t *q;     /* #16: the record's m, c, e1 of the four channels */
    int8_t *out;           /* #20: the first pixel's four output bytes */
    int32_t out_step;      /* #24 */
    const int8_t *x_end;   /* #28: x of the pixel after the last; at least one pixel */
    int32_t rows;          /* #32: tap rows, at least one (pixels_any) */
    int32_t kw;            /* #36: taps a row, at least one (pixels_any) */
    int32_t tap_stride;    /* #40: bytes between a row's taps */
    int32_t row_stride;    /* #44: bytes to the next tap row from its first tap (3x3) or past its last (any) */
    int32_t w_skip;        /* #48: weight bytes from past a tap row's last run tap to the next row's first */
    int16x2_t offset2;     /* #52 */
} dw_args_t;

/* r0-r3 the accumulators of channels 0-3, r4/r5 a tap's weights, r6/r7 its input unpacked, r8 the tap,
 * r9 the record, r10 offset2, r11 tap_stride, lr the pixel's first tap. */
#define VMCU_TAP(ADDR)                                \
    "ldr r6, " ADDR "\n\t"                            \
    "sxtab16 r7, r10, r6\n\t"                         \
    "sxtab16 r6, r10, r6, ror #8\n\t"                 \
    "ldrd r4, r5, [r9], #8\n\t"                       \
    "smlabb r0, r7, r4, r0\n\t"                       \
    "smlatt r2, r7, r4, r2\n\t"                       \
    "smlabb r1, r6, r5, r1\n\t"                       \
    "smlatt r3, r6, r5, r3\n\t"
#define VMCU_TAP_ROW3 VMCU_TAP("[r8]") VMCU_TAP("[r8, r11]") VMCU_TAP("[r8, r11, lsl #1]")

/* Requantizes r0-r3 with the constants at r9, stores them at r8, and goes to the next pixel (X_NEXT
 * adds r9, x_step, to the pixel's first tap, in lr). */
#define VMCU_STORE_NEXT(X_NEXT)                       \
    "ldm r9!, {r4, r5, r6}\n\t"                       \
    VMCU_REQUANT("r7", "r0", "r4", "r5", "r6")        \
    "strb r7, [r8]\n\t"                               \
    "ldm r9!, {r4, r5, r6}\n\t"                       \
    VMCU_REQUANT("r7", "r1", "r4", "r5", "r6")        \
    "strb r7, [r8, #1]\n\t"                           \
    "ldm r9!, {r4, r5, r6}\n\t"                       \
    VMCU_REQUANT("r7", "r2", "r4", "r5", "r6")        \
    "strb r7, [r8, #2]\n\t"                           \
    "ldm r9!, {r4, r5, r6}\n\t"                       \
    VMCU_REQUANT("r7", "r3", "r4", "r5", "r6")        \
    "strb r7, [r8, #3]\n\t"                           \
    "ldr r9, [sp, #24]\n\t"                           \
    "add r8, r8, r9\n\t"                              \
    "str r8, [sp, #20]\n\t"                           \
    "ldr r9, [sp, #4]\n\t"                            \
    X_NEXT                                            \
    "ldr r9, [sp, #28]\n\t"                           \
    "cmp lr, r9\n\t"                                  \
    "bne 1b\n\t"                                      \
    "add sp, sp, #52\n\t"                             \
    "pop {r4-r11, pc}\n\t"

#define VMCU_DW_ENTER                                 \
    "push {r4-r11, lr}\n\t"                           \
    "ldr lr, [r0, #48]\n\t"                           \
    "push {lr}\n\t"                                   \
    "ldm r0, {r1-r12}\n\t"                            \
    "push {r1-r12}\n\t"                               \
    "ldr r10, [r0, #52]\n\t"                          \
    "ldr r11, [sp, #40]\n\t"                          \
    "ldr lr, [sp, #0]\n\t"

/* Whole 3x3 windows: the record runs straight from the starts through the weights
 * to the constants. 110 instructions per pixel of 36 MACs. */
__attribute__((naked, noinline)) static void pixels_3x3(const dw_args_t *a __attribute__((unused))) {
    __asm__(VMCU_DW_ENTER
            "ldr r12, [sp, #44]\n\t"
            "1:\n\t"
            "ldr r9, [sp, #8]\n\t"
            "ldm r9!, {r0-r3}\n\t"
            "mov r8, lr\n\t"
            VMCU_TAP_ROW3
            "add r8, r8, r12\n\t"
            VMCU_TAP_ROW3
            "add r8, r8, r12\n\t"
            VMCU_TAP_ROW3
            "ldr r8, [sp, #20]\n\t"
            VMCU_STORE_NEXT("add lr, lr, r9\n\t"));
}

/* Any window: `rows` tap rows of kw taps from w on, w_skip weight bytes between rows. The pixel's first
 * tap lives at [sp] and lr marks the end of a tap row's weights. 11 instructions per tap. */
__attribute__((naked, noinline)) static void pixels_any(const dw_args_t *a __attribute__((unused))) {
    __asm__(VMCU_DW_ENTER
            "1:\n\t"
            "ldr r9, [sp, #8]\n\t"
            "ldm r9, {r0-r3}\n\t"
            "ldr r9, [sp, #12]\n\t"
            "ldr r8, [sp, #0]\n\t"
            "ldr r12, [sp, #32]\n\t"
            "2:\n\t"
            "ldr lr, [sp, #36]\n\t"
            "add lr, r9, lr, lsl #3\n\t"
            "3:\n\t"
            VMCU_TAP("[r8]")
            "add r8, r8, r11\n\t"
            "cmp r9, lr\n\t"
            "bne 3b\n\t"
            "ldr lr, [sp, #44]\n\t"
            "add r8, r8, lr\n\t"
            "ldr lr, [sp, #48]\n\t"
            "add r9, r9, lr\n\t"
            "subs r12, r12, #1\n\t"
            "bne 2b\n\t"
            "ldr r9, [sp, #16]\n\t"
            "ldr r8, [sp, #20]\n\t"
            VMCU_STORE_NEXT("ldr lr, [sp, #0]\n\tadd lr, lr, r9\n\tstr lr, [sp, #0]\n\t"));
}

#undef VMCU_DW_ENTER
#undef VMCU_STORE_NEXT
#undef VMCU_TAP_ROW3
#undef VMCU_TAP

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

/* The record of channels c .. c + 3 (4 + 2 * taps + 12 words); 0 when one needs the exact path. */
static int build_record(uint32_t *rec, const vmcu_chan_ctx_t *x, const vmcu_depthwise_conv_2d_params_t *p,
                        const int8_t *filter, const int32_t *bias, int32_t c, int32_t taps) {
    const vmcu_requant_t *r = x->r;
    const int32_t out_c = p->output_shape[3];
    uint32_t keep02 = 0, keep13 = 0;  /* the halves of channels that are not constant */
    uint32_t *q = rec + 4 + 2 * taps;
    for (int32_t j = 0; j < 4; ++j) {
        const int32_t word = vmcu_chan_word(x, c + j, p->has_bias ? bias[c + j] : 0, filter + c + j, taps, out_c);
        if (word == VMCU_TAG_EXACT) {
            return 0;
        }
        const int constant = word & 1;
        rec[j] = constant ? 0u : (uint32_t)word;
        if (constant) {
            q[3 * j] = 0;
            q[3 * j + 1] = (uint32_t)word;  /* c = 2v + 1, with m = e1 = 0 */
            q[3 * j + 2] = 0;
        } else {
            vmcu_chan_constants(r, c + j, q + 3 * j);
            *(j & 1 ? &keep13 : &keep02) |= j & 2 ? 0xFFFF0000u : 0xFFFFu;
        }
    }
    uint32_t *w = rec + 4;
    for (int32_t t = 0; t < taps; ++t, w += 2) {
        const uint32_t v = vmcu_load32(filter + t * out_c + c);
        const int16x2_t lo = __sxtb16((int8x4_t)v), hi = vmcu_sxtb16_ror8(v);
        w[0] = (uint32_t)__sadd16(lo, lo) & keep02;
        w[1] = (uint32_t)__sadd16(hi, hi) & keep13;
    }
    return 1;
}

/* One output channel of one pixel, exactly: the in-bounds taps [fy0, fy1) x [fx0, fx1). */
static int8_t pixel_exact(const vmcu_depthwise_conv_2d_params_t *p, const vmcu_requant_t *r, const int8_t *image,
                          const int8_t *filter, const int32_t *bias, int32_t oc, int32_t iy0, int32_t ix0,
                          int32_t fy0, int32_t fy1, int32_t fx0, int32_t fx1) {
    const int32_t in_w = p->input_shape[2], in_c = p->input_shape[3], filter_w = p->filter_shape[2];
    const int32_t out_c = p->output_shape[3], ic = oc / p->depth_multiplier;
    int32_t acc = p->has_bias ? bias[oc] : 0;
    for (int32_t fy = fy0; fy < fy1; ++fy) {
        for (int32_t fx = fx0; fx < fx1; ++fx) {
            const int32_t x = image[((iy0 + fy * p->dilation_h) * in_w + ix0 + fx * p->dilation_w) * in_c + ic];
            acc += filter[(fy * filter_w + fx) * out_c + oc] * (x + p->input_offset);
        }
    }
    return vmcu_requant_exact(r, acc, oc);
}

#define VMCU_DW_NARROW 8      /* rows of fewer output pixels are staged whole, padding included */
#define VMCU_DW_IMAGE_MAX 1024 /* and, without overlap, the whole padded image when it fits in these bytes */

typedef struct {
    const vmcu_depthwise_conv_2d_params_t *p;
    const vmcu_requant_t *r;
    const int8_t *filter;
    const int32_t *bias;
    int32_t ox_lo, ox_hi;  /* output columns whose windows span all filter columns inside the image */
    uint32_t *window;      /* a staged window, kh * kw words */
    uint32_t *rows;        /* staged rows: kh tap rows of padded_w words, or padded_h rows */
    int32_t padded_w, padded_h, image_staged, staged;
    uint32_t zp_word;      /* four input zero points: x + input_offset == 0 */
    dw_args_t a;
} dw_t;

/* Channels [c0, C) of one output row exactly (the last C % 4, or all when depth_multiplier > 1). */
static void rest_row(const dw_t *d, const int8_t *image, int32_t oy, int32_t c0, int8_t *out) {
    const vmcu_depthwise_conv_2d_params_t *p = d->p;
    const int32_t out_w = p->output_shape[2], out_c = p->output_shape[3], iy0 = oy * p->stride_h - p->pad_top;
    if (c0 == out_c) {
        return;
    }
    int32_t fy0, fy1;
    tap_range(iy0, p->dilation_h, p->filter_shape[1], p->input_shape[1], &fy0, &fy1);
    for (int32_t ox = 0, ix0 = -p->pad_left; ox < out_w; ++ox, ix0 += p->stride_w) {
        int32_t fx0, fx1;
        tap_range(ix0, p->dilation_w, p->filter_shape[2], p->input_shape[2], &fx0, &fx1);
        for (int32_t oc = c0; oc < out_c; ++oc) {
            out[ox * out_c + oc] = pixel_exact(p, d->r, image, d->filter, d->bias, oc, iy0, ix0, fy0, fy1, fx0, fx1);
        }
    }
}

static inline uint32_t *fill_words(uint32_t *dst, uint32_t v, int32_t n) {
    for (int32_t i = 0; i < n; ++i) {
        *dst++ = v;
    }
    return dst;
}

/* n words from src on, `step` bytes apart (any alignment). */
static inline uint32_t *copy_words(uint32_t *dst, const int8_t *src, int32_t step, int32_t n) {
    for (int32_t i = 0; i < n; ++i, src += step) {
        *dst++ = vmcu_load32(src);
    }
    return dst;
}

/* n pixels from x on whose windows run `rows` tap rows from fy0 and kw taps from fx0 (all of them for
 * the 3x3 loop), rows row_stride bytes apart. */
static void run_pixels(dw_t *d, const uint32_t *rec, const int8_t *x, int32_t x_step, int32_t n, int32_t fy0,
                       int32_t rows, int32_t fx0, int32_t kw, int32_t tap_stride, int32_t row_stride, int8_t *out) {
    const int32_t filter_h = d->p->filter_shape[1], filter_w = d->p->filter_shape[2];
    dw_args_t *a = &d->a;
    a->x = x;
    a->x_step = x_step;
    a->x_end = x + n * x_step;
    a->b2 = rec;
    a->w = rec + 4 + 2 * (fy0 * filter_w + fx0);
    a->q = rec + 4 + 2 * filter_h * filter_w;
    a->out = out;
    a->rows = rows;
    a->kw = kw;
    a->tap_stride = tap_stride;
    if (rows == 3 && kw == 3 && filter_h == 3 && filter_w == 3) {
        a->row_stride = row_stride;
        pixels_3x3(a);
    } else {
        a->row_stride = row_stride - kw * tap_stride;
        a->w_skip = 8 * (filter_w - kw);
        pixels_any(a);
    }
}

/* Staged rows of the group's four channels: input rows iy0, iy0 + step, ... (n of them), each from
 * column -pad_left on for padded_w words, the input zero point outside the image. */
static void stage_rows(const dw_t *d, const int8_t *image, int32_t c, int32_t iy0, int32_t step, int32_t n) {
    const vmcu_depthwise_conv_2d_params_t *p = d->p;
    const int32_t in_h = p->input_shape[1], in_w = p->input_shape[2], in_c = p->input_shape[3];
    const int32_t pw = d->padded_w, left = vmcu_min_i32(p->pad_left, pw);
    const int32_t inside = vmcu_max_i32(0, vmcu_min_i32(pw - left, in_w));
    const int32_t mult = p->depth_multiplier;
    uint32_t *dst = d->rows;
    for (int32_t i = 0, iy = iy0; i < n; ++i, iy += step) {
        if (iy < 0 || iy >= in_h) {
            dst = fill_words(dst, d->zp_word, pw);
            continue;
        }
        dst = fill_words(dst, d->zp_word, left);
        const int8_t *src = image + iy * in_w * in_c;
        if (mult == 1) {
            dst = copy_words(dst, src + c, in_c, inside);
        } else if (mult % 4 == 0) {  /* the four channels share one input channel */
            for (int32_t k = 0; k < inside; ++k, src += in_c) {
                *dst++ = (uint8_t)src[c / mult] * 0x01010101u;
            }
        } else {
            for (int32_t k = 0; k < inside; ++k, src += in_c) {
                *dst++ = (uint8_t)src[c / mult] | (uint32_t)(uint8_t)src[(c + 1) / mult] << 8 |
                         (uint32_t)(uint8_t)src[(c + 2) / mult] << 16 | (uint32_t)(uint8_t)src[(c + 3) / mult] << 24;
            }
        }
        dst = fill_words(dst, d->zp_word, pw - left - inside);
    }
}

/* One output row of the group of channels c .. c + 3 with record rec (NULL: the exact path) into `out`
 * (that row's first pixel, channel 0). Windows inside the image are read in place; the others, or the
 * whole row when narrow, are staged with the input zero point for taps outside. */
static void group_row(dw_t *d, const uint32_t *rec, const int8_t *image, int32_t oy, int32_t c, int8_t *out) {
    const vmcu_depthwise_conv_2d_params_t *p = d->p;
    const int32_t in_h = p->input_shape[1], in_w = p->input_shape[2], in_c = p->input_shape[3];
    const int32_t filter_h = p->filter_shape[1], filter_w = p->filter_shape[2];
    const int32_t out_w = p->output_shape[2], out_c = p->output_shape[3], stride_w = p->stride_w;
    const int32_t dil_h = p->dilation_h, dil_w = p->dilation_w, iy0 = oy * p->stride_h - p->pad_top;
    int32_t fy0, fy1;
    tap_range(iy0, dil_h, filter_h, in_h, &fy0, &fy1);
    if (rec == NULL) {
        for (int32_t ox = 0, ix0 = -p->pad_left; ox < out_w; ++ox, ix0 += stride_w) {
            int32_t fx0, fx1;
            tap_range(ix0, dil_w, filter_w, in_w, &fx0, &fx1);
            for (int32_t j = c; j < c + 4; ++j) {
                out[ox * out_c + j] = pixel_exact(p, d->r, image, d->filter, d->bias, j, iy0, ix0, fy0, fy1, fx0, fx1);
            }
        }
        return;
    }
    const int8_t *const x_row = image + iy0 * in_w * in_c + c;  /* column 0 of the first tap row */
    const int32_t tap_stride = dil_w * in_c, row_stride = dil_h * in_w * in_c;
    if (d->staged) {
        const uint32_t *x = d->rows + oy * p->stride_h * d->padded_w;
        if (!d->image_staged) {
            stage_rows(d, image, c, iy0, dil_h, filter_h);
            x = d->rows;
        }
        run_pixels(d, rec, (const int8_t *)x, 4 * stride_w, out_w, 0, filter_h, 0, filter_w, 4 * dil_w,
                   4 * (d->image_staged ? dil_h : 1) * d->padded_w, out + c);
        return;
    }
    for (int32_t ox = 0; ox < out_w; ++ox) {
        const int32_t ix0 = ox * stride_w - p->pad_left;
        if (fy1 > fy0 && ox == d->ox_lo && d->ox_hi > ox) {  /* the columns inside, in place */
            run_pixels(d, rec, x_row + fy0 * row_stride + ix0 * in_c, stride_w * in_c, d->ox_hi - ox, fy0, fy1 - fy0,
                       0, filter_w, tap_stride, row_stride, out + ox * out_c + c);
            ox = d->ox_hi - 1;
            continue;
        }
        int32_t fx0, fx1;
        tap_range(ix0, dil_w, filter_w, in_w, &fx0, &fx1);
        if (fy1 > fy0 && fx1 > fx0) {  /* a border window: its taps inside, in place */
            run_pixels(d, rec, x_row + fy0 * row_stride + (ix0 + fx0 * dil_w) * in_c, 0, 1, fy0, fy1 - fy0, fx0,
                       fx1 - fx0, tap_stride, row_stride, out + ox * out_c + c);
            continue;
        }
        /* no tap inside: the bias alone, through a window of zero points */
        fill_words(d->window, d->zp_word, filter_h * filter_w);
        run_pixels(d, rec, (const int8_t *)d->window, 0, 1, 0, filter_h, 0, filter_w, 4, 4 * filter_w,
                   out + ox * out_c + c);
    }
}

void vmcu_depthwise_conv_2d_s8(const vmcu_depthwise_conv_2d_params_t *p, const int8_t *input,
                               const int8_t *filter, const int32_t *bias, int8_t *output, int8_t *scratch) {
    const int32_t in_h = p->input_shape[1], in_w = p->input_shape[2], in_c = p->input_shape[3];
    const int32_t filter_w = p->filter_shape[2], taps = p->filter_shape[1] * filter_w;
    const int32_t out_h = p->output_shape[1], out_w = p->output_shape[2], out_c = p->output_shape[3];
    const int32_t batches = p->output_shape[0], row_bytes = out_w * out_c, stride_w = p->stride_w;
    const int32_t simd_c = out_c & ~3, groups = simd_c / 4;
    const int32_t rec_words = 4 + 2 * taps + 12, image_bytes = in_h * in_w * in_c;
    const vmcu_requant_t r = vmcu_requant_init(p->output_multiplier, p->output_shift, p->output_offset,
                                               p->activation_min, p->activation_max);
    const vmcu_chan_ctx_t cx = vmcu_chan_ctx(&r, taps, p->input_offset);
    dw_t d;
    d.p = p;
    d.r = &r;
    d.filter = filter;
    d.bias = bias;
    d.ox_lo = vmcu_min_i32((p->pad_left + stride_w - 1) / stride_w, out_w);
    const int32_t last_full = in_w - 1 - (filter_w - 1) * p->dilation_w + p->pad_left;
    d.ox_hi = vmcu_max_i32(d.ox_lo, vmcu_min_i32(out_w, last_full >= 0 ? last_full / stride_w + 1 : 0));
    d.a.out_step = out_c;
    d.a.offset2 = vmcu_dup16(p->input_offset);
    d.zp_word = (uint8_t)-p->input_offset * 0x01010101u;
    d.padded_w = (out_w - 1) * stride_w + (filter_w - 1) * p->dilation_w + 1;
    d.padded_h = (out_h - 1) * p->stride_h + (p->filter_shape[1] - 1) * p->dilation_h + 1;
    d.staged = out_w < VMCU_DW_NARROW || p->depth_multiplier > 1;
    /* staged rows take VMCU_DW_IMAGE_MAX bytes whatever out_h: segment kernels call with row bands */
    const int32_t rows_words = d.staged ? vmcu_max_i32(VMCU_DW_IMAGE_MAX / 4, p->filter_shape[1] * d.padded_w) : 0;
    const int32_t image_words = d.padded_h * d.padded_w <= rows_words ? d.padded_h * d.padded_w : 0;
    /* scratch: [records][window][narrow rows][staged output row] */
    const int32_t rec_bytes = 4 * rec_words * groups, stage_at = rec_bytes + 4 * taps + 4 * rows_words;
    const int32_t cached = stage_at + (row_bytes + 3) / 4 * 4 <= VMCU_SCRATCH_MAX;
    uint32_t *const records = (uint32_t *)(void *)scratch;
    d.window = records + (cached ? rec_words * groups : rec_words);
    d.rows = d.window + taps;
    const uintptr_t in0 = (uintptr_t)input, out0 = (uintptr_t)output;
    const int32_t out_bytes = batches * out_h * row_bytes;
    if (out0 + (uint32_t)out_bytes <= in0 || in0 + (uint32_t)(batches * image_bytes) <= out0) {
        d.image_staged = image_words > 0;
        for (int32_t g = 0; g < groups; ++g) {  /* no overlap: group by group, one record */
            const uint32_t *const gr = build_record(records, &cx, p, filter, bias, 4 * g, taps) ? records : NULL;
            for (int32_t b = 0; b < batches; ++b) {
                if (d.image_staged) {
                    stage_rows(&d, input + b * image_bytes, 4 * g, -p->pad_top, 1, d.padded_h);
                }
                for (int32_t oy = 0; oy < out_h; ++oy) {
                    group_row(&d, gr, input + b * image_bytes, oy, 4 * g, output + (b * out_h + oy) * row_bytes);
                }
            }
        }
        for (int32_t b = 0; b < batches; ++b) {
            for (int32_t oy = 0; oy < out_h; ++oy) {
                rest_row(&d, input + b * image_bytes, oy, simd_c, output + (b * out_h + oy) * row_bytes);
            }
        }
        if (!r.full_range) {
            for (int32_t i = 0; i < out_bytes; ++i) {
                output[i] = (int8_t)vmcu_clamp_i32(output[i], r.act_min, r.act_max);
            }
        }
        return;
    }
    int8_t *const stage = (int8_t *)(d.rows + rows_words);
    d.image_staged = 0;
    for (int32_t g = 0; g < groups && cached; ++g) {
        if (!build_record(records + g * rec_words, &cx, p, filter, bias, 4 * g, taps)) {
            records[g * rec_words] = VMCU_TAG_EXACT;  /* odd: never a record's accumulator start */
        }
    }
    for (int32_t b = 0; b < batches; ++b) {
        const int8_t *image = input + b * image_bytes;
        for (int32_t oy = 0; oy < out_h; ++oy, output += row_bytes) {
            for (int32_t g = 0; g < groups; ++g) {
                const uint32_t *rec = records + (cached ? g * rec_words : 0);
                const int fast = cached ? rec[0] != VMCU_TAG_EXACT
                                        : build_record(records, &cx, p, filter, bias, 4 * g, taps);
                group_row(&d, fast ? rec : NULL, image, oy, 4 * g, stage);
            }
            rest_row(&d, image, oy, simd_c, stage);
            if (!r.full_range) {
                for (int32_t i = 0; i < row_bytes; ++i) {
                    stage[i] = (int8_t)vmcu_clamp_i32(stage[i], r.act_min, r.act_max);
                }
            }
            memcpy(output, stage, (size_t)row_bytes);
        }
    }
}
