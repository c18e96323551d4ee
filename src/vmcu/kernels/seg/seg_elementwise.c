/* Element-wise ops on the circular pool, portable (same arithmetic as ref/add.c, mul.c, logistic.c,
 * quantize.c). ADD, MUL, LOGISTIC and QUANTIZE store each element right after reading it: the elements
 * are walked in runs in which no tensor wraps, so each run is the tensor kernel's plain loop. DEQUANTIZE
 * widens int8 to float32, so with a `stage` (its output overlaps its input) it builds each row there
 * first; without one it stores as it goes, in one loop when neither tensor wraps. Floats in the pool may
 * be unaligned: they move by memcpy. */
#include "vmcu_fixedpoint.h"
#include "vmcu_nd.h"
#include "vmcu_seg.h"

static inline int8_t add_one(const vmcu_add_params_t *p, int32_t a, int32_t b) {
    const int32_t x1 = (a + p->input1_offset) * ((int32_t)1 << p->left_shift);
    const int32_t x2 = (b + p->input2_offset) * ((int32_t)1 << p->left_shift);
    const int32_t s1 = vmcu_multiply_by_quantized_multiplier(x1, p->input1_multiplier, p->input1_shift);
    const int32_t s2 = vmcu_multiply_by_quantized_multiplier(x2, p->input2_multiplier, p->input2_shift);
    const int32_t raw = vmcu_multiply_by_quantized_multiplier(vmcu_wrap_add(s1, s2), p->output_multiplier,
                                                              p->output_shift);
    return (int8_t)vmcu_clamp_i32(raw + p->output_offset, p->activation_min, p->activation_max);
}

static inline int8_t mul_one(const vmcu_mul_params_t *p, int32_t a, int32_t b) {
    const int32_t product = (a + p->input1_offset) * (b + p->input2_offset);
    const int32_t raw = vmcu_multiply_by_quantized_multiplier(product, p->output_multiplier, p->output_shift);
    return (int8_t)vmcu_clamp_i32(raw + p->output_offset, p->activation_min, p->activation_max);
}

/* Where a binary op reads: per output row of `inner` elements, input k starts at nd offset `idx . sk`
 * and advances by `ik` (1, or 0 when broadcast along the last axis). */
typedef struct {
    int32_t s1[VMCU_MAX_DIMS], s2[VMCU_MAX_DIMS];
    int32_t inner, rows, i1, i2;
} binary_walk_t;

static binary_walk_t binary_walk(const int32_t *shape1, const int32_t *shape2, const int32_t *out_shape,
                                 int32_t broadcast) {
    binary_walk_t w;
    int32_t so[VMCU_MAX_DIMS];
    const int32_t size = vmcu_nd_strides(out_shape, 0, so);
    vmcu_nd_strides(shape1, broadcast ? out_shape : 0, w.s1);
    vmcu_nd_strides(shape2, broadcast ? out_shape : 0, w.s2);
    w.inner = broadcast ? out_shape[VMCU_MAX_DIMS - 1] : size;
    w.rows = w.inner ? size / w.inner : 0;
    w.i1 = broadcast ? w.s1[VMCU_MAX_DIMS - 1] : 1;
    w.i2 = broadcast ? w.s2[VMCU_MAX_DIMS - 1] : 1;
    return w;
}

/* The longest run of at most n elements from offset e of a unary op's input and output in which neither
 * wraps. */
static inline int32_t run2(const vmcu_seg_src_t *in, const vmcu_seg_dst_t *out, int32_t e, int32_t n) {
    return vmcu_min_i32(n, vmcu_min_i32(vmcu_seg_run(in->split, e), vmcu_seg_run(out->split, e)));
}

/* The longest run of at most n elements from these offsets in which no tensor wraps. */
static inline int32_t run3(const vmcu_seg_src_t *a, int32_t oa, int32_t ia, const vmcu_seg_src_t *b, int32_t ob,
                           int32_t ib, const vmcu_seg_dst_t *y, int32_t oy, int32_t n) {
    int32_t k = vmcu_min_i32(n, vmcu_seg_run(y->split, oy));
    k = ia ? vmcu_min_i32(k, vmcu_seg_run(a->split, oa)) : k;
    return ib ? vmcu_min_i32(k, vmcu_seg_run(b->split, ob)) : k;
}

