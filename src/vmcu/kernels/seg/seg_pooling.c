/* AVERAGE_POOL_2D and MAX_POOL_2D int8 on the circular pool, portable (same arithmetic as ref/pooling.c).
 * Per output pixel, the window is walked tap by tap with all channels of a tap at once, into int32
 * accumulators in `scratch` (4 * depth bytes): each window row's run of taps is resolved once, tap by tap
 * only in the row that straddles the wrap, where a tap pixel that straddles it is copied into `stage`
 * first. The pixel is then finished in `stage` and stored. */
#include "vmcu_fixedpoint.h"
#include "vmcu_seg.h"

typedef struct {
    int32_t y0, y1, x0, x1;  /* clipped tap ranges [y0, y1) x [x0, x1) in input coordinates */
} window_t;

static window_t pool_window(const vmcu_pool_2d_params_t *p, int32_t oy, int32_t ox) {
    const int32_t iy = oy * p->stride_h - p->pad_top, ix = ox * p->stride_w - p->pad_left;
    window_t w;
    w.y0 = iy + vmcu_max_i32(0, -iy);
    w.y1 = iy + vmcu_min_i32(p->filter_h, p->input_shape[1] - iy);
    w.x0 = ix + vmcu_max_i32(0, -ix);
    w.x1 = ix + vmcu_min_i32(p->filter_w, p->input_shape[2] - ix);
    return w;
}

/* acc[c] = sum (or max) over the window of channel c, for the window of image `image`; a tap pixel that
 * straddles the wrap is read through `bounce` (depth bytes). Specialised for max and sum when inlined. */
static inline __attribute__((always_inline)) void reduce(const vmcu_pool_2d_params_t *p, const vmcu_seg_src_t *in,
                                                         const window_t *w, int32_t image, int32_t *acc,
                                                         int8_t *bounce, const int is_max) {
    const int32_t in_w = p->input_shape[2], depth = p->input_shape[3], taps = w->x1 - w->x0;
    for (int32_t c = 0; c < depth; ++c) {
        acc[c] = is_max ? INT8_MIN : 0;
    }
    for (int32_t y = w->y0; y < w->y1; ++y) {
        const int32_t row = ((image + y) * in_w + w->x0) * depth;
        const int straddles = vmcu_seg_straddles(in->split, row, taps * depth);
        const int8_t *x = vmcu_seg_at(in, row);
        for (int32_t i = 0; i < taps; ++i, x += depth) {
            if (straddles) {
                x = vmcu_seg_span(in, row + i * depth, depth, bounce);
            }
            for (int32_t c = 0; c < depth; ++c) {
                acc[c] = is_max ? vmcu_max_i32(acc[c], x[c]) : acc[c] + x[c];
            }
        }
    }
}

/* Every output pixel in row-major order: all channels into `stage`, then one store. */
static inline __attribute__((always_inline)) void pool(const vmcu_pool_2d_params_t *p, const vmcu_seg_src_t *input,
                                                       const vmcu_seg_dst_t *output, int8_t *stage, int32_t *acc,
                                                       const int is_max) {
    const int32_t depth = p->input_shape[3];
    int32_t unit = 0;
    for (int32_t b = 0; b < p->output_shape[0]; ++b) {
        for (int32_t oy = 0; oy < p->output_shape[1]; ++oy) {
            for (int32_t ox = 0; ox < p->output_shape[2]; ++ox, unit += depth) {
                const window_t w = pool_window(p, oy, ox);
                const int32_t count = (w.y1 - w.y0) * (w.x1 - w.x0);
                reduce(p, input, &w, b * p->input_shape[1], acc, stage, is_max);
                for (int32_t c = 0; c < depth; ++c) {
                    int32_t v = acc[c];
                    if (!is_max && count > 0) {
                        v = v > 0 ? (v + count / 2) / count : (v - count / 2) / count;
                    }
                    stage[c] = (int8_t)vmcu_clamp_i32(v, p->activation_min, p->activation_max);
                }
                vmcu_seg_write(output, unit, stage, depth);
            }
        }
    }
}

void vmcu_seg_average_pool_2d_s8(const vmcu_pool_2d_params_t *p, vmcu_seg_src_t input, vmcu_seg_dst_t output,
                                 int8_t *stage, int8_t *scratch) {
    pool(p, &input, &output, stage, (int32_t *)(void *)scratch, 0);
}

void vmcu_seg_max_pool_2d_s8(const vmcu_pool_2d_params_t *p, vmcu_seg_src_t input, vmcu_seg_dst_t output,
                             int8_t *stage, int8_t *scratch) {
    pool(p, &input, &output, stage, (int32_t *)(void *)scratch, 1);
}
