/* Fused inverted bottleneck int8 on the circular pool for Cortex-M with the DSP extension: the loop of
 * fused_ib.c (same prototype, same workspace ring, same results), taken two output pixels of a row at a
 * time so that both 1x1 convolutions run 2x2 SMLAD blocks (two pixels x two channels).
 *
 * Pair (t, t + 1): the expansions of step t ("cache": those of t + 1 as well, which stay in the same ring
 * rows), in pairs of pixels; the depthwise pixel of t into column slot 0 of `dcol`; the expansions of
 * t + 1 ("recompute": only now, as they overwrite columns t still needed) and its depthwise pixel into
 * slot 1; both projected pixels into `stage`; then pixel t stored channel by channel (each after its
 * residual channel is read), then pixel t + 1. Input pixels are thus read no later, and outputs stored no
 * earlier, than fused_ib.c does, which is always safe under the same plan.
 *
 * `scratch` (4-byte aligned), kernel_scratch_bytes in vmcu.plan.fused: the input pair as int16 with the
 * expand offset (16 bytes per 4 input channels), the depthwise pair as int16 with the project offset
 * (16 bytes per 4 expanded channels), 32 bytes of channel tails (C % 4), and the staged pair (2 * C_out
 * bytes). The workspace's depthwise pixel is not used. */
#include "vmcu_arm.h"
#include "vmcu_seg.h"

/* Two pixels of a 1x1 conv's input, as the 2x2 loop reads them: words 4g + 2s and 4g + 2s + 1 hold
 * channels (4g, 4g + 2) and (4g + 1, 4g + 3) of pixel s plus the offset; tail[s][j] channel 4G + j. */
typedef struct {
    uint32_t *col;
    int16_t (*tail)[4];
    int32_t groups, rest;
} column_t;

/* A 1x1 conv: weights, bias and requantization; `channels` its input channels. */
typedef struct {
    const int8_t *filter;
    const int32_t *bias;
    int32_t channels, outputs;
    vmcu_requant_t r;
} pointwise_t;

static inline uint32_t pack(int32_t lo, int32_t hi) { return ((uint32_t)lo & 0xFFFFu) | (uint32_t)hi << 16; }

/* Byte 4g.. 4g + 3 of a pixel given as its first run (a, na bytes) and the rest (b). */
static inline uint32_t load4(const int8_t *a, const int8_t *b, int32_t na, int32_t i) {
    if (i + 4 <= na) {
        return vmcu_load32(a + i);
    }
    if (i >= na) {
        return vmcu_load32(b + (i - na));
    }
    uint32_t v = 0;
    for (int32_t j = 3; j >= 0; --j) {
        v = v << 8 | (uint8_t)(i + j < na ? a[i + j] : b[i + j - na]);
    }
    return v;
}

/* Input pixel at tensor offset `off` into column slot `slot`, with the conv's input offset. */
static void convert_pixel(const column_t *c, int32_t slot, const vmcu_seg_src_t *in, int32_t off, int32_t n,
                          int32_t offset) {
    const int8_t *a = vmcu_seg_at(in, off);
    const int32_t na = vmcu_seg_straddles(in->split, off, n) ? in->split - off : n;
    const int16x2_t offset2 = vmcu_dup16(offset);
    uint32_t *dst = c->col + 2 * slot;
    for (int32_t g = 0; g < c->groups; ++g, dst += 4) {
        const uint32_t v = load4(a, in->tail, na, 4 * g);
        dst[0] = (uint32_t)__sxtab16(offset2, (int8x4_t)v);
        dst[1] = (uint32_t)vmcu_sxtab16_ror8(offset2, v);
    }
    for (int32_t j = 0; j < c->rest; ++j) {
        const int32_t i = 4 * c->groups + j;
        c->tail[slot][j] = (int16_t)((i < na ? a[i] : in->tail[i - na]) + offset);
    }
}

