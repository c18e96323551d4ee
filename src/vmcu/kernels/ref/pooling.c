/* AVERAGE_POOL_2D and MAX_POOL_2D int8 (TFLM reference_integer_ops::AveragePool / MaxPool): only the taps
 * inside the image count; the average is a rounded integer division, no requantization. Each output pixel
 * is computed into scratch (depth bytes) and then stored, so the output may overlap the input. */
#include <string.h>

#include "vmcu_fixedpoint.h"
#include "vmcu_kernels.h"

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

void vmcu_average_pool_2d_s8(const vmcu_pool_2d_params_t *p, const int8_t *input, int8_t *output,
                             int8_t *scratch) {
    const int32_t in_h = p->input_shape[1], in_w = p->input_shape[2], depth = p->input_shape[3];
    for (int32_t b = 0; b < p->output_shape[0]; ++b) {
        for (int32_t oy = 0; oy < p->output_shape[1]; ++oy) {
            for (int32_t ox = 0; ox < p->output_shape[2]; ++ox) {
                const window_t w = pool_window(p, oy, ox);
                const int32_t count = (w.y1 - w.y0) * (w.x1 - w.x0);
                for (int32_t c = 0; c < depth; ++c) {
                    int32_t acc = 0;
                    for (int32_t y = w.y0; y < w.y1; ++y) {
                        for (int32_t x = w.x0; x < w.x1; ++x) {
                            acc += input[((b * in_h + y) * in_w + x) * depth + c];
                        }
                    }
                    if (count > 0) {
                        acc = acc > 0 ? (acc + count / 2) / count : (acc - count / 2) / count;
                    }
                    scratch[c] = (int8_t)vmcu_clamp_i32(acc, p->activation_min, p->activation_max);
                }
                memcpy(output, scratch, (size_t)depth);
                output += depth;
            }
        }
    }
}

void vmcu_max_pool_2d_s8(const vmcu_pool_2d_params_t *p, const int8_t *input, int8_t *output,
                         int8_t *scratch) {
    const int32_t in_h = p->input_shape[1], in_w = p->input_shape[2], depth = p->input_shape[3];
    for (int32_t b = 0; b < p->output_shape[0]; ++b) {
        for (int32_t oy = 0; oy < p->output_shape[1]; ++oy) {
            for (int32_t ox = 0; ox < p->output_shape[2]; ++ox) {
                const window_t w = pool_window(p, oy, ox);
                for (int32_t c = 0; c < depth; ++c) {
                    int32_t m = INT8_MIN;
                    for (int32_t y = w.y0; y < w.y1; ++y) {
                        for (int32_t x = w.x0; x < w.x1; ++x) {
                            m = vmcu_max_i32(m, input[((b * in_h + y) * in_w + x) * depth + c]);
                        }
                    }
                    scratch[c] = (int8_t)vmcu_clamp_i32(m, p->activation_min, p->activation_max);
                }
                memcpy(output, scratch, (size_t)depth);
                output += depth;
            }
        }
    }
}
