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
 * The kernel proper, vmcu_depthwise_conv_2d_views_s8 (vmcu_dw.h), addresses its tensors through views of
 * the circular pool of segment plans (vmcu_seg.h), so the segment kernel runs it whole; this kernel passes
 * flat views. Input rows are resolved once per row and group; a band of tap rows that straddles the wrap is
 * staged like the rows of narrow outputs, and an output row that straddles it is built in the staged
 * output row, then stored in two parts.
 *
 * Each group runs over the whole image with its record built once (and, when it fits, the whole padded
 * image staged once) when the output does not overlap the input, and also when it overlaps it whole
 * pixels apart with one input channel per output channel, as segment plans place it: output channel c
 * then lands on input channel c only, so a group's stores overwrite only its own channels' inputs, pixel
 * after pixel as its reads advance, and each channel sees exactly the reads and stores of a pixel-by-pixel
 * pass (the order segment_gap assumes). Otherwise rows go one at a time (but a leading run of rows the
 * caller names, whose output lands on no input), all groups within a row, and the row is staged and stored
 * once all its inputs have been read; the records are then built once per call when they all fit in
 * VMCU_SCRATCH_MAX, else per row and group. vmcu_depthwise_conv_2d_plane_s8 runs the grouped pass of one
 * group into a plane of four bytes a pixel, for the in-place kernel (arm/depthwise_conv_2d_inplace.c).
 */
#include "vmcu_arm.h"
#include "vmcu_dw.h"
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

#define VMCU_DW_NARROW 8      /* rows of fewer output pixels are staged whole, padding included */
#define VMCU_DW_IMAGE_MAX 1024 /* and, in a grouped pass, the whole padded image when it fits in these bytes */

typedef struct {
    const vmcu_depthwise_conv_2d_params_t *p;
    const vmcu_requant_t *r;
    const int8_t *filter;
    const int32_t *bias;
    const vmcu_seg_src_t *in;
    int32_t row_in;        /* bytes per input row */
    int32_t ox_lo, ox_hi;  /* output columns whose windows span all filter columns inside the image */
    uint32_t *window;      /* a staged window, kh * kw words */
    uint32_t *rows;        /* staged rows: kh tap rows of padded_w words, or padded_h rows */
    int32_t padded_w, padded_h, image_staged, staged;
    int32_t out_px;        /* bytes between output pixels: C_out, or 4 in a plane of one group */
    uint32_t zp_word;      /* four input zero points: x + input_offset == 0 */
    dw_args_t a;
} dw_t;

/* Input bytes [off, off + n) as one pointer, or NULL when they straddle the wrap. */
static inline const int8_t *flat_at(const dw_t *d, int32_t off, int32_t n) {
    return vmcu_seg_straddles(d->in->split, off, n) ? NULL : vmcu_seg_at(d->in, off);
}

/* One output channel of one pixel of the image at input offset img, exactly: the in-bounds taps
 * [fy0, fy1) x [fx0, fx1), their band of rows resolved once unless it straddles the wrap. */
static int8_t pixel_exact(const dw_t *d, int32_t img, int32_t oc, int32_t iy0, int32_t ix0, int32_t fy0, int32_t fy1,
                          int32_t fx0, int32_t fx1) {
    const vmcu_depthwise_conv_2d_params_t *p = d->p;
    const int32_t in_w = p->input_shape[2], in_c = p->input_shape[3], filter_w = p->filter_shape[2];
    const int32_t out_c = p->output_shape[3], ic = oc / p->depth_multiplier, dil_h = p->dilation_h;
    int32_t acc = p->has_bias ? d->bias[oc] : 0;
    if (fy1 > fy0) {
        const int32_t band = img + (iy0 + fy0 * dil_h) * d->row_in;
        const int8_t *x = flat_at(d, band, ((fy1 - fy0 - 1) * dil_h + 1) * d->row_in);
        for (int32_t fy = fy0; fy < fy1; ++fy) {
            for (int32_t fx = fx0; fx < fx1; ++fx) {
                const int32_t off = ((fy - fy0) * dil_h * in_w + ix0 + fx * p->dilation_w) * in_c + ic;
                const int32_t v = x ? x[off] : *vmcu_seg_at(d->in, band + off);
                acc += d->filter[(fy * filter_w + fx) * out_c + oc] * (v + p->input_offset);
            }
        }
    }
    return vmcu_requant_exact(d->r, acc, oc);
}

