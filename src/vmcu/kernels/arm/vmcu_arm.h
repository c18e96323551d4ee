/* Cortex-M DSP-extension helpers shared by the arm kernels (GCC arm_acle.h intrinsics, no CMSIS). */
#ifndef VMCU_ARM_H
#define VMCU_ARM_H

#if !defined(__ARM_FEATURE_DSP)
#error "the arm kernels need the DSP extension (Cortex-M4/M7/M33...): build the ref variant for this CPU"
#endif

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

/* Requantization of accumulators, channel by channel. Fast path, taken when 2 * acc fits int32 and the
 * channel shifts right (e >= 1): the doubling high multiply floor((acc * m + 2^30) / 2^31) is
 * SMMULR(2 * acc, m), and the rounding division of x by 2^e plus the zero point is
 * (((x - [x < 0]) >> (e - 1)) + 2 * zp + 1) >> 1: nested floor divisions compose, so this is
 * floor((x + 2^(e-1) - [x < 0]) / 2^e) + zp, TFLite's rounding half away from zero, and nothing
 * overflows as |x| <= |acc|. About twelve instructions per output. Otherwise (dead channels of real
 * models have biases near 2^30 and shifts of 0) vmcu_requantize's exact 64-bit path. */
typedef struct {
    const int32_t *multiplier, *shift;
    int32_t zero_point, act_min, act_max;
    int32_t full_range; /* the activation range is all of int8: SSAT clamps */
} vmcu_requant_t;

/* Channels whose accumulators the kernels buffer before requantizing them in one tight loop. */
#define VMCU_ACC_CHUNK 64

static inline vmcu_requant_t vmcu_requant_init(const int32_t *multiplier, const int32_t *shift,
                                               int32_t zero_point, int32_t act_min, int32_t act_max) {
    const int32_t full_range = act_min == -128 && act_max == 127;
    const vmcu_requant_t r = {multiplier, shift, zero_point, act_min, act_max, full_range};
    return r;
}

/* The exact 64-bit path, out of line so that the fast loop keeps its registers. */
static __attribute__((noinline, unused)) int32_t vmcu_requant_slow(int32_t acc, int32_t multiplier,
                                                                   int32_t shift) {
    return vmcu_requantize(acc, multiplier, shift);
}

/* SSAT to int8 of y >> 1 in one instruction (GCC does not fold the shift into SSAT). */
static inline int32_t vmcu_ssat8_half(int32_t y) {
    int32_t r;
    __asm__("ssat %0, #8, %1, asr #1" : "=r"(r) : "r"(y));
    return r;
}

/* The fast path's result before the final halving: 2 * (RDBPOT(x, e) + zp) + 1 for x = SMMULR(a2, m). */
static inline int32_t vmcu_requant_twice(int32_t a2, int32_t m, int32_t e1, int32_t odd) {
    const int32_t x = vmcu_smmulr(a2, m);
    return ((x + (x >> 31)) >> e1) + odd;
}

/* One accumulator of a channel with multiplier m, shift, e1 = -shift - 1; the result includes zp. */
static inline int32_t vmcu_requant_value(int32_t a, int32_t m, int32_t shift, int32_t e1, int32_t odd,
                                         int32_t zp) {
    const int32_t a2 = (int32_t)((uint32_t)a << 1);
    if (((a ^ a2) | e1) < 0) {
        return vmcu_requant_slow(a, m, shift) + zp;
    }
    return vmcu_requant_twice(a2, m, e1, odd) >> 1;
}

/* The two-pixel fast path in asm for a full int8 activation range: for channels i in [i0, n),
 * acc[i] -> out0[i] and acc[n + i] -> out1[i], 26 instructions per channel. Stops at the first channel
 * the fast path does not cover and returns its index (n when none). 13 register operands. */
