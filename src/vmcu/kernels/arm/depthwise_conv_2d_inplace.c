/* DEPTHWISE_CONV_2D int8, depth multiplier 1, in place, for Cortex-M with the DSP extension (same results as
 * ref/depthwise_conv_2d_inplace.c, whose comment shows why no input byte is overwritten before it is read).
 *
 * Channels go four at a time instead of one: the DSP depthwise kernel computes a group's output over the
 * whole image into a scratch plane of four bytes a pixel (vmcu_depthwise_conv_2d_plane_s8), reading the
 * group's four input channels only, and the plane is then stored over those channels. The reference's
 * argument is per channel and every store of a group lands on a residue (mod C) of the group, so it holds
 * for the group as a whole; the last C % 4 channels take the exact path the same way. Scratch: the plane
 * (Ho * Wo * 4 bytes), then the DSP kernel's.
 */
#include "vmcu_arm.h"
#include "vmcu_dw.h"
#include "vmcu_kernels.h"

/* The four bytes of v clamped to [lo, hi] bytewise (lo, hi: a byte repeated): SSUB8 sets the GE flags
 * that SEL reads, so both pairs live in one asm statement. */
static inline uint32_t clamp4(uint32_t v, uint32_t lo, uint32_t hi) {
    uint32_t t;
    __asm__("ssub8 %1, %0, %2\n\t"
            "sel %0, %0, %2\n\t"
            "ssub8 %1, %0, %3\n\t"
            "sel %0, %3, %0"
            : "+r"(v), "=&r"(t)
            : "r"(lo), "r"(hi)
            : "cc");
    return v;
}

void vmcu_depthwise_conv_2d_inplace_s8(const vmcu_depthwise_conv_2d_params_t *p, int8_t *data,
                                       const int8_t *filter, const int32_t *bias, int8_t *scratch) {
    const int32_t batches = p->input_shape[0], channels = p->input_shape[3];
    const int32_t in_pixels = p->input_shape[1] * p->input_shape[2];
    const int32_t out_pixels = p->output_shape[1] * p->output_shape[2];
    const uint32_t lo = (uint8_t)p->activation_min * 0x01010101u, hi = (uint8_t)p->activation_max * 0x01010101u;
    int8_t *const plane = scratch;
    for (int32_t b = 0; b < batches; ++b) {
        const int8_t *input = data + b * in_pixels * channels;
        int8_t *output = data + b * out_pixels * channels;
        for (int32_t c = 0; c < channels; c += 4) {
            vmcu_depthwise_conv_2d_plane_s8(p, input, filter, bias, c, plane, scratch + 4 * out_pixels);
            const int32_t n = vmcu_min_i32(4, channels - c);
            for (int32_t q = 0; q < out_pixels; ++q) {
                const uint32_t v = clamp4(vmcu_load32(plane + 4 * q), lo, hi);
                int8_t *const y = output + q * channels + c;
                if (n == 4) {
                    vmcu_store32(y, v);
                } else {
                    for (int32_t j = 0; j < n; ++j) {
                        y[j] = (int8_t)(v >> 8 * j);
                    }
                }
            }
        }
    }
}
