/* CONV_2D int8 on the circular pool for Cortex-M with the DSP extension (same results as seg_conv_2d.c and
 * ref/conv_2d.c).
 *
 * The work goes to the tensor kernel (arm/conv_2d.c, as tuned) wherever the wrap allows: the output is
 * walked in order in rows of pixels (in pixels for a 1x1 stride-1 conv), and each maximal run of them
 * whose input rows and output straddle neither tensor's wrap is one call on the flat sub-image (its
 * padding adjusted). The few rows or pixels that straddle a wrap run pixels_seg: a copy of the tensor
 * kernel's loops (column buffer, 2x2 SMLAD asm, requantizer) on input pixels (or filter rows, when the
 * field is gathered through the int8 staging row) resolved once each, through `bounce` in scratch when
 * one straddles; each output pixel is requantized in place, or in `stage` when it straddles the wrap and
 * then stored in two parts. Both pixels of a pair are read before either is stored.
 */
#include "vmcu_arm.h"
#include "vmcu_seg.h"

typedef struct {
    int32_t in_h, in_w, in_c, filter_h, filter_w, dil_h, dil_w, input_offset;
    int32_t k, groups, pointwise, staged;
    int16x2_t offset2;
    uint32_t *col;  /* 4 * groups words */
    int8_t *stage;  /* 4 * groups bytes when staged */
    vmcu_seg_src_t src;
    int8_t *bounce; /* in_c bytes: an input pixel that straddles the wrap */
} column_t;

/* Converts 4 * n int8 values from `src` into groups g0 .. g0 + n - 1 of pixel slot `slot`. */
static inline void convert_groups(const column_t *c, int32_t slot, const int8_t *src, int32_t g0, int32_t n) {
    uint32_t *dst = c->col + 4 * g0 + 2 * slot;
    const int16x2_t offset2 = c->offset2;
    for (int32_t g = 0; g < n; ++g, src += 4, dst += 4) {
        const uint32_t v = vmcu_load32(src);
        dst[0] = (uint32_t)__sxtab16(offset2, (int8x4_t)v);
        dst[1] = (uint32_t)vmcu_sxtab16_ror8(offset2, v);
    }
}

/* Short copies and fills a word at a time (M4/M7 LDR/STR take unaligned addresses). */
static inline void copy_bytes(int8_t *dst, const int8_t *src, int32_t n) {
    int32_t j = 0;
    for (; j + 4 <= n; j += 4) {
        vmcu_store32(dst + j, vmcu_load32(src + j));
    }
    for (; j < n; ++j) {
        dst[j] = src[j];
    }
}

static inline void fill_bytes(int8_t *dst, int8_t v, int32_t n) {
    const uint32_t word = (uint8_t)v * 0x01010101u;
    int32_t j = 0;
    for (; j + 4 <= n; j += 4) {
        vmcu_store32(dst + j, word);
    }
    for (; j < n; ++j) {
        dst[j] = v;
    }
}

/* n input bytes at tensor offset `off` into dst, in two parts when they straddle the wrap. */
static inline void read_bytes(const column_t *c, int8_t *dst, int32_t off, int32_t n) {
    if (vmcu_seg_straddles(c->src.split, off, n)) {
        const int32_t first = c->src.split - off;
        copy_bytes(dst, c->src.head + off, first);
        copy_bytes(dst + first, c->src.tail, n - first);
    } else {
        copy_bytes(dst, vmcu_seg_at(&c->src, off), n);
    }
}

/* The input pixel at tensor offset `off`, resolved once. */
static inline const int8_t *pixel(const column_t *c, int32_t off) {
    return vmcu_seg_span(&c->src, off, c->in_c, c->bounce);
}

/* Gathers the receptive field at input origin (iy0, ix0) into the int8 staging row, the input zero point
 * standing for padding (and for the K % 4 filler); with dilation_w 1 each filter row's in-bounds taps
 * are one contiguous copy. */