void vmcu_seg_add_s8(const vmcu_add_params_t *p, vmcu_seg_src_t input1, vmcu_seg_src_t input2,
                     vmcu_seg_dst_t output) {
    const binary_walk_t w = binary_walk(p->input1_shape, p->input2_shape, p->output_shape, p->requires_broadcast);
    int32_t idx[VMCU_MAX_DIMS] = {0};
    for (int32_t r = 0, oy = 0; r < w.rows; ++r) {
        int32_t oa = vmcu_nd_offset(idx, w.s1), ob = vmcu_nd_offset(idx, w.s2);
        for (int32_t n = w.inner; n > 0;) {
            const int32_t k = run3(&input1, oa, w.i1, &input2, ob, w.i2, &output, oy, n);
            const int8_t *a = vmcu_seg_at(&input1, oa), *b = vmcu_seg_at(&input2, ob);
            int8_t *y = vmcu_seg_dst_at(&output, oy);
            if (w.i1 && w.i2) {
                for (int32_t i = 0; i < k; ++i) {
                    y[i] = add_one(p, a[i], b[i]);
                }
            } else {
                for (int32_t i = 0; i < k; ++i) {
                    y[i] = add_one(p, a[i * w.i1], b[i * w.i2]);
                }
            }
            oa += k * w.i1;
            ob += k * w.i2;
            oy += k;
            n -= k;
        }
        vmcu_nd_next(idx, p->output_shape, 1);
    }
}

void vmcu_seg_mul_s8(const vmcu_mul_params_t *p, vmcu_seg_src_t input1, vmcu_seg_src_t input2,
                     vmcu_seg_dst_t output) {
    const binary_walk_t w = binary_walk(p->input1_shape, p->input2_shape, p->output_shape, p->requires_broadcast);
    int32_t idx[VMCU_MAX_DIMS] = {0};
    for (int32_t r = 0, oy = 0; r < w.rows; ++r) {
        int32_t oa = vmcu_nd_offset(idx, w.s1), ob = vmcu_nd_offset(idx, w.s2);
        for (int32_t n = w.inner; n > 0;) {
            const int32_t k = run3(&input1, oa, w.i1, &input2, ob, w.i2, &output, oy, n);
            const int8_t *a = vmcu_seg_at(&input1, oa), *b = vmcu_seg_at(&input2, ob);
            int8_t *y = vmcu_seg_dst_at(&output, oy);
            if (w.i1 && w.i2) {
                for (int32_t i = 0; i < k; ++i) {
                    y[i] = mul_one(p, a[i], b[i]);
                }
            } else {
                for (int32_t i = 0; i < k; ++i) {
                    y[i] = mul_one(p, a[i * w.i1], b[i * w.i2]);
                }
            }
            oa += k * w.i1;
            ob += k * w.i2;
            oy += k;
            n -= k;
        }
        vmcu_nd_next(idx, p->output_shape, 1);
    }
}

void vmcu_seg_logistic_s8(const vmcu_logistic_params_t *p, vmcu_seg_src_t input, vmcu_seg_dst_t output) {
    for (int32_t e = 0; e < p->size;) {
        const int32_t k = run2(&input, &output, e, p->size - e);
        const int8_t *in = vmcu_seg_at(&input, e);
        int8_t *out = vmcu_seg_dst_at(&output, e);
        for (int32_t i = 0; i < k; ++i) {
            const int32_t x = in[i] - p->input_zero_point;
            if (x <= -p->input_range_radius) {
                out[i] = INT8_MIN;
            } else if (x >= p->input_range_radius) {
                out[i] = INT8_MAX;
            } else {
                const int32_t x_q4 = vmcu_multiply_by_quantized_multiplier(x, p->input_multiplier,
                                                                           p->input_left_shift);
                const int32_t y_q23 = vmcu_rounding_divide_by_pot(vmcu_logistic_q4(x_q4), 31 - 8);
                out[i] = (int8_t)vmcu_clamp_i32(y_q23 - 128, INT8_MIN, INT8_MAX);
            }
        }
        e += k;
    }
}

