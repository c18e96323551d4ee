/* Fused inverted bottleneck int8 on the circular pool, portable: 1x1 expand -> kxk depthwise -> 1x1 project
 * [-> + input], one output pixel per step, in row-major order (vmcu.plan.fused is the specification).
 *
 * Step (oy, ox): expand the E pixels the window needs and the ring lacks (recompute: the whole window at
 * ox = 0, then the columns it gains; cache: row-major over the ring_w columns the windows need, up to the
 * window's last pixel) into the ring slot [row % ring_h][col % ring_w]; compute the depthwise pixel into
 * `dpix`; compute each projected channel, add the residual channel, store it straight to the pool. All
 * input bytes of a step are read before its first store, except residual channel c, read just before
 * output channel c is stored: with the output at or before the input, that store lands on input channels
 * <= c, already read. Input and output pixels that straddle the wrap are used in two runs, so `workspace`
 * is exactly the ring (ring_h * ring_w * C_mid bytes) followed by the depthwise pixel (C_mid bytes);
 * `scratch` is unused. Same arithmetic as the tensor-level kernels (vmcu_requantize is exact), so results
 * are bit-exact with them. */
#include "vmcu_fixedpoint.h"
#include "vmcu_seg.h"

/* A pixel of n bytes at `off` of a tensor, as its first run (a, na bytes) and the rest (b). */
typedef struct {
    const int8_t *a;
    const int8_t *b;
    int32_t na;
} pixel_t;

static inline pixel_t pixel_at(const vmcu_seg_src_t *v, int32_t off, int32_t n) {
    pixel_t px;
    px.a = vmcu_seg_at(v, off);
    px.na = vmcu_seg_straddles(v->split, off, n) ? v->split - off : n;
    px.b = v->tail;
    return px;
}

static inline int32_t requantize(int32_t acc, const vmcu_conv_2d_params_t *p, int32_t c) {
    acc = vmcu_requantize(acc, p->output_multiplier[c], p->output_shift[c]);
    return vmcu_clamp_i32(acc + p->output_offset, p->activation_min, p->activation_max);
}

/* E pixel (row, col) of the expand conv, written to `out` (C_mid bytes). */
static void expand_pixel(const vmcu_conv_2d_params_t *e, const vmcu_seg_src_t *input, int32_t row, int32_t col,
                         const int8_t *filter, const int32_t *bias, int8_t *out) {
    const int32_t in_w = e->input_shape[2], in_c = e->input_shape[3], mid_c = e->output_shape[3];
    const pixel_t x = pixel_at(input, ((row * e->stride_h) * in_w + col * e->stride_w) * in_c, in_c);
    const int32_t offset = e->input_offset;
    for (int32_t m = 0; m < mid_c; ++m) {
        const int8_t *w = filter + m * in_c;
        int32_t acc = e->has_bias ? bias[m] : 0;
        for (int32_t i = 0; i < x.na; ++i) {
            acc += w[i] * (x.a[i] + offset);
        }
        for (int32_t i = x.na; i < in_c; ++i) {
            acc += w[i] * (x.b[i - x.na] + offset);
        }
        out[m] = (int8_t)requantize(acc, e, m);
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
    const int32_t ring_h = p->ring_h, ring_w = p->ring_w;
    int8_t *ring = workspace;
    int8_t *dpix = workspace + ring_h * ring_w * mid_c;
    (void)scratch;
    int32_t done = -1; /* cache: the last E pixel expanded, row-major */
    int32_t unit = 0;
    for (int32_t oy = 0; oy < out_h; ++oy) {
        const int32_t r0 = oy * step_h - d->pad_top;
        const int32_t rlo = vmcu_max_i32(r0, 0), rhi = vmcu_min_i32(r0 + kh, mid_h);
        for (int32_t ox = 0; ox < out_w; ++ox, unit += out_c) {
            const int32_t c0 = ox * step_w - d->pad_left;
            const int32_t clo = vmcu_max_i32(c0, 0), chi = vmcu_min_i32(c0 + kw, mid_w);
            if (p->cache) {
                const int32_t last = rlo < rhi && clo < chi ? (rhi - 1) * ring_w + chi - 1 : -1;
                for (int32_t i = done + 1; i <= last; ++i) {
                    const int32_t row = i / ring_w, col = i - row * ring_w;
                    expand_pixel(e, &input, row, col, expand_filter, expand_bias,
                                 ring + ((row % ring_h) * ring_w + col) * mid_c);
                }
                done = vmcu_max_i32(done, last);
            } else {
                const int32_t first = ox == 0 ? clo : vmcu_max_i32(clo, c0 + kw - step_w);
                for (int32_t col = first; col < chi; ++col) {
                    for (int32_t row = rlo; row < rhi; ++row) {
                        expand_pixel(e, &input, row, col, expand_filter, expand_bias,
                                     ring + ((row % ring_h) * ring_w + col % ring_w) * mid_c);
                    }
                }
            }
            const int32_t slot_r0 = rlo % ring_h, slot_c0 = clo % ring_w;
            for (int32_t m = 0; m < mid_c; ++m) {
                int32_t acc = d->has_bias ? depthwise_bias[m] : 0;
                for (int32_t row = rlo, sr = slot_r0; row < rhi; ++row, sr = sr + 1 == ring_h ? 0 : sr + 1) {
                    const int8_t *w = depthwise_filter + (row - r0) * kw * mid_c + m;
                    const int8_t *slots = ring + sr * ring_w * mid_c + m;
                    for (int32_t col = clo, sc = slot_c0; col < chi; ++col, sc = sc + 1 == ring_w ? 0 : sc + 1) {
                        acc += w[(col - c0) * mid_c] * (slots[sc * mid_c] + d->input_offset);
                    }
                }
                acc = vmcu_requantize(acc, d->output_multiplier[m], d->output_shift[m]);
                dpix[m] = (int8_t)vmcu_clamp_i32(acc + d->output_offset, d->activation_min, d->activation_max);
            }
            const pixel_t x = pixel_at(&input, p->add ? unit : 0, in_c);
            int8_t *const ya = vmcu_seg_dst_at(&output, unit);
            const int32_t nya = vmcu_seg_straddles(output.split, unit, out_c) ? output.split - unit : out_c;
            for (int32_t o = 0; o < out_c; ++o) {
                const int8_t *w = project_filter + o * mid_c;
                int32_t acc = pr->has_bias ? project_bias[o] : 0;
                for (int32_t m = 0; m < mid_c; ++m) {
                    acc += w[m] * (dpix[m] + pr->input_offset);
                }
                int8_t y = (int8_t)requantize(acc, pr, o);
                if (p->add) {
                    const int32_t r = o < x.na ? x.a[o] : x.b[o - x.na];
                    y = p->residual_first ? add_one(p->add, r, y) : add_one(p->add, y, r);
                }
                if (o < nya) {
                    ya[o] = y;
                } else {
                    output.tail[o - nya] = y;
                }
            }
        }
    }
}