static void stage_field(const column_t *c, int32_t image, int32_t iy0, int32_t ix0) {
    const int32_t in_c = c->in_c, filter_w = c->filter_w, dil_w = c->dil_w, row = filter_w * in_c;
    const int8_t zero_point = (int8_t)-c->input_offset;
    const int32_t fx0 = ix0 < 0 ? vmcu_min_i32((-ix0 + dil_w - 1) / dil_w, filter_w) : 0;
    const int32_t fx1 = vmcu_max_i32(fx0, vmcu_min_i32(filter_w, (c->in_w - ix0 + dil_w - 1) / dil_w));
    int8_t *dst = c->stage;
    const int32_t rows_inside = iy0 >= 0 && iy0 + (c->filter_h - 1) * c->dil_h < c->in_h;
    if (fx0 == 0 && fx1 == filter_w && dil_w == 1 && rows_inside) {
        int32_t src = image + (iy0 * c->in_w + ix0) * in_c;
        for (int32_t fy = 0; fy < c->filter_h; ++fy, dst += row, src += c->dil_h * c->in_w * in_c) {
            read_bytes(c, dst, src, row);  /* a window inside the image: one copy per filter row */
        }
        fill_bytes(dst, zero_point, 4 * c->groups - c->k);
        return;
    }
    for (int32_t fy = 0; fy < c->filter_h; ++fy, dst += row) {
        const int32_t iy = iy0 + fy * c->dil_h;
        if (iy < 0 || iy >= c->in_h || fx1 == fx0) {
            fill_bytes(dst, zero_point, row);
            continue;
        }
        int32_t src = image + (iy * c->in_w + ix0 + fx0 * dil_w) * in_c;
        fill_bytes(dst, zero_point, fx0 * in_c);
        if (dil_w == 1) {
            read_bytes(c, dst + fx0 * in_c, src, (fx1 - fx0) * in_c);
        } else {
            for (int32_t fx = fx0; fx < fx1; ++fx, src += dil_w * in_c) {
                read_bytes(c, dst + fx * in_c, src, in_c);
            }
        }
        fill_bytes(dst + fx1 * in_c, zero_point, (filter_w - fx1) * in_c);
    }
    fill_bytes(dst, zero_point, 4 * c->groups - c->k);
}

/* Writes the receptive field at input origin (iy0, ix0) of the image at offset `image` into slot `slot`. */
static void fill(const column_t *c, int32_t slot, int32_t image, int32_t iy0, int32_t ix0) {
    const int32_t in_c = c->in_c;
    if (c->staged) {
        stage_field(c, image, iy0, ix0);
        convert_groups(c, slot, c->stage, 0, c->groups);
    } else if (c->pointwise) {
        convert_groups(c, slot, pixel(c, image + (iy0 * c->in_w + ix0) * in_c), 0, c->groups);
    } else {
        int32_t g = 0;
        for (int32_t fy = 0; fy < c->filter_h; ++fy) {
            const int32_t iy = iy0 + fy * c->dil_h;
            for (int32_t fx = 0; fx < c->filter_w; ++fx, g += in_c / 4) {
                const int32_t ix = ix0 + fx * c->dil_w;
                if (iy >= 0 && iy < c->in_h && ix >= 0 && ix < c->in_w) {
                    convert_groups(c, slot, pixel(c, image + (iy * c->in_w + ix) * in_c), g, in_c / 4);
                } else {
                    for (uint32_t *d = c->col + 4 * g + 2 * slot, *end = d + in_c; d < end; d += 4) {
                        d[0] = 0;
                        d[1] = 0;
                    }
                }
            }
        }
    }
}

/* One weight row's dot products with both pixels in C, reading exactly k bytes of it. */
static void one_row(const column_t *c, const int8_t *w, int32_t *s0, int32_t *s1) {
    const int32_t full = c->k / 4;
    const uint32_t *x = c->col;
    int32_t a0 = *s0, a1 = *s1;
    for (int32_t g = 0; g < c->groups; ++g, x += 4, w += 4) {
        uint32_t u = 0;
        if (g < full) {
            u = vmcu_load32(w);
        } else {
            for (int32_t j = c->k - 4 * g - 1; j >= 0; --j) {
                u = u << 8 | (uint8_t)w[j];
            }
        }
        const int16x2_t lo = __sxtb16((int8x4_t)u), hi = vmcu_sxtb16_ror8(u);
        a0 = __smlad((int16x2_t)x[1], hi, __smlad((int16x2_t)x[0], lo, a0));
        a1 = __smlad((int16x2_t)x[3], hi, __smlad((int16x2_t)x[2], lo, a1));
    }
    *s0 = a0;
    *s1 = a1;
}