void vmcu_seg_quantize_s8(const vmcu_quantize_params_t *p, vmcu_seg_src_t input, vmcu_seg_dst_t output) {
    for (int32_t e = 0; e < p->size;) {
        const int32_t k = run2(&input, &output, e, p->size - e);
        const int8_t *in = vmcu_seg_at(&input, e);
        int8_t *out = vmcu_seg_dst_at(&output, e);
        for (int32_t i = 0; i < k; ++i) {
            const int32_t q = vmcu_multiply_by_quantized_multiplier(in[i] - p->input_zero_point,
                                                                    p->requantize_multiplier, p->requantize_shift);
            out[i] = (int8_t)vmcu_clamp_i32(q + p->output_zero_point, INT8_MIN, INT8_MAX);
        }
        e += k;
    }
}

/* std::round (halves away from zero) to int32 for |v| <= 2^30, without libm; v - t is exact. */
static int32_t round_half_away(float v) {
    int32_t t = (int32_t)v;
    const float frac = v - (float)t;
    if (frac >= 0.5) {
        t += 1;
    } else if (frac <= -0.5) {
        t -= 1;
    }
    return t;
}

static int8_t quantize_one(const vmcu_quantize_params_t *p, float scale, float x) {
    const float limit = 1073741824.0f;  /* far beyond int8 yet safe to convert; NaN maps to 0 */
    float v = x / scale;
    v = v != v ? 0.0f : (v > limit ? limit : (v < -limit ? -limit : v));
    return (int8_t)vmcu_clamp_i32(round_half_away(v) + p->output_zero_point, INT8_MIN, INT8_MAX);
}

/* Float inputs: runs of whole elements; the one element that straddles the wrap is gathered. */
void vmcu_seg_quantize_f32_s8(const vmcu_quantize_params_t *p, vmcu_seg_src_t input, vmcu_seg_dst_t output) {
    const float scale = (float)p->output_scale;
    for (int32_t e = 0; e < p->size;) {
        const int32_t k = vmcu_min_i32(vmcu_min_i32(p->size - e, vmcu_seg_run(output.split, e)),
                                       vmcu_seg_run(input.split, 4 * e) / 4);
        float x;
        if (k == 0) {
            vmcu_seg_read(&input, 4 * e, (int8_t *)&x, 4);
            *vmcu_seg_dst_at(&output, e++) = quantize_one(p, scale, x);
            continue;
        }
        const int8_t *in = vmcu_seg_at(&input, 4 * e);
        int8_t *out = vmcu_seg_dst_at(&output, e);
        for (int32_t i = 0; i < k; ++i) {
            memcpy(&x, in + 4 * i, sizeof x);
            out[i] = quantize_one(p, scale, x);
        }
        e += k;
    }
}

static inline float dequantize_one(const vmcu_dequantize_params_t *p, int32_t q) {
    return (float)(p->scale * (double)(q - p->zero_point));
}

void vmcu_seg_dequantize_s8(const vmcu_dequantize_params_t *p, vmcu_seg_src_t input, vmcu_seg_dst_t output,
                            int8_t *stage) {
    if (!stage && vmcu_seg_contiguous(input.split, p->size) && vmcu_seg_contiguous(output.split, 4 * p->size)) {
        for (int32_t i = 0; i < p->size; ++i) {  /* nothing wraps: the tensor kernel's loop */
            const float v = dequantize_one(p, input.head[i]);
            memcpy(output.head + 4 * i, &v, sizeof v);
        }
        return;
    }
    for (int32_t r = 0; r < p->size; r += p->depth) {
        const int8_t *x = vmcu_seg_straddles(input.split, r, p->depth) ? NULL : vmcu_seg_at(&input, r);
        int8_t *y = stage;
        if (!stage && !vmcu_seg_straddles(output.split, 4 * r, 4 * p->depth)) {
            y = vmcu_seg_dst_at(&output, 4 * r);
        }
        for (int32_t i = 0; i < p->depth; ++i) {
            const float v = dequantize_one(p, x ? x[i] : *vmcu_seg_at(&input, r + i));
            if (y) {
                memcpy(y + 4 * i, &v, sizeof v);
            } else {
                vmcu_seg_write(&output, 4 * (r + i), (const int8_t *)&v, 4);
            }
        }
        if (stage) {
            vmcu_seg_write(&output, 4 * r, stage, 4 * p->depth);
        }
    }
}