static inline int32_t vmcu_requant2_asm(const vmcu_requant_t *r, const int32_t *acc, int32_t c0, int32_t n,
                                        int32_t i0, int8_t *out0, int8_t *out1) {
    const int32_t *s = r->shift + c0 + i0, *m = r->multiplier + c0 + i0, *end = r->shift + c0 + n;
    const int32_t *a0p = acc + i0, *a1p = acc + n + i0;
    int8_t *o0 = out0 + i0, *o1 = out1 + i0;
    const int32_t odd = 2 * r->zero_point + 1;
    int32_t e1, mv, a, b, t;
    __asm__ volatile("1:\n\t"
                     "ldr %[e1], [%[s]], #4\n\t"
                     "ldr %[a], [%[a0p]], #4\n\t"
                     "ldr %[b], [%[a1p]], #4\n\t"
                     "mvn %[e1], %[e1]\n\t"
                     "eor %[t], %[a], %[a], lsl #1\n\t"
                     "eor %[mv], %[b], %[b], lsl #1\n\t"
                     "orr %[t], %[t], %[mv]\n\t"
                     "orrs %[t], %[t], %[e1]\n\t"
                     "bmi 2f\n\t"
                     "ldr %[mv], [%[m]], #4\n\t"
                     "lsl %[a], %[a], #1\n\t"
                     "lsl %[b], %[b], #1\n\t"
                     "smmulr %[a], %[a], %[mv]\n\t"
                     "smmulr %[b], %[b], %[mv]\n\t"
                     "add %[a], %[a], %[a], asr #31\n\t"
                     "add %[b], %[b], %[b], asr #31\n\t"
                     "asr %[a], %[a], %[e1]\n\t"
                     "asr %[b], %[b], %[e1]\n\t"
                     "add %[a], %[a], %[odd]\n\t"
                     "add %[b], %[b], %[odd]\n\t"
                     "ssat %[a], #8, %[a], asr #1\n\t"
                     "ssat %[b], #8, %[b], asr #1\n\t"
                     "strb %[a], [%[o0]], #1\n\t"
                     "strb %[b], [%[o1]], #1\n\t"
                     "cmp %[s], %[end]\n\t"
                     "bne 1b\n\t"
                     "b 3f\n\t"
                     "2:\n\t"
                     "sub %[s], %[s], #4\n\t"
                     "3:\n\t"
                     : [s] "+r"(s), [m] "+r"(m), [a0p] "+r"(a0p), [a1p] "+r"(a1p), [o0] "+r"(o0),
                       [o1] "+r"(o1),
                       [e1] "=&r"(e1), [mv] "=&r"(mv), [a] "=&r"(a), [b] "=&r"(b), [t] "=&r"(t)
                     : [end] "r"(end), [odd] "r"(odd)
                     : "cc", "memory");
    return (int32_t)(s - (r->shift + c0));
}

/* acc[i] -> out0[i] and, for two pixels, acc[n + i] -> out1[i], for channels c0 + i; specialised by the
 * constant arguments when inlined. */
static inline void vmcu_requant_loop(const vmcu_requant_t *r, const int32_t *acc, int32_t c0, int32_t n,
                                     int8_t *out0, int8_t *out1, const int two, const int full_range) {
    const int32_t *m = r->multiplier + c0, *s = r->shift + c0;
    const int32_t zp = r->zero_point, odd = 2 * zp + 1, lo = r->act_min, hi = r->act_max;
    for (int32_t i = 0; i < n; ++i) {
        const int32_t shift = s[i], e1 = ~shift, mi = m[i];
        const int32_t y0 = vmcu_requant_value(acc[i], mi, shift, e1, odd, zp);
        out0[i] = (int8_t)(full_range ? __ssat(y0, 8) : vmcu_clamp_i32(y0, lo, hi));
        if (two) {
            const int32_t y1 = vmcu_requant_value(acc[n + i], mi, shift, e1, odd, zp);
            out1[i] = (int8_t)(full_range ? __ssat(y1, 8) : vmcu_clamp_i32(y1, lo, hi));
        }
    }
}

/* Requantizes and stores n channels starting at c0 of one pixel (out1 NULL) or two. */
static inline void vmcu_requant_block(const vmcu_requant_t *r, const int32_t *acc, int32_t c0, int32_t n,
                                      int8_t *out0, int8_t *out1) {
    if (out1 && r->full_range) {
        int32_t i = 0;
        while (i < n) {
            i = vmcu_requant2_asm(r, acc, c0, n, i, out0, out1);
            if (i < n) {
                const int32_t shift = r->shift[c0 + i], m = r->multiplier[c0 + i];
                out0[i] = (int8_t)__ssat(vmcu_requant_slow(acc[i], m, shift) + r->zero_point, 8);
                out1[i] = (int8_t)__ssat(vmcu_requant_slow(acc[n + i], m, shift) + r->zero_point, 8);
                ++i;
            }
        }
    } else if (out1) {
        vmcu_requant_loop(r, acc, c0, n, out0, out1, 1, 0);
    } else if (r->full_range) {
        vmcu_requant_loop(r, acc, c0, n, out0, out0, 0, 1);
    } else {
        vmcu_requant_loop(r, acc, c0, n, out0, out0, 0, 0);
    }
}

/* The exact path for one accumulator of channel ch, clamped: any multiplier, shift and accumulator. */
static inline int8_t vmcu_requant_exact(const vmcu_requant_t *r, int32_t acc, int32_t ch) {
    const int32_t y = vmcu_requantize(acc, r->multiplier[ch], r->shift[ch]) + r->zero_point;
    return (int8_t)vmcu_clamp_i32(y, r->act_min, r->act_max);
}

/* The asm requantizer works on 2 * acc (the kernels accumulate doubled inputs or weights; 2w and
 * 2(x + offset) fit int16) for channels whose accumulators stay within +-2^30 and whose shift is a right
 * one, e = -shift >= 1, with m the multiplier, e1 = e - 1 and c = (2 * zp + 1) << e1 below 2^30:
 * out = SSAT8((SMMLAR(a2, m, c) - [a2 < 0]) >> e). SMMLAR(a2, m, c) is x + c with x = SMMULR(2 * acc, m),
 * the doubling high multiply floor((acc * m + 2^30) / 2^31), and (x - [x < 0] + (2 * zp + 1) * 2^(e-1))
 * >> e is TFLite's rounding half away from zero of x / 2^e plus zp, as nested floor divisions compose.
 * [a2 < 0] stands for [x < 0]: they differ only when x == 0, which rounds to 0 either way. */