/* For rows / 2 pairs of weight rows starting at w (row stride k): acc0[i], acc0[i + 1] and acc1[i],
 * acc1[i + 1] (acc1 = acc0 + n) = bias[i], bias[i + 1] plus the column of both pixels against rows i and
 * i + 1: `pairs` pairs of groups, then one more group if `single`. `bias` advances by bias_step bytes per
 * row pair (0 to reread a pair of zeros). Per pair of groups 35 instructions for 32 MACs, per pair of rows
 * 28 more. The outer state lives in memory: the inner loop needs 13 registers, so this also compiles at
 * -O0 and with a frame pointer. The column must be 4-byte aligned (LDRD); weights and bias need not be. */
static void rows_2x2_asm(const uint32_t *col, int32_t pairs, int32_t single, const int8_t *w, int32_t k,
                         int32_t rows, const int32_t *bias, int32_t bias_step, int32_t *acc0, int32_t n) {
    const uint32_t *const xend = col + 8 * pairs;
    const int32_t n_bytes = 4 * n, skip = k - 8 * pairs - 4 * single;  /* row bytes the loop leaves */
    int32_t count = rows / 2;
    int32_t *acc = acc0;
    const int8_t *w0 = w, *w1 = w + k;
    const uint32_t *x;
    int32_t s00, s01, s10, s11;
    uint32_t xa, xb, lo0, hi0, lo1, hi1;
#define VMCU_GROUP_2X2                          \
    "ldr %[hi0], [%[w0]], #4\n\t"               \
    "ldr %[hi1], [%[w1]], #4\n\t"               \
    "ldrd %[xa], %[xb], [%[x]], #8\n\t"         \
    "sxtb16 %[lo0], %[hi0]\n\t"                 \
    "sxtb16 %[hi0], %[hi0], ror #8\n\t"         \
    "sxtb16 %[lo1], %[hi1]\n\t"                 \
    "sxtb16 %[hi1], %[hi1], ror #8\n\t"         \
    "smlad %[s00], %[xa], %[lo0], %[s00]\n\t"   \
    "smlad %[s00], %[xb], %[hi0], %[s00]\n\t"   \
    "smlad %[s01], %[xa], %[lo1], %[s01]\n\t"   \
    "smlad %[s01], %[xb], %[hi1], %[s01]\n\t"   \
    "ldrd %[xa], %[xb], [%[x]], #8\n\t"         \
    "smlad %[s10], %[xa], %[lo0], %[s10]\n\t"   \
    "smlad %[s10], %[xb], %[hi0], %[s10]\n\t"   \
    "smlad %[s11], %[xa], %[lo1], %[s11]\n\t"   \
    "smlad %[s11], %[xb], %[hi1], %[s11]\n\t"
    __asm__ volatile("2:\n\t"
                     "ldr %[xa], %[bias]\n\t"
                     "ldr %[xb], %[bstep]\n\t"
                     "ldr %[s00], [%[xa]]\n\t"
                     "ldr %[s01], [%[xa], #4]\n\t"
                     "add %[xa], %[xa], %[xb]\n\t"
                     "str %[xa], %[bias]\n\t"
                     "mov %[s10], %[s00]\n\t"
                     "mov %[s11], %[s01]\n\t"
                     "ldr %[x], %[col]\n\t"
                     "ldr %[xa], %[xend]\n\t"
                     "cmp %[x], %[xa]\n\t"
                     "beq 3f\n\t"
                     "1:\n\t" VMCU_GROUP_2X2 VMCU_GROUP_2X2
                     "ldr %[xa], %[xend]\n\t"
                     "cmp %[x], %[xa]\n\t"
                     "bne 1b\n\t"
                     "3:\n\t"
                     "ldr %[xa], %[single]\n\t"
                     "cmp %[xa], #0\n\t"
                     "beq 4f\n\t" VMCU_GROUP_2X2
                     "4:\n\t"
                     "ldr %[xa], %[acc]\n\t"
                     "ldr %[xb], %[nb]\n\t"
                     "strd %[s00], %[s01], [%[xa]], #8\n\t"
                     "str %[xa], %[acc]\n\t"
                     "add %[xb], %[xb], %[xa]\n\t"
                     "strd %[s10], %[s11], [%[xb], #-8]\n\t"
                     "ldr %[xa], %[skip]\n\t"
                     "add %[w0], %[w1], %[xa]\n\t"
                     "ldr %[xa], %[k]\n\t"
                     "add %[w1], %[w0], %[xa]\n\t"
                     "ldr %[xa], %[count]\n\t"
                     "subs %[xa], %[xa], #1\n\t"
                     "str %[xa], %[count]\n\t"
                     "bne 2b\n\t"
                     : [s00] "=&r"(s00), [s01] "=&r"(s01), [s10] "=&r"(s10), [s11] "=&r"(s11), [x] "=&r"(x),
                       [w0] "+r"(w0), [w1] "+r"(w1), [xa] "=&r"(xa), [xb] "=&r"(xb), [lo0] "=&r"(lo0),
                       [hi0] "=&r"(hi0), [lo1] "=&r"(lo1), [hi1] "=&r"(hi1), [acc] "+m"(acc),
                       [count] "+m"(count), [bias] "+m"(bias)
                     : [xend] "m"(xend), [col] "m"(col), [k] "m"(k), [skip] "m"(skip), [nb] "m"(n_bytes),
                       [bstep] "m"(bias_step), [single] "m"(single)
                     : "cc", "memory");
#undef VMCU_GROUP_2X2
}