/* acc[0..4) = (pixel 0, row 0), (pixel 0, row 1), (pixel 1, row 0), (pixel 1, row 1) plus the biases. */
static inline void dot2x2(const column_t *c, const int8_t *w0, const int8_t *w1, int32_t *acc) {
    int32_t s00 = acc[0], s01 = acc[1], s10 = acc[2], s11 = acc[3];
    const uint32_t *x = c->col, *const end = x + 4 * c->groups;
    for (; x < end; x += 4, w0 += 4, w1 += 4) {
        const uint32_t u0 = vmcu_load32(w0), u1 = vmcu_load32(w1);
        const int16x2_t lo0 = __sxtb16((int8x4_t)u0), hi0 = vmcu_sxtb16_ror8(u0);
        const int16x2_t lo1 = __sxtb16((int8x4_t)u1), hi1 = vmcu_sxtb16_ror8(u1);
        s00 = __smlad((int16x2_t)x[1], hi0, __smlad((int16x2_t)x[0], lo0, s00));
        s01 = __smlad((int16x2_t)x[1], hi1, __smlad((int16x2_t)x[0], lo1, s01));
        s10 = __smlad((int16x2_t)x[3], hi0, __smlad((int16x2_t)x[2], lo0, s10));
        s11 = __smlad((int16x2_t)x[3], hi1, __smlad((int16x2_t)x[2], lo1, s11));
    }
    for (int32_t j = 0; j < c->rest; ++j) {
        s00 += w0[j] * c->tail[0][j];
        s01 += w1[j] * c->tail[0][j];
        s10 += w0[j] * c->tail[1][j];
        s11 += w1[j] * c->tail[1][j];
    }
    acc[0] = s00;
    acc[1] = s01;
    acc[2] = s10;
    acc[3] = s11;
}

static inline int8_t requant_one(const vmcu_requant_t *r, int32_t acc, int32_t ch) {
    const int32_t shift = r->shift[ch], zp = r->zero_point;
    const int32_t y = vmcu_requant_value(acc, r->multiplier[ch], shift, ~shift, 2 * zp + 1, zp);
    return (int8_t)(r->full_range ? __ssat(y, 8) : vmcu_clamp_i32(y, r->act_min, r->act_max));
}

/* Both column pixels through a 1x1 conv: output channel o of pixel s to out_s[o]. Accumulators go to
 * `acc` (2 * VMCU_ACC_CHUNK words) a chunk at a time and are requantized by the tensor kernels' block. */
static void pointwise2(const pointwise_t *pw, const column_t *c, int32_t *acc, int8_t *out0, int8_t *out1) {
    int32_t a[4];
    for (int32_t c0 = 0; c0 < pw->outputs; c0 += VMCU_ACC_CHUNK) {
        const int32_t n = vmcu_min_i32(VMCU_ACC_CHUNK, pw->outputs - c0);
        for (int32_t i = 0; i < n; i += 2) {
            const int32_t i1 = i + 1 < n ? i + 1 : i;
            a[0] = a[2] = pw->bias ? pw->bias[c0 + i] : 0;
            a[1] = a[3] = pw->bias ? pw->bias[c0 + i1] : 0;
            dot2x2(c, pw->filter + (c0 + i) * pw->channels, pw->filter + (c0 + i1) * pw->channels, a);
            acc[i] = a[0];
            acc[i1] = a[1];
            acc[n + i] = a[2];
            acc[n + i1] = a[3];
        }
        vmcu_requant_block(&pw->r, acc, c0, n, out0 + c0, out1 + c0);
    }
}

typedef struct {
    const vmcu_fused_ib_params_t *p;
    vmcu_seg_src_t input;
    pointwise_t expand, project;
    column_t xcol, dcol;
    int8_t *ring;
    int32_t *acc;  /* 2 * VMCU_ACC_CHUNK accumulators */
    int32_t *taps; /* per depthwise tap: ring offset, filter offset */
    int32_t ring_h, ring_w, mid_c, pending, row[2], col[2];
} fused_t;

