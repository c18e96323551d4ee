/* QUANTIZE and DEQUANTIZE (TFLM reference_ops::AffineQuantize, Requantize, Dequantize). Like TFLM,
 * quantizing divides in float32 (by the scale cast to float) and dequantizing multiplies in double.
 * Dequantized floats are wider than their inputs, so each row is first copied to scratch (depth bytes):
 * then the output may overlap the input as a segment plan allows. */
#include <string.h>

#include "vmcu_fixedpoint.h"
#include "vmcu_kernels.h"

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

void vmcu_quantize_f32_s8(const vmcu_quantize_params_t *p, const float *input, int8_t *output) {
    const float scale = (float)p->output_scale;
    const float limit = 1073741824.0f;  /* far beyond int8 yet safe to convert; NaN maps to 0 */
    for (int32_t i = 0; i < p->size; ++i) {
        float v = input[i] / scale;
        v = v != v ? 0.0f : (v > limit ? limit : (v < -limit ? -limit : v));
        output[i] = (int8_t)vmcu_clamp_i32(round_half_away(v) + p->output_zero_point, INT8_MIN, INT8_MAX);
    }
}

void vmcu_quantize_s8(const vmcu_quantize_params_t *p, const int8_t *input, int8_t *output) {
    for (int32_t i = 0; i < p->size; ++i) {
        const int32_t x = input[i] - p->input_zero_point;
        const int32_t q = vmcu_multiply_by_quantized_multiplier(x, p->requantize_multiplier,
                                                                p->requantize_shift);
        output[i] = (int8_t)vmcu_clamp_i32(q + p->output_zero_point, INT8_MIN, INT8_MAX);
    }
}

void vmcu_dequantize_s8(const vmcu_dequantize_params_t *p, const int8_t *input, float *output,
                        int8_t *scratch) {
    for (int32_t r = 0; r < p->size; r += p->depth, input += p->depth, output += p->depth) {
        memcpy(scratch, input, (size_t)p->depth);
        for (int32_t i = 0; i < p->depth; ++i) {
            output[i] = (float)(p->scale * (double)(scratch[i] - p->zero_point));
        }
    }
}