/* Output pixels [px0, px1) (row-major over all batches) with the copied inner loops on resolved pixels. */
static void pixels_seg(const vmcu_conv_2d_params_t *p, const vmcu_seg_src_t *input, const int8_t *filter,
                       const int32_t *bias, const vmcu_seg_dst_t *output, int8_t *stage, int8_t *scratch,
                       int32_t px0, int32_t px1) {
    const int32_t out_h = p->output_shape[1], out_w = p->output_shape[2], out_c = p->output_shape[3];
    column_t c;
    c.in_h = p->input_shape[1];
    c.in_w = p->input_shape[2];
    c.in_c = p->input_shape[3];
    c.filter_h = p->filter_shape[1];
    c.filter_w = p->filter_shape[2];
    c.dil_h = p->dilation_h;
    c.dil_w = p->dilation_w;
    c.input_offset = p->input_offset;
    c.k = c.filter_h * c.filter_w * c.in_c;
    c.groups = (c.k + 3) / 4;
    c.pointwise = c.filter_h == 1 && c.filter_w == 1 && p->pad_top == 0 && p->pad_left == 0;
    c.staged = c.in_c % 4 != 0;
    c.offset2 = vmcu_dup16(p->input_offset);
    c.col = (uint32_t *)(void *)scratch;
    c.stage = scratch + 16 * c.groups;
    int32_t *const acc = (int32_t *)(void *)(c.stage + (c.staged ? 4 * c.groups : 0));
    int32_t *const zeros = acc + 2 * vmcu_min_i32(out_c, VMCU_ACC_CHUNK);  /* the bias of a layer without */
    zeros[0] = zeros[1] = 0;
    c.src = *input;
    c.bounce = (int8_t *)(zeros + 2);
    const int32_t image_bytes = c.in_h * c.in_w * c.in_c;
    const vmcu_requant_t r = vmcu_requant_init(p->output_multiplier, p->output_shift, p->output_offset,
                                               p->activation_min, p->activation_max);
    int32_t image = px0 / (out_h * out_w) * image_bytes;
    int32_t oy = px0 / out_w % out_h, ox = px0 % out_w;
    for (int32_t px = px0; px < px1; px += 2) {
        const int32_t pair = px + 1 < px1;
        for (int32_t slot = 0; slot < 2; ++slot) {
            fill(&c, slot, image, oy * p->stride_h - p->pad_top, ox * p->stride_w - p->pad_left);
            if (slot == 0 && !pair) {
                fill(&c, 1, image, oy * p->stride_h - p->pad_top, ox * p->stride_w - p->pad_left);
                break;
            }
            if (++ox == out_w) {
                ox = 0;
                if (++oy == out_h) {
                    oy = 0;
                    image += image_bytes;
                }
            }
        }
        int8_t *const out0 = vmcu_seg_unit(output, px * out_c, out_c, stage);
        int8_t *const out1 = pair ? vmcu_seg_unit(output, (px + 1) * out_c, out_c, stage) : NULL;
        for (int32_t c0 = 0; c0 < out_c; c0 += VMCU_ACC_CHUNK) {
            const int32_t n = vmcu_min_i32(VMCU_ACC_CHUNK, out_c - c0);
            /* rows the asm may run: all but an odd last one, and never the filter's last row when K % 4 */
            const int32_t asm_rows = (c0 + n == out_c && c.k % 4 ? n - 1 : n) & ~1;
            if (asm_rows > 0) {
                rows_2x2_asm(c.col, c.groups / 2, c.groups & 1, filter + c0 * c.k, c.k, asm_rows,
                             p->has_bias ? bias + c0 : zeros, p->has_bias ? 8 : 0, acc, n);
            }
            for (int32_t i = asm_rows; i < n; ++i) {
                acc[i] = acc[n + i] = p->has_bias ? bias[c0 + i] : 0;
                one_row(&c, filter + (c0 + i) * c.k, acc + i, acc + n + i);
            }
            vmcu_requant_block(&r, acc, c0, n, out0 + c0, pair ? out1 + c0 : NULL);
        }
        vmcu_seg_commit(output, px * out_c, out_c, out0, stage);
        if (pair) {
            vmcu_seg_commit(output, (px + 1) * out_c, out_c, out1, stage);
        }
    }
}