/* Channels [c0, C) of one output row exactly (the last C % 4, or all when depth_multiplier > 1), into `out`
 * (that row's first pixel, channel c0). */
static void rest_row(const dw_t *d, int32_t img, int32_t oy, int32_t c0, int8_t *out) {
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
            out[ox * d->out_px + oc - c0] = pixel_exact(d, img, oc, iy0, ix0, fy0, fy1, fx0, fx1);
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

/* The four channels c .. c + 3 (of input channels (c + j) / mult) of n input pixels from src on (flat, at
 * channel 0, in_c bytes apart), one word a pixel. */
static inline uint32_t *stage_pixels(uint32_t *dst, const int8_t *src, int32_t c, int32_t n, int32_t in_c,
                                     int32_t mult) {
    if (mult == 1) {
        return copy_words(dst, src + c, in_c, n);
    }
    if (mult % 4 == 0) {  /* the four channels share one input channel */
        for (int32_t k = 0; k < n; ++k, src += in_c) {
            *dst++ = (uint8_t)src[c / mult] * 0x01010101u;
        }
        return dst;
    }
    for (int32_t k = 0; k < n; ++k, src += in_c) {
        *dst++ = (uint8_t)src[c / mult] | (uint32_t)(uint8_t)src[(c + 1) / mult] << 8 |
                 (uint32_t)(uint8_t)src[(c + 2) / mult] << 16 | (uint32_t)(uint8_t)src[(c + 3) / mult] << 24;
    }
    return dst;
}

/* stage_pixels for n pixels from input offset off in a row that straddles the wrap: those before it, the
 * one across it byte by byte, those after it. */
static __attribute__((noinline)) uint32_t *stage_ring_pixels(const dw_t *d, uint32_t *dst, int32_t off, int32_t c,
                                                              int32_t n) {
    const int32_t in_c = d->p->input_shape[3], mult = d->p->depth_multiplier;
    int32_t k = vmcu_min_i32(n, (d->in->split - off) / in_c);
    dst = stage_pixels(dst, d->in->head + off, c, k, in_c, mult);
    off += k * in_c;
    if (k < n && off < d->in->split) {
        uint32_t v = 0;
        if (mult == 1 && !vmcu_seg_straddles(d->in->split, off + c, 4)) {  /* its four channels do not */
            v = vmcu_load32(vmcu_seg_at(d->in, off + c));
        } else {
            for (int32_t j = 3; j >= 0; --j) {
                v = v << 8 | (uint8_t)*vmcu_seg_at(d->in, off + (c + j) / mult);
            }
        }
        *dst++ = v;
        off += in_c;
        k += 1;
    }
    return k < n ? stage_pixels(dst, vmcu_seg_at(d->in, off), c, n - k, in_c, mult) : dst;
}

/* The staged rows of input rows iy0, iy0 + step, ... (n of them) at dst, row iy at base + (img + iy * row_in
 * - base_off) (base_off: the input offset of base), each from column -pad_left on for padded_w words, the
 * input zero point outside the image. */
static uint32_t *stage_run(const dw_t *d, uint32_t *dst, const int8_t *base, int32_t base_off, int32_t img, int32_t c,
                           int32_t iy0, int32_t step, int32_t n) {
    const vmcu_depthwise_conv_2d_params_t *p = d->p;
    const int32_t in_h = p->input_shape[1], in_w = p->input_shape[2], in_c = p->input_shape[3];
    const int32_t mult = p->depth_multiplier, row_in = d->row_in;
    const int32_t pw = d->padded_w, left = vmcu_min_i32(p->pad_left, pw);
    const int32_t inside = vmcu_max_i32(0, vmcu_min_i32(pw - left, in_w));
    const uint32_t zp = d->zp_word;
    for (int32_t iy = iy0, end = iy0 + n * step; iy != end; iy += step) {
        if (iy < 0 || iy >= in_h) {
            dst = fill_words(dst, zp, pw);
            continue;
        }
        dst = fill_words(dst, zp, left);
        dst = stage_pixels(dst, base + (img + iy * row_in - base_off), c, inside, in_c, mult);
        dst = fill_words(dst, zp, pw - left - inside);
    }
    return dst;
}

/* Staged rows of the group's four channels (see stage_run) of the image at input offset img: the rows before
 * the pool's wrap, the one across it (pixel by pixel), those after it. */
static void stage_rows(const dw_t *d, int32_t img, int32_t c, int32_t iy0, int32_t step, int32_t n) {
    const vmcu_seg_src_t *in = d->in;
    const int32_t room = in->split - img, row_in = d->row_in;
    if (room >= d->p->input_shape[1] * row_in) {
        stage_run(d, d->rows, in->head, 0, img, c, iy0, step, n);
        return;
    }
    const int32_t wrap = room > 0 ? room / row_in : 0;  /* rows [0, wrap) lie before the wrap */
    const int32_t k = vmcu_clamp_i32(wrap > iy0 ? (wrap - iy0 + step - 1) / step : 0, 0, n);
    uint32_t *dst = stage_run(d, d->rows, in->head, 0, img, c, iy0, step, k);
    const int32_t iy = iy0 + k * step;
    if (k < n && iy == wrap && room > 0 && room % row_in) {
        const int32_t pw = d->padded_w, left = vmcu_min_i32(d->p->pad_left, pw);
        const int32_t inside = vmcu_max_i32(0, vmcu_min_i32(pw - left, d->p->input_shape[2]));
        dst = fill_words(dst, d->zp_word, left);
        dst = stage_ring_pixels(d, dst, img + iy * row_in, c, inside);
        dst = fill_words(dst, d->zp_word, pw - left - inside);
        stage_run(d, dst, in->tail, in->split, img, c, iy + step, step, n - k - 1);
        return;
    }
    stage_run(d, dst, in->tail, in->split, img, c, iy, step, n - k);
}

/* One output row of the image at input offset img, for the group of channels c .. c + 3 with record rec
 * (NULL: the exact path), into `out` (that row's first pixel, channel c). Windows inside the image are
 * read in place; the others, or the whole row when narrow or when its band of input rows straddles the
 * wrap, are staged with the input zero point for taps outside. */
static void group_row(dw_t *d, const uint32_t *rec, int32_t img, int32_t oy, int32_t c, int8_t *out) {
    const vmcu_depthwise_conv_2d_params_t *p = d->p;
    const int32_t in_h = p->input_shape[1], in_w = p->input_shape[2], in_c = p->input_shape[3];
    const int32_t filter_h = p->filter_shape[1], filter_w = p->filter_shape[2];
    const int32_t out_w = p->output_shape[2], out_px = d->out_px, stride_w = p->stride_w;
    const int32_t dil_h = p->dilation_h, dil_w = p->dilation_w, iy0 = oy * p->stride_h - p->pad_top;
    int32_t fy0, fy1;
    tap_range(iy0, dil_h, filter_h, in_h, &fy0, &fy1);
    if (rec == NULL) {
        for (int32_t ox = 0, ix0 = -p->pad_left; ox < out_w; ++ox, ix0 += stride_w) {
            int32_t fx0, fx1;
            tap_range(ix0, dil_w, filter_w, in_w, &fx0, &fx1);
            for (int32_t j = c; j < c + 4; ++j) {
                out[ox * out_px + j - c] = pixel_exact(d, img, j, iy0, ix0, fy0, fy1, fx0, fx1);
            }
        }
        return;
    }
    const int32_t row_stride = dil_h * d->row_in, inside = fy1 > fy0;
    /* the band of rows the windows read, from column 0 of its first row at channel c */
    const int8_t *const band = d->staged || !inside ? NULL
                               : flat_at(d, img + (iy0 + fy0 * dil_h) * d->row_in,
                                         (fy1 - fy0 - 1) * row_stride + d->row_in);
    if (d->staged || (inside && band == NULL)) {
        const uint32_t *x = d->rows + oy * p->stride_h * d->padded_w;
        if (!d->image_staged) {
            stage_rows(d, img, c, iy0, dil_h, filter_h);
            x = d->rows;
        }
        run_pixels(d, rec, (const int8_t *)x, 4 * stride_w, out_w, 0, filter_h, 0, filter_w, 4 * dil_w,
                   4 * (d->image_staged ? dil_h : 1) * d->padded_w, out);
        return;
    }
    const int32_t tap_stride = dil_w * in_c;
    for (int32_t ox = 0; ox < out_w; ++ox) {
        const int32_t ix0 = ox * stride_w - p->pad_left;
        if (band && ox == d->ox_lo && d->ox_hi > ox) {  /* the columns inside, in place */
            run_pixels(d, rec, band + ix0 * in_c + c, stride_w * in_c, d->ox_hi - ox, fy0, fy1 - fy0, 0, filter_w,
                       tap_stride, row_stride, out + ox * out_px);
            ox = d->ox_hi - 1;
            continue;
        }
        int32_t fx0, fx1;
        tap_range(ix0, dil_w, filter_w, in_w, &fx0, &fx1);
        if (band && fx1 > fx0) {  /* a border window: its taps inside, in place */
            run_pixels(d, rec, band + (ix0 + fx0 * dil_w) * in_c + c, 0, 1, fy0, fy1 - fy0, fx0, fx1 - fx0, tap_stride,
                       row_stride, out + ox * out_px);
            continue;
        }
        /* no tap inside: the bias alone, through a window of zero points */
        fill_words(d->window, d->zp_word, filter_h * filter_w);
        run_pixels(d, rec, (const int8_t *)d->window, 0, 1, 0, filter_h, 0, filter_w, 4, 4 * filter_w,
                   out + ox * out_px);
    }
}

/* Stores channels [c0, c0 + n) of each pixel of the output row at offset `row`, built in `stage` (in a
 * grouped pass, the row that straddles the wrap). */
static void store_channels(const vmcu_seg_dst_t *out, int32_t row, const int8_t *stage, int32_t out_w,
                           int32_t out_c, int32_t c0, int32_t n) {
    const int32_t split = out->split;
    for (int32_t i = row + c0, end = row + out_w * out_c; i < end; i += out_c) {
        const int8_t *const x = stage + (i - row);
        if (vmcu_seg_straddles(split, i, n)) {
            for (int32_t j = 0; j < n; ++j) {
                *vmcu_seg_dst_at(out, i + j) = x[j];
            }
        } else if (n == 4) {
            vmcu_store32(vmcu_seg_dst_at(out, i), vmcu_load32(x));
        } else {
            int8_t *const y = vmcu_seg_dst_at(out, i);
            for (int32_t j = 0; j < n; ++j) {
                y[j] = x[j];
            }
        }
    }
}

/* Output rows [0, out_h) of image b for the group of channels c .. c + 3 with record rec (NULL: the exact
 * path), in a grouped pass; an output row that straddles the wrap (never in a plane) is built in `stage`. */
static void group_image(dw_t *d, const uint32_t *rec, int32_t b, int32_t out_h, int32_t c,
                        const vmcu_seg_dst_t *out, int8_t *stage) {
    const vmcu_depthwise_conv_2d_params_t *p = d->p;
    const int32_t out_w = p->output_shape[2], out_c = p->output_shape[3];
    const int32_t img = b * p->input_shape[1] * d->row_in, row_bytes = out_w * d->out_px;
    const int32_t first = b * p->output_shape[1] * row_bytes;
    const int32_t at = d->out_px == out_c ? c : 0;  /* channel c's byte in a pixel: a plane holds the group only */
    if (d->image_staged) {
        stage_rows(d, img, c, -p->pad_top, 1, d->padded_h);
    }
    const int runs = d->image_staged && rec && out_w == 1;  /* a pixel a row: runs of rows are runs of pixels */
    for (int32_t oy = 0, row = first; oy < out_h;) {
        if (vmcu_seg_straddles(out->split, row, row_bytes)) {
            group_row(d, rec, img, oy, c, stage + c);
            store_channels(out, row, stage, out_w, out_c, c, 4);
            oy += 1;
            row += row_bytes;
            continue;
        }
        /* the rows up to the wrap or the end */
        const int32_t n = vmcu_min_i32(out_h - oy, vmcu_seg_run(out->split, row) / row_bytes);
        int8_t *const o = vmcu_seg_dst_at(out, row);
        if (runs) {
            run_pixels(d, rec, (const int8_t *)(d->rows + oy * p->stride_h * d->padded_w),
                       4 * p->stride_h * d->padded_w, n, 0, p->filter_shape[1], 0, p->filter_shape[2],
                       4 * p->dilation_w, 4 * p->dilation_h * d->padded_w, o + at);
        } else {
            for (int32_t k = 0; k < n; ++k) {
                group_row(d, rec, img, oy + k, c, o + k * row_bytes + at);
            }
        }
        oy += n;
        row += n * row_bytes;
    }
}

/* The activation range applied to output bytes [0, n), in the runs before and after the wrap. */
static void clamp_output(const vmcu_seg_dst_t *out, int32_t n, int32_t lo, int32_t hi) {
    for (int32_t i = 0; i < n;) {
        int8_t *y = vmcu_seg_dst_at(out, i);
        const int32_t k = vmcu_min_i32(n - i, vmcu_seg_run(out->split, i));
        for (int32_t j = 0; j < k; ++j) {
            y[j] = (int8_t)vmcu_clamp_i32(y[j], lo, hi);
        }
        i += k;
    }
}

/* The fields of d that do not depend on the pass, for output pixels out_px bytes apart. */
static void dw_setup(dw_t *d, const vmcu_requant_t *r, const vmcu_depthwise_conv_2d_params_t *p,
                     const vmcu_seg_src_t *input, const int8_t *filter, const int32_t *bias, int32_t out_px) {
    const int32_t in_w = p->input_shape[2], filter_w = p->filter_shape[2];
    const int32_t out_h = p->output_shape[1], out_w = p->output_shape[2], stride_w = p->stride_w;
    d->p = p;
    d->r = r;
    d->filter = filter;
    d->bias = bias;
    d->in = input;
    d->row_in = in_w * p->input_shape[3];
    d->ox_lo = vmcu_min_i32((p->pad_left + stride_w - 1) / stride_w, out_w);
    const int32_t last_full = in_w - 1 - (filter_w - 1) * p->dilation_w + p->pad_left;
    d->ox_hi = vmcu_max_i32(d->ox_lo, vmcu_min_i32(out_w, last_full >= 0 ? last_full / stride_w + 1 : 0));
    d->out_px = out_px;
    d->a.out_step = out_px;
    d->a.offset2 = vmcu_dup16(p->input_offset);
    d->zp_word = (uint8_t)-p->input_offset * 0x01010101u;
    d->padded_w = (out_w - 1) * stride_w + (filter_w - 1) * p->dilation_w + 1;
    d->padded_h = (out_h - 1) * p->stride_h + (p->filter_shape[1] - 1) * p->dilation_h + 1;
    d->staged = out_w < VMCU_DW_NARROW || p->depth_multiplier > 1;
}

/* Words of staged rows: VMCU_DW_IMAGE_MAX bytes whatever out_h for staged outputs, so that row bands of the op
 * need no more; wide rows need the kh tap rows only for a band that straddles the wrap (`wraps`). */
static int32_t staged_words(const dw_t *d, int wraps) {
    const int32_t band_words = d->p->filter_shape[1] * d->padded_w;
    return d->staged ? vmcu_max_i32(VMCU_DW_IMAGE_MAX / 4, band_words) : wraps ? band_words : 0;
}

/* Group g's record: lent (NULL when it takes the exact path), else built at `own`. */
static const uint32_t *group_record(const vmcu_dw_records_t *lent, uint32_t *own, const vmcu_chan_ctx_t *cx,
                                    const vmcu_depthwise_conv_2d_params_t *p, const int8_t *filter,
                                    const int32_t *bias, int32_t g, int32_t taps) {
    if (lent && g < lent->groups) {
        const uint32_t *const rec = lent->words + g * vmcu_dw_record_words(p);
        return rec[0] != VMCU_TAG_EXACT ? rec : NULL;
    }
    return build_record(own, cx, p, filter, bias, 4 * g, taps) ? own : NULL;
}

void vmcu_depthwise_conv_2d_records_s8(const vmcu_depthwise_conv_2d_params_t *p, const int8_t *filter,
                                       const int32_t *bias, int32_t groups, uint32_t *records) {
    const int32_t taps = p->filter_shape[1] * p->filter_shape[2], rec_words = vmcu_dw_record_words(p);
    const vmcu_requant_t r = vmcu_requant_init(p->output_multiplier, p->output_shift, p->output_offset,
                                               p->activation_min, p->activation_max);
    const vmcu_chan_ctx_t cx = vmcu_chan_ctx(&r, taps, p->input_offset);
    for (int32_t g = 0; g < groups; ++g) {
        if (!build_record(records + g * rec_words, &cx, p, filter, bias, 4 * g, taps)) {
            records[g * rec_words] = VMCU_TAG_EXACT;  /* odd: never a record's accumulator start */
        }
    }
}

void vmcu_depthwise_conv_2d_views_s8(const vmcu_depthwise_conv_2d_params_t *p, const vmcu_seg_src_t *input,
                                     const int8_t *filter, const int32_t *bias, const vmcu_seg_dst_t *output,
                                     int32_t grouped_rows, const vmcu_dw_records_t *lent, int8_t *scratch) {
    const int32_t taps = p->filter_shape[1] * p->filter_shape[2];
    const int32_t out_h = p->output_shape[1], out_w = p->output_shape[2], out_c = p->output_shape[3];
    const int32_t batches = p->output_shape[0], row_bytes = out_w * out_c;
    const int32_t simd_c = out_c & ~3, groups = simd_c / 4;
    const int32_t rec_words = vmcu_dw_record_words(p), image_bytes = vmcu_seg_nhwc_bytes(p->input_shape) / batches;
    const vmcu_requant_t r = vmcu_requant_init(p->output_multiplier, p->output_shift, p->output_offset,
                                               p->activation_min, p->activation_max);
    const vmcu_chan_ctx_t cx = vmcu_chan_ctx(&r, taps, p->input_offset);
    dw_t d;
    dw_setup(&d, &r, p, input, filter, bias, out_c);
    const int32_t rows_words = staged_words(&d, !vmcu_seg_contiguous(input->split, batches * image_bytes));
    const int32_t rows = batches * out_h, grouped = vmcu_min_i32(grouped_rows, rows);
    /* scratch: [records][window][staged rows][staged output row]; a grouped pass keeps one record */
    const int32_t rec_bytes = 4 * rec_words * groups, stage_at = rec_bytes + 4 * taps + 4 * rows_words;
    const int32_t cached = grouped < rows && stage_at + (row_bytes + 3) / 4 * 4 <= VMCU_SCRATCH_MAX;
    uint32_t *const records = (uint32_t *)(void *)scratch;
    d.window = records + (cached ? rec_words * groups : rec_words);
    d.rows = d.window + taps;
    int8_t *const stage = (int8_t *)(d.rows + rows_words);
    /* the first `grouped` output rows (over all images) group by group, one record */
    d.image_staged = d.staged && d.padded_h * d.padded_w <= rows_words;
    for (int32_t g = 0; g < groups && grouped > 0; ++g) {
        const uint32_t *const gr = group_record(lent, records, &cx, p, filter, bias, g, taps);
        for (int32_t b = 0; b * out_h < grouped; ++b) {
            group_image(&d, gr, b, vmcu_min_i32(out_h, grouped - b * out_h), 4 * g, output, stage);
        }
    }
    for (int32_t row = 0; row < grouped && simd_c < out_c; ++row) {  /* the last C % 4 channels */
        int8_t *const out = vmcu_seg_unit(output, row * row_bytes, row_bytes, stage);
        rest_row(&d, row / out_h * image_bytes, row % out_h, simd_c, out + simd_c);
        if (out == stage) {
            store_channels(output, row * row_bytes, stage, out_w, out_c, simd_c, out_c - simd_c);
        }
    }
    if (!r.full_range) {
        clamp_output(output, grouped * row_bytes, r.act_min, r.act_max);
    }
    /* the other rows one at a time, all groups of a row before its store */
    d.image_staged = 0;
    const vmcu_dw_records_t own = {records, cached ? groups : 0};
    if (cached) {
        vmcu_depthwise_conv_2d_records_s8(p, filter, bias, groups, records);
    }
    for (int32_t row = grouped; row < rows; ++row) {
        const int32_t img = row / out_h * image_bytes, oy = row % out_h;
        for (int32_t g = 0; g < groups; ++g) {
            const uint32_t *const rec = group_record(cached ? &own : lent, records, &cx, p, filter, bias, g, taps);
            group_row(&d, rec, img, oy, 4 * g, stage + 4 * g);
        }
        rest_row(&d, img, oy, simd_c, stage + simd_c);
        if (!r.full_range) {
            for (int32_t i = 0; i < row_bytes; ++i) {
                stage[i] = (int8_t)vmcu_clamp_i32(stage[i], r.act_min, r.act_max);
            }
        }
        vmcu_seg_write(output, row * row_bytes, stage, row_bytes);
    }
}

void vmcu_depthwise_conv_2d_s8(const vmcu_depthwise_conv_2d_params_t *p, const int8_t *input,
                               const int8_t *filter, const int32_t *bias, int8_t *output, int8_t *scratch) {
    const vmcu_seg_src_t in = vmcu_seg_flat(input);
    const vmcu_seg_dst_t out = {output, output, INT32_MAX};
    const uintptr_t in0 = (uintptr_t)input, out0 = (uintptr_t)output;
    const int32_t in_bytes = vmcu_seg_nhwc_bytes(p->input_shape), out_bytes = vmcu_seg_nhwc_bytes(p->output_shape);
    const int apart = out0 + (uint32_t)out_bytes <= in0 || in0 + (uint32_t)in_bytes <= out0;
    const int channelwise = p->depth_multiplier == 1 && (int32_t)(in0 - out0) % p->input_shape[3] == 0;
    vmcu_depthwise_conv_2d_views_s8(p, &in, filter, bias, &out, apart || channelwise ? INT32_MAX : 0, NULL,
                                    scratch);
}

void vmcu_depthwise_conv_2d_plane_s8(const vmcu_depthwise_conv_2d_params_t *p, const int8_t *input,
                                     const int8_t *filter, const int32_t *bias, int32_t c, int8_t *plane,
                                     int8_t *scratch) {
    const int32_t taps = p->filter_shape[1] * p->filter_shape[2], rec_words = vmcu_dw_record_words(p);
    const int32_t out_h = p->output_shape[1], row_bytes = 4 * p->output_shape[2];
    const vmcu_requant_t r = vmcu_requant_init(p->output_multiplier, p->output_shift, p->output_offset,
                                               p->activation_min, p->activation_max);
    const vmcu_seg_src_t in = vmcu_seg_flat(input);
    const vmcu_seg_dst_t out = {plane, plane, INT32_MAX};
    dw_t d;
    dw_setup(&d, &r, p, &in, filter, bias, 4);
    /* scratch: [record][window][staged rows], as a grouped pass of vmcu_depthwise_conv_2d_views_s8 */
    uint32_t *const rec = (uint32_t *)(void *)scratch;
    d.window = rec + rec_words;
    d.rows = d.window + taps;
    d.image_staged = d.staged && d.padded_h * d.padded_w <= staged_words(&d, 0);
    if (c + 4 > p->output_shape[3]) {
        for (int32_t oy = 0; oy < out_h; ++oy) {
            rest_row(&d, 0, oy, c, plane + oy * row_bytes);
        }
        return;
    }
    const vmcu_chan_ctx_t cx = vmcu_chan_ctx(&r, taps, p->input_offset);
    group_image(&d, build_record(rec, &cx, p, filter, bias, c, taps) ? rec : NULL, 0, out_h, c, &out, NULL);
}
