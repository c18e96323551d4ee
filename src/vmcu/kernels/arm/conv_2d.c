/* CONV_2D int8 for Cortex-M with the DSP extension (same results as ref/conv_2d.c).
 *
 * Output pixels are taken two at a time in row-major order. Their receptive fields are first written to
 * the scratch column buffer as int16 (x + input_offset, 0 for padding), interleaved by groups of four
 * elements: [p0 (k0,k2)] [p0 (k1,k3)] [p1 (k0,k2)] [p1 (k1,k3)], the order in which SXTB16 and
 * SXTB16 ROR #8 unpack four weights. Each pair of output channels is then a 2x2 block of SMLAD dot
 * products (two weight loads, two LDRDs, four unpacks and eight SMLADs per 16 MACs). The K % 4 tail
 * follows the groups as int16 [p0 tail][p1 tail]. Pointwise convolutions (1x1, no padding) convert
 * the input pixels directly; others gather the taps, through an int8 staging row when Cin % 4 != 0.
 * Both pixels are read before either is stored, so the output may overlap the input as a segment plan
 * allows (the column buffer is the workspace).
 */
#include "vmcu_arm.h"
#include "vmcu_kernels.h"

typedef struct {
    const vmcu_conv_2d_params_t *p;
    const int8_t *input;
    int32_t k, groups, tail;
    int32_t pointwise, staged;
    int16x2_t offset2;
    uint32_t *col;  /* groups * 4 words, then 2 * tail int16 */
    int8_t *stage;  /* k bytes when staged */
} column_t;

/* Converts 4 * n int8 values from `src` into groups g0 .. g0 + n - 1 of pixel slot `slot`. */
static void convert_groups(const column_t *c, int32_t slot, const int8_t *src, int32_t g0, int32_t n) {
    uint32_t *dst = c->col + 4 * g0 + 2 * slot;
    for (int32_t g = 0; g < n; ++g, src += 4, dst += 4) {
        const uint32_t v = vmcu_load32(src);
        dst[0] = (uint32_t)__sxtab16(c->offset2, (int8x4_t)v);
        dst[1] = (uint32_t)vmcu_sxtab16_ror8(c->offset2, v);
    }
}

/* Converts a whole receptive field held contiguously at `src` (k bytes). */
static void convert_field(const column_t *c, int32_t slot, const int8_t *src) {
    convert_groups(c, slot, src, 0, c->groups);
    int16_t *tail = (int16_t *)(c->col + 4 * c->groups) + slot * c->tail;
    for (int32_t j = 0; j < c->tail; ++j) {
        tail[j] = (int16_t)(src[4 * c->groups + j] + c->p->input_offset);
    }
}

/* Writes the receptive field of flat output pixel `pixel` into slot `slot` of the column buffer. */
static void fill(const column_t *c, int32_t slot, int32_t pixel) {
    const vmcu_conv_2d_params_t *p = c->p;
    const int32_t in_h = p->input_shape[1], in_w = p->input_shape[2], in_c = p->input_shape[3];
    const int32_t out_w = p->output_shape[2], out_hw = p->output_shape[1] * out_w;
    const int32_t b = pixel / out_hw, oy = pixel % out_hw / out_w, ox = pixel % out_w;
    const int32_t iy0 = oy * p->stride_h - p->pad_top, ix0 = ox * p->stride_w - p->pad_left;
    const int8_t *image = c->input + b * in_h * in_w * in_c;
    if (c->pointwise) {
        convert_field(c, slot, image + (iy0 * in_w + ix0) * in_c);
        return;
    }
    const int8_t zero_point = (int8_t)-p->input_offset;
    int8_t *stage = c->stage;
    int32_t k = 0;
    for (int32_t fy = 0; fy < p->filter_shape[1]; ++fy) {
        const int32_t iy = iy0 + fy * p->dilation_h;
        for (int32_t fx = 0; fx < p->filter_shape[2]; ++fx, k += in_c) {
            const int32_t ix = ix0 + fx * p->dilation_w;
            const int inside = iy >= 0 && iy < in_h && ix >= 0 && ix < in_w;
            const int8_t *src = image + (iy * in_w + ix) * in_c;
            if (c->staged) {
                for (int32_t j = 0; j < in_c; ++j) {
                    *stage++ = inside ? src[j] : zero_point;
                }
            } else if (inside) {
                convert_groups(c, slot, src, k / 4, in_c / 4);
            } else {
                for (uint32_t *d = c->col + k + 2 * slot, *end = d + in_c; d < end; d += 4) {
                    d[0] = 0;
                    d[1] = 0;
                }
            }
        }
    }
    if (c->staged) {
        convert_field(c, slot, c->stage);
    }
}