static inline int8_t *slot(const fused_t *f, int32_t row, int32_t col) {
    return f->ring + ((row % f->ring_h) * f->ring_w + col % f->ring_w) * f->mid_c;
}

/* Expands the queued pixels (one or two) into their ring slots. */
static void flush(fused_t *f) {
    if (f->pending == 0) {
        return;
    }
    const vmcu_conv_2d_params_t *e = f->p->expand;
    const int32_t in_w = e->input_shape[2], in_c = e->input_shape[3];
    const int32_t n = f->pending;
    for (int32_t s = 0; s < 2; ++s) {
        const int32_t k = s < n ? s : 0;
        convert_pixel(&f->xcol, s, &f->input, ((f->row[k] * e->stride_h) * in_w + f->col[k] * e->stride_w) * in_c,
                      in_c, e->input_offset);
    }
    int8_t *const out0 = slot(f, f->row[0], f->col[0]);
    pointwise2(&f->expand, &f->xcol, f->acc, out0, n == 2 ? slot(f, f->row[1], f->col[1]) : out0);
    f->pending = 0;
}

static inline void expand(fused_t *f, int32_t row, int32_t col) {
    f->row[f->pending] = row;
    f->col[f->pending] = col;
    if (++f->pending == 2) {
        flush(f);
    }
}

/* The depthwise pixel of the window at (r0, c0) into column slot `s` of dcol, with the project offset.
 * The window's in-bounds taps are listed first (ring offset, filter offset), once for all channels. */
static void depthwise(const fused_t *f, int32_t s, int32_t r0, int32_t c0, const int8_t *filter,
                      const int32_t *bias) {
    const vmcu_depthwise_conv_2d_params_t *d = f->p->depthwise;
    const int32_t mid_h = d->input_shape[1], mid_w = d->input_shape[2], mid_c = f->mid_c;
    const int32_t kw = d->filter_shape[2];
    const int32_t rlo = vmcu_max_i32(r0, 0), rhi = vmcu_min_i32(r0 + d->filter_shape[1], mid_h);
    const int32_t clo = vmcu_max_i32(c0, 0), chi = vmcu_min_i32(c0 + kw, mid_w);
    const int16x2_t off2 = vmcu_dup16(d->input_offset);
    const int32_t poff = f->p->project->input_offset;
    const vmcu_requant_t r = vmcu_requant_init(d->output_multiplier, d->output_shift, d->output_offset,
                                               d->activation_min, d->activation_max);
    int32_t *const taps = f->taps, *const end = taps + 2 * (rhi - rlo) * (chi - clo);
    int32_t *t = taps;
    for (int32_t row = rlo; row < rhi; ++row) {
        for (int32_t col = clo; col < chi; ++col, t += 2) {
            t[0] = (int32_t)(slot(f, row, col) - f->ring);
            t[1] = ((row - r0) * kw + (col - c0)) * mid_c;
        }
    }
    uint32_t *dst = f->dcol.col + 2 * s;
    int32_t m = 0;
    for (; m + 4 <= mid_c; m += 4, dst += 4) {
        int32_t a0 = d->has_bias ? bias[m] : 0, a1 = d->has_bias ? bias[m + 1] : 0;
        int32_t a2 = d->has_bias ? bias[m + 2] : 0, a3 = d->has_bias ? bias[m + 3] : 0;
        const int8_t *e = f->ring + m, *w = filter + m;
        for (t = taps; t < end; t += 2) {
            const uint32_t ev = vmcu_load32(e + t[0]), wv = vmcu_load32(w + t[1]);
            const int16x2_t e02 = __sxtab16(off2, (int8x4_t)ev), e13 = vmcu_sxtab16_ror8(off2, ev);
            const int16x2_t w02 = __sxtb16((int8x4_t)wv), w13 = vmcu_sxtb16_ror8(wv);
            a0 = __smlabb(e02, w02, a0);
            a2 = __smlatt(e02, w02, a2);
            a1 = __smlabb(e13, w13, a1);
            a3 = __smlatt(e13, w13, a3);
        }
        dst[0] = pack(requant_one(&r, a0, m) + poff, requant_one(&r, a2, m + 2) + poff);
        dst[1] = pack(requant_one(&r, a1, m + 1) + poff, requant_one(&r, a3, m + 3) + poff);
    }
    for (int32_t j = 0; m < mid_c; ++m, ++j) {
        int32_t acc = d->has_bias ? bias[m] : 0;
        for (t = taps; t < end; t += 2) {
            acc += filter[t[1] + m] * (f->ring[t[0] + m] + d->input_offset);
        }
        f->dcol.tail[s][j] = (int16_t)(requant_one(&r, acc, m) + poff);
    }
}

