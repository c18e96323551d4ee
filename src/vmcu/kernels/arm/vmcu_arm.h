/* Cortex-M DSP-extension helpers shared by the arm kernels (GCC arm_acle.h intrinsics, no CMSIS). */
#ifndef VMCU_ARM_H
#define VMCU_ARM_H

#include <arm_acle.h>
#include <stdint.h>
#include <string.h>

#include "vmcu_fixedpoint.h"

/* A 32-bit load from any byte address (M4/M7 LDR handles unaligned words; memcpy keeps C defined). */
static inline uint32_t vmcu_load32(const void *p) {
    uint32_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline void vmcu_store32(void *p, uint32_t v) { memcpy(p, &v, sizeof v); }

/* Bytes 1 and 3 sign-extended to halfwords; GCC does not fold a rotate into SXTB16 by itself. */
static inline int16x2_t vmcu_sxtb16_ror8(uint32_t x) {
    int16x2_t r;
    __asm__("sxtb16 %0, %1, ror #8" : "=r"(r) : "r"(x));
    return r;
}

/* `a` plus bytes 1 and 3 of `x` sign-extended, per halfword. */
static inline int16x2_t vmcu_sxtab16_ror8(int16x2_t a, uint32_t x) {
    int16x2_t r;
    __asm__("sxtab16 %0, %1, %2, ror #8" : "=r"(r) : "r"(a), "r"(x));
    return r;
}

/* A value repeated in both halfwords (for SXTAB16 offsets). */
static inline int16x2_t vmcu_dup16(int32_t v) { return (int16x2_t)(((uint32_t)v & 0xFFFFu) * 0x10001u); }

/* SMMULR: (a * b + 2^31) >> 32, the high word rounded. */
static inline int32_t vmcu_smmulr(int32_t a, int32_t b) {
    int32_t r;
    __asm__("smmulr %0, %1, %2" : "=r"(r) : "r"(a), "r"(b));
    return r;
}

/* Requantization of one layer's accumulators: the fast path needs |acc| < 2^30 and right shifts e in
 * [1, 22] for every channel (vmcu_requant_init checks the bound from the biases and the depth). Then the
 * doubling high multiply floor((acc * m + 2^30) / 2^31) is SMMULR(2 * acc, m), and the rounding division
 * by 2^e plus the zero point is (x + 2^(e-1) + zp * 2^e - [x < 0]) >> e, which cannot overflow as
 * |x| <= |acc| < 2^30 and |zp * 2^e| <= 2^29. Otherwise vmcu_requantize's 64-bit path is used. */
typedef struct {
    const int32_t *multiplier, *shift;
    int32_t zero_point, act_min, act_max;
    int32_t fast;       /* the fast path applies to every channel */
    int32_t full_range; /* activation range is all of int8: SSAT clamps */
} vmcu_requant_t;

static inline vmcu_requant_t vmcu_requant_init(const int32_t *multiplier, const int32_t *shift, int32_t zero_point,
                                               int32_t act_min, int32_t act_max, const int32_t *bias,
                                               int32_t has_bias, int32_t channels, int32_t max_abs_products) {
    vmcu_requant_t r = {multiplier, shift, zero_point, act_min, act_max, 1, act_min == -128 && act_max == 127};
    int64_t max_bias = 0;
    for (int32_t c = 0; c < channels; ++c) {
        if (shift[c] > -1 || shift[c] < -22) {
            r.fast = 0;
        }
        const int64_t b = has_bias ? (bias[c] < 0 ? -(int64_t)bias[c] : bias[c]) : 0;
        max_bias = b > max_bias ? b : max_bias;
    }
    r.fast = r.fast && max_bias + max_abs_products < ((int64_t)1 << 30);
    return r;
}

/* The fast path's per-channel constant: 2^(e-1) + zp * 2^e. */
static inline int32_t vmcu_requant_round(const vmcu_requant_t *r, int32_t e) {
    return ((int32_t)1 << (e - 1)) + (int32_t)((uint32_t)r->zero_point << e);
}

static inline int32_t vmcu_requant_fast(int32_t acc, int32_t multiplier, int32_t e, int32_t round) {
    const int32_t x = vmcu_smmulr((int32_t)((uint32_t)acc << 1), multiplier);
    return (x + round + (x >> 31)) >> e;
}

static inline int8_t vmcu_requant_clamp(const vmcu_requant_t *r, int32_t y) {
    return (int8_t)(r->full_range ? __ssat(y, 8) : vmcu_clamp_i32(y, r->act_min, r->act_max));
}

/* One output of channel c, any path. */
static inline int8_t vmcu_requant_one(const vmcu_requant_t *r, int32_t acc, int32_t c) {
    if (r->fast) {
        const int32_t e = -r->shift[c];
        return vmcu_requant_clamp(r, vmcu_requant_fast(acc, r->multiplier[c], e, vmcu_requant_round(r, e)));
    }
    return vmcu_requant_clamp(r, vmcu_requantize(acc, r->multiplier[c], r->shift[c]) + r->zero_point);
}

#endif /* VMCU_ARM_H */