/* One group of four inputs of both pixels against two weight rows: 16 MACs. */
static inline void group_2x2(const uint32_t *x, const int8_t *w0, const int8_t *w1, int32_t *s) {
    const uint32_t u0 = vmcu_load32(w0), u1 = vmcu_load32(w1);
    const int16x2_t lo0 = __sxtb16((int8x4_t)u0), hi0 = vmcu_sxtb16_ror8(u0);
    const int16x2_t lo1 = __sxtb16((int8x4_t)u1), hi1 = vmcu_sxtb16_ror8(u1);
    s[0] = __smlad((int16x2_t)x[1], hi0, __smlad((int16x2_t)x[0], lo0, s[0]));
    s[1] = __smlad((int16x2_t)x[1], hi1, __smlad((int16x2_t)x[0], lo1, s[1]));
    s[2] = __smlad((int16x2_t)x[3], hi0, __smlad((int16x2_t)x[2], lo0, s[2]));
    s[3] = __smlad((int16x2_t)x[3], hi1, __smlad((int16x2_t)x[2], lo1, s[3]));
}

/* The same over `pairs` pairs of groups (pairs >= 1), as one asm loop: GCC's register allocation of the
 * C version reloads inputs and spills (about 1.34 instructions per MAC); this runs 35 instructions per
 * 32 MACs. 13 register operands, so it also compiles at -O0 and with a frame pointer; the loop end
 * lives in memory. Needs `x` 4-byte aligned (LDRD); weights may be unaligned (LDR). */
static inline void groups_2x2_asm(const uint32_t *x, const int8_t *w0, const int8_t *w1, int32_t pairs,
                                  int32_t *s) {
    const uint32_t *const end = x + 8 * pairs;
    int32_t s00 = s[0], s01 = s[1], s10 = s[2], s11 = s[3];
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
    __asm__ volatile("1:\n\t" VMCU_GROUP_2X2 VMCU_GROUP_2X2
                     "ldr %[xa], %[end]\n\t"
                     "cmp %[x], %[xa]\n\t"
                     "bne 1b\n\t"
                     : [s00] "+r"(s00), [s01] "+r"(s01), [s10] "+r"(s10), [s11] "+r"(s11), [x] "+r"(x),
                       [w0] "+r"(w0), [w1] "+r"(w1), [xa] "=&r"(xa), [xb] "=&r"(xb), [lo0] "=&r"(lo0),
                       [hi0] "=&r"(hi0), [lo1] "=&r"(lo1), [hi1] "=&r"(hi1)
                     : [end] "m"(end)
                     : "cc", "memory");
#undef VMCU_GROUP_2X2
    s[0] = s00;
    s[1] = s01;
    s[2] = s10;
    s[3] = s11;
}

/* acc[2 * slot + j] += column(slot) . weight row j, for the two rows w0 and w1. */
static inline void dot_2x2(const column_t *c, const int8_t *w0, const int8_t *w1, int32_t *acc) {
    const uint32_t *x = c->col;
    const int32_t pairs = c->groups >> 1;
    if (pairs > 0) {
        groups_2x2_asm(x, w0, w1, pairs, acc);
        x += 8 * pairs;
        w0 += 8 * pairs;
        w1 += 8 * pairs;
    }
    if (c->groups & 1) {
        group_2x2(x, w0, w1, acc);
        x += 4;
        w0 += 4;
        w1 += 4;
    }
    const int16_t *t = (const int16_t *)x;
    for (int32_t j = 0; j < c->tail; ++j) {
        acc[0] += t[j] * w0[j];
        acc[1] += t[j] * w1[j];
        acc[2] += t[c->tail + j] * w0[j];
        acc[3] += t[c->tail + j] * w1[j];
    }
}