/* One ADD element (TFLM reference_integer_ops::Add), with vmcu_requantize for each
 * MultiplyByQuantizedMultiplier (equal to it for every input). */
static inline int8_t add_one(const vmcu_add_params_t *p, int32_t a, int32_t b) {
    const int32_t x1 = (a + p->input1_offset) * ((int32_t)1 << p->left_shift);
    const int32_t x2 = (b + p->input2_offset) * ((int32_t)1 << p->left_shift);
    const int32_t s1 = vmcu_requantize(x1, p->input1_multiplier, p->input1_shift);
    const int32_t s2 = vmcu_requantize(x2, p->input2_multiplier, p->input2_shift);
    const int32_t raw = vmcu_requantize(vmcu_wrap_add(s1, s2), p->output_multiplier, p->output_shift);
    return (int8_t)vmcu_clamp_i32(raw + p->output_offset, p->activation_min, p->activation_max);
}

/* Output pixel at `unit` from `y`, each channel after its residual channel is read. */
static void store(const fused_t *f, vmcu_seg_dst_t *out, int32_t unit, const int8_t *y, int32_t n) {
    const vmcu_add_params_t *add = f->p->add;
    int8_t *const head = vmcu_seg_dst_at(out, unit);
    const int32_t nh = vmcu_seg_straddles(out->split, unit, n) ? out->split - unit : n;
    const int8_t *xa = vmcu_seg_at(&f->input, unit);
    const int32_t nx = vmcu_seg_straddles(f->input.split, unit, n) ? f->input.split - unit : n;
    if (nh == n && nx == n) {
        for (int32_t o = 0; o < n; ++o) {
            const int8_t x = xa[o];
            head[o] = !add ? y[o] : f->p->residual_first ? add_one(add, x, y[o]) : add_one(add, y[o], x);
        }
        return;
    }
    for (int32_t o = 0; o < n; ++o) {
        int8_t v = y[o];
        if (add) {
            const int32_t x = o < nx ? xa[o] : f->input.tail[o - nx];
            v = f->p->residual_first ? add_one(add, x, v) : add_one(add, v, x);
        }
        if (o < nh) {
            head[o] = v;
        } else {
            out->tail[o - nh] = v;
        }
    }
}