#define VMCU_SEG_BLOCK 4 /* pixels of a block of the tensor kernel (two when four take too much scratch) */

/* The pixels the tensor kernel computes at once (arm/conv_2d.c): one in the pointwise kernels for C_in 8 and
 * 16, else a block of four (or two), and a call whose pixel count is not a multiple of its block pays for a
 * whole block all the same. */
static int32_t block_pixels(const vmcu_conv_2d_params_t *p) {
    const int32_t k = p->input_shape[3], out_c = p->output_shape[3];
    return (k == 8 || k == 16) && out_c % 2 == 0 && (2 * k + 16) * out_c <= VMCU_SCRATCH_MAX ? 1 : VMCU_SEG_BLOCK;
}

/* Pixels from pixel t on (of `pixels`) whose input and output straddle neither wrap (1x1 stride 1). */
static inline int32_t flat_pixels(const vmcu_conv_2d_params_t *p, const vmcu_seg_src_t *input,
                                  const vmcu_seg_dst_t *output, int32_t t, int32_t pixels) {
    const int32_t in_c = p->input_shape[3], out_c = p->output_shape[3];
    return vmcu_min_i32(pixels - t, vmcu_min_i32(vmcu_seg_run(input->split, t * in_c) / in_c,
                                                 vmcu_seg_run(output->split, t * out_c) / out_c));
}

/* A 1x1 stride-1 unpadded conv maps pixel t to pixel t. The tensor kernel takes runs of pixels that
 * straddle neither tensor's wrap as one-row images, from a block boundary. A run that ends at a wrap in
 * mid-block stops at its last whole block, and the broken block goes to pixels_seg by pairs (slower per
 * pixel than blocks), unless the next run makes up for the partial block: then both are whole calls, and
 * blocks start over at the wrap. Fewer pixels than a block (the tensor kernel's slow path) and a pixel
 * that straddles a wrap go by pairs too. */
static void pointwise_runs(const vmcu_conv_2d_params_t *p, const vmcu_seg_src_t *input, const int8_t *filter,
                           const int32_t *bias, const vmcu_seg_dst_t *output, int8_t *stage, int8_t *scratch) {
    const int32_t in_c = p->input_shape[3], out_c = p->output_shape[3], block = block_pixels(p);
    const int32_t pixels = vmcu_seg_nhwc_bytes(p->output_shape) / out_c;
    vmcu_conv_2d_params_t q = *p;
    for (int32_t t = 0, origin = 0; t < pixels;) {  /* blocks start at origin + a multiple of `block` */
        int32_t k = (t - origin) % block ? 0 : flat_pixels(p, input, output, t, pixels);
        if (k < block) {
            const int32_t n = vmcu_min_i32(pixels - t, block == 1 ? 1 : 2);
            pixels_seg(p, input, filter, bias, output, stage, scratch, t, t + n);
            t += n;
            continue;
        }
        if (k % block && t + k < pixels) {
            const int32_t next = flat_pixels(p, input, output, t + k, pixels), rest = next % block;
            if (next == 0 || (rest && k % block + rest <= block)) {
                k -= k % block;  /* both partial blocks would cost one more block than whole blocks do */
            } else {
                origin = t + k;
            }
        }
        q.input_shape[0] = q.input_shape[1] = q.output_shape[0] = q.output_shape[1] = 1;
        q.input_shape[2] = q.output_shape[2] = k;
        vmcu_conv_2d_s8(&q, vmcu_seg_at(input, t * in_c), filter, bias, vmcu_seg_dst_at(output, t * out_c), scratch);
        t += k;
    }
}

