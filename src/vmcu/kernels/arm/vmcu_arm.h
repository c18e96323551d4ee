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

static inline int8_t vmcu_requantize_s8(int32_t acc, int32_t multiplier, int32_t shift, int32_t offset,
                                        int32_t act_min, int32_t act_max) {
    return (int8_t)vmcu_clamp_i32(vmcu_requantize(acc, multiplier, shift) + offset, act_min, act_max);
}

#endif /* VMCU_ARM_H */