/* Requantizes and stores a 2x2 block: channels c0, c1 of the pixels at o0 and o1. Kept out of line:
 * inlined after the asm loop, GCC would reload every loop variable from the stack. */
static __attribute__((noinline)) void store_2x2(const vmcu_requant_t *r, int32_t c0, int32_t c1,
                                                const int32_t *acc, int8_t *o0, int8_t *o1) {
    if (r->fast) {
        const int32_t e0 = -r->shift[c0], e1 = -r->shift[c1];
        const int32_t m0 = r->multiplier[c0], m1 = r->multiplier[c1];
        const int32_t r0 = vmcu_requant_round(r, e0), r1 = vmcu_requant_round(r, e1);
        o0[c0] = vmcu_requant_clamp(r, vmcu_requant_fast(acc[0], m0, e0, r0));
        o1[c0] = vmcu_requant_clamp(r, vmcu_requant_fast(acc[2], m0, e0, r0));
        o0[c1] = vmcu_requant_clamp(r, vmcu_requant_fast(acc[1], m1, e1, r1));
        o1[c1] = vmcu_requant_clamp(r, vmcu_requant_fast(acc[3], m1, e1, r1));
    } else {
        o0[c0] = vmcu_requant_one(r, acc[0], c0);
        o1[c0] = vmcu_requant_one(r, acc[2], c0);
        o0[c1] = vmcu_requant_one(r, acc[1], c1);
        o1[c1] = vmcu_requant_one(r, acc[3], c1);
    }
}

void vmcu_conv_2d_s8(const vmcu_conv_2d_params_t *p, const int8_t *input, const int8_t *filter,
                     const int32_t *bias, int8_t *output, int8_t *scratch) {
    const int32_t in_c = p->input_shape[3], out_c = p->output_shape[3];
    const int32_t pixels = p->output_shape[0] * p->output_shape[1] * p->output_shape[2];
    column_t c;
    c.p = p;
    c.input = input;
    c.k = p->filter_shape[1] * p->filter_shape[2] * in_c;
    c.groups = c.k / 4;
    c.tail = c.k % 4;
    c.pointwise = p->filter_shape[1] == 1 && p->filter_shape[2] == 1 && p->pad_top == 0 && p->pad_left == 0;
    c.staged = !c.pointwise && in_c % 4 != 0;
    c.offset2 = vmcu_dup16(p->input_offset);
    c.col = (uint32_t *)(void *)scratch;
    c.stage = scratch + 16 * c.groups + 4 * c.tail;
    const vmcu_requant_t r = vmcu_requant_init(p->output_multiplier, p->output_shift, p->output_offset,
                                               p->activation_min, p->activation_max, bias, p->has_bias, out_c,
                                               c.k * 255 * 128);
    for (int32_t px = 0; px < pixels; px += 2) {
        const int32_t pair = px + 1 < pixels;
        fill(&c, 0, px);
        fill(&c, 1, pair ? px + 1 : px);
        int8_t *out0 = output + px * out_c, *out1 = pair ? out0 + out_c : out0;
        const int8_t *w = filter;
        for (int32_t oc = 0; oc < out_c; oc += 2, w += 2 * c.k) {
            const int32_t oc1 = oc + 1 < out_c ? oc + 1 : oc;
            int32_t acc[4] = {0, 0, 0, 0};
            if (p->has_bias) {
                acc[0] = acc[2] = bias[oc];
                acc[1] = acc[3] = bias[oc1];
            }
            dot_2x2(&c, w, oc1 != oc ? w + c.k : w, acc);
            store_2x2(&r, oc, oc1, acc, out0, out1);
        }
    }
}