void vmcu_seg_fused_ib_s8(const vmcu_fused_ib_params_t *p, vmcu_seg_src_t input, const int8_t *expand_filter,
                          const int32_t *expand_bias, const int8_t *depthwise_filter,
                          const int32_t *depthwise_bias, const int8_t *project_filter,
                          const int32_t *project_bias, vmcu_seg_dst_t output, int8_t *workspace,
                          int8_t *scratch) {
    const vmcu_conv_2d_params_t *e = p->expand, *pr = p->project;
    const vmcu_depthwise_conv_2d_params_t *d = p->depthwise;
    const int32_t in_c = e->input_shape[3];
    const int32_t mid_h = d->input_shape[1], mid_w = d->input_shape[2], mid_c = d->input_shape[3];
    const int32_t kh = d->filter_shape[1], kw = d->filter_shape[2];
    const int32_t step_h = d->stride_h * pr->stride_h, step_w = d->stride_w * pr->stride_w;
    const int32_t out_h = pr->output_shape[1], out_w = pr->output_shape[2], out_c = pr->output_shape[3];
    fused_t f;
    f.p = p;
    f.input = input;
    f.ring = workspace;
    f.ring_h = p->ring_h;
    f.ring_w = p->ring_w;
    f.mid_c = mid_c;
    f.pending = 0;
    f.xcol.col = (uint32_t *)(void *)scratch;
    f.xcol.groups = in_c / 4;
    f.xcol.rest = in_c % 4;
    f.dcol.col = f.xcol.col + 4 * f.xcol.groups;
    f.dcol.groups = mid_c / 4;
    f.dcol.rest = mid_c % 4;
    f.xcol.tail = (int16_t(*)[4])(void *)(f.dcol.col + 4 * f.dcol.groups);
    f.dcol.tail = f.xcol.tail + 2;
    f.acc = (int32_t *)(void *)(f.dcol.tail + 2);
    f.taps = f.acc + 2 * VMCU_ACC_CHUNK;
    int8_t *const stage = (int8_t *)(void *)(f.taps + 2 * kh * kw);
    const pointwise_t ex = {expand_filter, e->has_bias ? expand_bias : NULL, in_c, mid_c,
                            vmcu_requant_init(e->output_multiplier, e->output_shift, e->output_offset,
                                              e->activation_min, e->activation_max)};
    const pointwise_t pj = {project_filter, pr->has_bias ? project_bias : NULL, mid_c, out_c,
                            vmcu_requant_init(pr->output_multiplier, pr->output_shift, pr->output_offset,
                                              pr->activation_min, pr->activation_max)};
    f.expand = ex;
    f.project = pj;
    int32_t done = -1; /* cache: the last E pixel expanded, row-major over ring_w columns */
    for (int32_t oy = 0; oy < out_h; ++oy) {
        const int32_t r0 = oy * step_h - d->pad_top;
        const int32_t rlo = vmcu_max_i32(r0, 0), rhi = vmcu_min_i32(r0 + kh, mid_h);
        for (int32_t ox = 0; ox < out_w; ox += 2) {
            const int32_t n = ox + 1 < out_w ? 2 : 1;
            if (p->cache) {
                const int32_t c0 = (ox + n - 1) * step_w - d->pad_left;
                const int32_t clo = vmcu_max_i32(c0, 0), chi = vmcu_min_i32(c0 + kw, mid_w);
                const int32_t last = rlo < rhi && clo < chi ? (rhi - 1) * f.ring_w + chi - 1 : -1;
                for (int32_t i = done + 1; i <= last; ++i) {
                    expand(&f, i / f.ring_w, i % f.ring_w);
                }
                flush(&f);
                done = vmcu_max_i32(done, last);
            }
            for (int32_t s = 0; s < n; ++s) {
                const int32_t c0 = (ox + s) * step_w - d->pad_left;
                if (!p->cache) {
                    const int32_t clo = vmcu_max_i32(c0, 0), chi = vmcu_min_i32(c0 + kw, mid_w);
                    for (int32_t col = ox + s == 0 ? clo : vmcu_max_i32(clo, c0 + kw - step_w); col < chi; ++col) {
                        for (int32_t row = rlo; row < rhi; ++row) {
                            expand(&f, row, col);
                        }
                    }
                    flush(&f);
                }
                depthwise(&f, s, r0, c0, depthwise_filter, depthwise_bias);
            }
            if (n == 1) {
                for (int32_t g = 0; g < f.dcol.groups; ++g) {
                    f.dcol.col[4 * g + 2] = f.dcol.col[4 * g];
                    f.dcol.col[4 * g + 3] = f.dcol.col[4 * g + 1];
                }
                memcpy(f.dcol.tail[1], f.dcol.tail[0], sizeof f.dcol.tail[0]);
            }
            pointwise2(&f.project, &f.dcol, f.acc, stage, stage + out_c);
            const int32_t unit = (oy * out_w + ox) * out_c;
            for (int32_t s = 0; s < n; ++s) {
                store(&f, &output, unit + s * out_c, stage + s * out_c, out_c);
            }
        }
    }
}