#define VMCU_REQUANT(T, A2, M, C, E1)                 \
    "smmlar " T ", " A2 ", " M ", " C "\n\t"          \
    "add " T ", " T ", " A2 ", asr #31\n\t"           \
    "asr " T ", " T ", " E1 "\n\t"                    \
    "ssat " T ", #8, " T ", asr #1\n\t"

/* A channel table word: 2 * bias (even) for a channel VMCU_REQUANT serves, else a tag (odd): 2v + 1
 * when every possible accumulator gives the same output v (the dead channels of pruned models, whose
 * biases near 2^30 swamp any input), or VMCU_TAG_EXACT for the exact 64-bit path (vmcu_requant_exact).
 * A table ends with a VMCU_TAG_EXACT word. */
#define VMCU_TAG_EXACT INT32_MAX

/* 2v + 1 when channel ch gives the same output v for every accumulator within bias +- bound, else
 * VMCU_TAG_EXACT. Requantization is monotonic in acc unless a left shift wraps, so equal ends suffice. */
static inline int32_t vmcu_chan_constant(const vmcu_requant_t *r, int32_t ch, int64_t bias, int64_t bound) {
    const int32_t shift = r->shift[ch];
    const int64_t limit = shift > 0 ? (int64_t)INT32_MAX >> shift : INT32_MAX;
    if (bias - bound < -limit - 1 || bias + bound > limit) {
        return VMCU_TAG_EXACT;
    }
    const int8_t v = vmcu_requant_exact(r, (int32_t)(bias - bound), ch);
    return v == vmcu_requant_exact(r, (int32_t)(bias + bound), ch) ? 2 * v + 1 : VMCU_TAG_EXACT;
}

/* Largest scratch, in bytes, that a faster data layout may take before the kernels fall back to a
 * smaller one (scratch.py mirrors every such choice). */
#define VMCU_SCRATCH_MAX 2304

/* What vmcu_chan_word needs of a layer whose outputs each take `taps` weights times inputs offset by
 * input_offset: |acc - bias| <= bound for any weights and inputs, and the fast path's limits. */
typedef struct {
    const vmcu_requant_t *r;
    int64_t bound;
    int32_t x_max;   /* largest |x + input_offset| */
    int32_t room;    /* |bias| < room keeps |acc| below 2^30 (0 when nothing does) */
    int32_t e1_end;  /* e1 < e1_end keeps (2 * zp + 1) << e1 below 2^30 */
} vmcu_chan_ctx_t;

static inline vmcu_chan_ctx_t vmcu_chan_ctx(const vmcu_requant_t *r, int32_t taps, int32_t input_offset) {
    const int32_t odd = 2 * r->zero_point + 1, abs_odd = odd < 0 ? -odd : odd;
    const int32_t x_lo = -128 + input_offset, x_hi = 127 + input_offset;
    vmcu_chan_ctx_t x;
    x.r = r;
    x.x_max = vmcu_max_i32(x_lo < 0 ? -x_lo : x_lo, x_hi < 0 ? -x_hi : x_hi);
    x.bound = (int64_t)taps * 128 * x.x_max;
    x.room = x.bound < (1 << 30) ? (1 << 30) - (int32_t)x.bound : 0;
    x.e1_end = 0;
    while (x.e1_end < 30 && abs_odd < (1 << (30 - x.e1_end))) {
        ++x.e1_end;
    }
    return x;
}

/* The table word of channel ch (see VMCU_TAG_EXACT) with bias `bias` and weights w[i * w_tap]. */
static inline int32_t vmcu_chan_word(const vmcu_chan_ctx_t *x, int32_t ch, int32_t bias, const int8_t *w,
                                     int32_t taps, int32_t w_tap) {
    const uint32_t e1 = ~(uint32_t)x->r->shift[ch];
    if (e1 < (uint32_t)x->e1_end && bias > -x->room && bias < x->room) {
        return 2 * bias;
    }
    const int32_t word = vmcu_chan_constant(x->r, ch, bias, x->bound);
    if (word != VMCU_TAG_EXACT) {
        return word;
    }
    int32_t w_abs = 0;  /* again with this channel's own weights */
    for (int32_t i = 0; i < taps; ++i, w += w_tap) {
        w_abs += *w < 0 ? -*w : *w;
    }
    return vmcu_chan_constant(x->r, ch, bias, (int64_t)w_abs * x->x_max);
}

/* m, c and e1 of a channel whose table word is even (see VMCU_REQUANT). */
static inline void vmcu_chan_constants(const vmcu_requant_t *r, int32_t ch, uint32_t *m_c_e1) {
    const int32_t e1 = ~r->shift[ch];
    m_c_e1[0] = (uint32_t)r->multiplier[ch];
    m_c_e1[1] = (uint32_t)(2 * r->zero_point + 1) << e1;
    m_c_e1[2] = (uint32_t)e1;
}

#endif /* VMCU_ARM_H */