/* vmcu_seg_flat_rows, except that a run of fewer output pixels than a block counts as none. */
static int32_t block_rows(const vmcu_seg_rows_t *g, const vmcu_seg_src_t *in, const vmcu_seg_dst_t *out, int32_t b,
                          int32_t oy0, int32_t out_w, int32_t *r0, int32_t *r1) {
    const int32_t oy1 = vmcu_seg_flat_rows(g, in, out, b, oy0, r0, r1);
    return (oy1 - oy0) * out_w < VMCU_SEG_BLOCK ? oy0 : oy1;
}

void vmcu_seg_conv_2d_s8(const vmcu_conv_2d_params_t *p, vmcu_seg_src_t input, const int8_t *filter,
                         const int32_t *bias, vmcu_seg_dst_t output, int8_t *stage, int8_t *scratch) {
    if (vmcu_seg_contiguous(input.split, vmcu_seg_nhwc_bytes(p->input_shape)) &&
        vmcu_seg_contiguous(output.split, vmcu_seg_nhwc_bytes(p->output_shape))) {
        vmcu_conv_2d_s8(p, input.head, filter, bias, output.head, scratch);  /* nothing wraps */
        return;
    }
    if (p->filter_shape[1] == 1 && p->filter_shape[2] == 1 && p->stride_h == 1 && p->stride_w == 1 &&
        p->pad_top == 0 && p->pad_left == 0) {
        pointwise_runs(p, &input, filter, bias, &output, stage, scratch);
        return;
    }
    /* Output rows in order, per image: maximal runs of rows whose input band and output rows straddle
     * neither wrap are sub-images for the tensor kernel (input rows [r0, r1), padding adjusted); a row
     * that straddles one, or a run of fewer pixels than a block (the tensor kernel's slow path), goes to the
     * copy. */
    const vmcu_seg_rows_t g = {p->input_shape[1], p->input_shape[2] * p->input_shape[3], p->output_shape[1],
                               p->output_shape[2] * p->output_shape[3], p->stride_h, p->pad_top,
                               (p->filter_shape[1] - 1) * p->dilation_h + 1};
    vmcu_conv_2d_params_t q = *p;
    for (int32_t b = 0; b < p->output_shape[0]; ++b) {
        for (int32_t oy0 = 0; oy0 < g.out_h;) {
            int32_t r0, r1;
            const int32_t oy1 = block_rows(&g, &input, &output, b, oy0, p->output_shape[2], &r0, &r1);
            const int32_t row = b * g.out_h + oy0;
            if (oy1 == oy0) {
                int32_t end = oy0 + 1;  /* the run of rows for the copy, in one run of pixel pairs */
                while (end < g.out_h &&
                       block_rows(&g, &input, &output, b, end, p->output_shape[2], &r0, &r1) == end) {
                    end += 1;
                }
                pixels_seg(p, &input, filter, bias, &output, stage, scratch, row * p->output_shape[2],
                           (row + end - oy0) * p->output_shape[2]);
                oy0 = end;
                continue;
            }
            q.input_shape[0] = q.output_shape[0] = 1;
            q.input_shape[1] = r1 - r0;
            q.output_shape[1] = oy1 - oy0;
            q.pad_top = r0 - (oy0 * p->stride_h - p->pad_top);
            q.pad_bottom = vmcu_max_i32(0, (oy1 - 1) * p->stride_h - p->pad_top + g.reach - r1);
            vmcu_conv_2d_s8(&q, vmcu_seg_at(&input, (b * g.in_h + r0) * g.row_in), filter, bias,
                            vmcu_seg_dst_at(&output, row * g.row_out), scratch);
            oy0 = oy1;
        }
    }
}
