/* CONV_2D int8 for Cortex-M with the DSP extension (same results as ref/conv_2d.c).
 *
 * Output pixels go four at a time (two when four pixels' columns would take more than
 * VMCU_SCRATCH_MAX). Their receptive fields (K = kh * kw * Cin values, padded with zeros to a multiple of
 * four) are written to the scratch column as doubled int16, 2 * (x + input_offset) (0 for padding),
 * interleaved by groups of four elements: per group [p0 (k0,k2)] [p0 (k1,k3)] [p1 ...] ..., the order in
 * which SXTB16 and SXTB16 ROR #8 unpack four weights and LDM loads two pixels. A naked asm loop then runs
 * over the output channels: each weight row is unpacked once for the four pixels (13 instructions per 16
 * MACs; with two pixels, two rows at a time, 16 per 16), and the accumulators, which hold 2 * acc, are
 * requantized in registers (VMCU_REQUANT) and stored. A table built once per call (a word a channel,
 * vmcu_chan_word) gives each channel's accumulator start, or tags the channels whose output is the same
 * for every input (the dead channels of pruned models: stored without their MACs) and the few that need
 * the exact 64-bit path, taken here in C from the column. Multipliers and shifts are read from the params.
 *
 * Pointwise convolutions with stride 1 convert whole blocks of consecutive pixels; other shapes gather
 * the taps (a filter row of a window inside the image is one contiguous run), through an int8 staging row
 * when Cin % 4 != 0. A weight row's last group may then read up to three bytes of the next row, which meet
 * zeros in the column; the filter's last row is read from a padded copy, so nothing past its end is read.
 * All pixels of a block are read before any is stored, so the output may overlap the input as a segment
 * plan allows (the column buffer is the workspace); the last block reuses columns of the previous one
 * when fewer pixels than a block remain.
 *
 * Pointwise convolutions with Cin 8 or 16 (stride 1) instead keep one input pixel in registers and run
 * over per-channel records of unpacked weights and constants (see pw8_x2).
 */
#include "vmcu_arm.h"
#include "vmcu_kernels.h"

typedef struct {
    int32_t in_h, in_w, in_c, filter_h, filter_w, dil_h, dil_w, input_offset;
    int32_t k, groups, pointwise, staged, px;
    int32_t span_h, span_w;  /* input rows and columns a window spans */
    int16x2_t offset2;
    uint32_t *col;  /* 2 * px * groups words */
    int8_t *stage;  /* 4 * groups bytes when staged */
} column_t;

/* Converts 4 * n int8 values from `src` into groups g0 .. g0 + n - 1 of pixel slot `slot`. */
static inline void convert_groups(const column_t *c, int32_t slot, const int8_t *src, int32_t g0, int32_t n) {
    const int32_t step = 2 * c->px;  /* locals: the stores below may alias *c as far as C knows */
    const int16x2_t offset2 = c->offset2;
    uint32_t *dst = c->col + 2 * (g0 * c->px + slot);
    for (const int8_t *end = src + 4 * n; src != end; src += 4, dst += step) {
        const uint32_t v = vmcu_load32(src);
        const int16x2_t lo = __sxtab16(offset2, (int8x4_t)v), hi = vmcu_sxtab16_ror8(offset2, v);
        dst[0] = (uint32_t)__sadd16(lo, lo);
        dst[1] = (uint32_t)__sadd16(hi, hi);
    }
}

/* Converts n consecutive input pixels (pointwise, stride 1) into slots slot0 .. slot0 + n - 1. */
static void convert_pixels(const column_t *c, int32_t slot0, const int8_t *src, int32_t n) {
    const int16x2_t offset2 = c->offset2;
    const int32_t in_c = c->in_c, step = 2 * c->px, groups = c->groups;
    uint32_t *col = c->col + 2 * slot0;
    for (int32_t g = 0; g < groups; ++g, src += 4, col += step) {
        const int8_t *x = src;
        for (int32_t s = 0; s < n; ++s, x += in_c) {
            const uint32_t v = vmcu_load32(x);
            const int16x2_t lo = __sxtab16(offset2, (int8x4_t)v), hi = vmcu_sxtab16_ror8(offset2, v);
            col[2 * s] = (uint32_t)__sadd16(lo, lo);
            col[2 * s + 1] = (uint32_t)__sadd16(hi, hi);
        }
    }
}

/* Short copies and fills a word at a time (M4/M7 LDR/STR take unaligned addresses), the last word
 * overlapping the one before: no byte loop, which GCC would turn into a memcpy/memset call. */
static inline void copy_bytes(int8_t *dst, const int8_t *src, int32_t n) {
    if (n < 4) {
        for (int32_t j = 0; j < 3; ++j) {  /* a constant trip count, not a memcpy */
            if (j < n) {
                dst[j] = src[j];
            }
        }
        return;
    }
    for (int32_t j = 0; j < n - 4; j += 4) {
        vmcu_store32(dst + j, vmcu_load32(src + j));
    }
    vmcu_store32(dst + n - 4, vmcu_load32(src + n - 4));
}

static inline void fill_bytes(int8_t *dst, int8_t v, int32_t n) {
    const uint32_t word = (uint8_t)v * 0x01010101u;
    if (n < 4) {
        for (int32_t j = 0; j < 3; ++j) {
            if (j < n) {
                dst[j] = v;
            }
        }
        return;
    }
    for (int32_t j = 0; j < n - 4; j += 4) {
        vmcu_store32(dst + j, word);
    }
    vmcu_store32(dst + n - 4, word);
}

/* Gathers the receptive field at input origin (iy0, ix0) into the int8 staging row, the input zero point
 * standing for padding (and for the K % 4 filler); with dilation_w 1 each filter row's in-bounds taps
 * are one contiguous copy. */
static void stage_field(const column_t *c, const int8_t *image, int32_t iy0, int32_t ix0) {
    const int32_t in_c = c->in_c, filter_w = c->filter_w, dil_w = c->dil_w, row = filter_w * in_c;
    const int8_t zero_point = (int8_t)-c->input_offset;
    const int32_t fx0 = ix0 < 0 ? vmcu_min_i32((-ix0 + dil_w - 1) / dil_w, filter_w) : 0;
    const int32_t fx1 = vmcu_max_i32(fx0, vmcu_min_i32(filter_w, (c->in_w - ix0 + dil_w - 1) / dil_w));
    int8_t *dst = c->stage;
    for (int32_t fy = 0; fy < c->filter_h; ++fy, dst += row) {
        const int32_t iy = iy0 + fy * c->dil_h;
        if (iy < 0 || iy >= c->in_h || fx1 == fx0) {
            fill_bytes(dst, zero_point, row);
            continue;
        }
        const int8_t *src = image + (iy * c->in_w + ix0 + fx0 * dil_w) * in_c;
        fill_bytes(dst, zero_point, fx0 * in_c);
        if (dil_w == 1) {
            copy_bytes(dst + fx0 * in_c, src, (fx1 - fx0) * in_c);
        } else {
            for (int32_t fx = fx0; fx < fx1; ++fx, src += dil_w * in_c) {
                copy_bytes(dst + fx * in_c, src, in_c);
            }
        }
        fill_bytes(dst + fx1 * in_c, zero_point, (filter_w - fx1) * in_c);
    }
    fill_bytes(dst, zero_point, 4 * c->groups - c->k);
}

/* Writes the receptive field at input origin (iy0, ix0) of `image` into slot `slot` of the column. A
 * window inside the image with dilation_w 1 is one contiguous run of filter_w * Cin bytes per filter row. */
static __attribute__((noinline)) void fill(const column_t *c, int32_t slot, const int8_t *image, int32_t iy0,
                                           int32_t ix0) {
    const int32_t in_c = c->in_c, row = c->filter_w * in_c, row_step = c->dil_h * c->in_w * in_c;
    const int32_t inside = c->dil_w == 1 && iy0 >= 0 && iy0 + c->span_h <= c->in_h && ix0 >= 0 &&
                           ix0 + c->span_w <= c->in_w;
    const int8_t *src = image + (iy0 * c->in_w + ix0) * in_c;
    if (c->staged) {
        if (inside) {
            int8_t *dst = c->stage;
            for (int32_t fy = 0; fy < c->filter_h; ++fy, dst += row, src += row_step) {
                copy_bytes(dst, src, row);
            }
            fill_bytes(dst, (int8_t)-c->input_offset, 4 * c->groups - c->k);
        } else {
            stage_field(c, image, iy0, ix0);
        }
        convert_groups(c, slot, c->stage, 0, c->groups);
        return;
    }
    if (inside) {
        for (int32_t fy = 0, g = 0; fy < c->filter_h; ++fy, g += row / 4, src += row_step) {
            convert_groups(c, slot, src, g, row / 4);
        }
        return;
    }
    int32_t g = 0;
    for (int32_t fy = 0; fy < c->filter_h; ++fy) {
        const int32_t iy = iy0 + fy * c->dil_h;
        for (int32_t fx = 0; fx < c->filter_w; ++fx, g += in_c / 4) {
            const int32_t ix = ix0 + fx * c->dil_w;
            if (iy >= 0 && iy < c->in_h && ix >= 0 && ix < c->in_w) {
                convert_groups(c, slot, image + (iy * c->in_w + ix) * in_c, g, in_c / 4);
            } else {
                uint32_t *d = c->col + 2 * (g * c->px + slot);
                for (int32_t j = 0; j < in_c / 4; ++j, d += 2 * c->px) {
                    d[0] = 0;
                    d[1] = 0;
                }
            }
        }
    }
}

/* Arguments of the block asm, copied to its stack frame: the offsets below are fixed. */
typedef struct {
    const int32_t *tp;    /* #0: first channel's table word */
    const uint32_t *col;  /* #4 */
    const uint32_t *xend; /* #8: col + 2 * px * groups */
    const int8_t *wp;     /* #12: first channel's weight row */
    int8_t *op;           /* #16: pixel 0's output at the first channel */
    int32_t stride;       /* #20: output bytes per pixel */
    int32_t skip;         /* #24: k - 4 * groups (general variants) */
    int32_t odd_groups;   /* #28: groups is odd (general variants) */
    int32_t k;            /* #32: weight row bytes */
    int32_t dm;           /* #36: multiplier - table - 4, bytes: [lr, dm] is the channel's multiplier */
    int32_t ds;           /* #40: shift - table - 4, bytes */
    int32_t odd;          /* #44: 2 * output_offset + 1 */
} block_args_t;

/* Blocks of 4 (2) pixels: r0-r3 two pixels' column words, r4-r7 (r4-r5) the accumulators, r8/r9 the
 * unpacked weights, r10 the column, r11 the weights, r12 the column end, lr the table. One group of four
 * K values: */
#define VMCU_GROUP4(A0, A1, A2, A3)                   \
    "ldr r9, [r11], #4\n\t"                           \
    "ldm r10!, {r0, r1, r2, r3}\n\t"                  \
    "sxtb16 r8, r9\n\t"                               \
    "sxtb16 r9, r9, ror #8\n\t"                       \
    "smlad r4, r0, r8, " A0 "\n\t"                    \
    "smlad r4, r1, r9, r4\n\t"                        \
    "smlad r5, r2, r8, " A1 "\n\t"                    \
    "smlad r5, r3, r9, r5\n\t"                        \
    "ldm r10!, {r0, r1, r2, r3}\n\t"                  \
    "smlad r6, r0, r8, " A2 "\n\t"                    \
    "smlad r6, r1, r9, r6\n\t"                        \
    "smlad r7, r2, r8, " A3 "\n\t"                    \
    "smlad r7, r3, r9, r7\n\t"
#define VMCU_GROUP2(A0, A1)                           \
    "ldr r9, [r11], #4\n\t"                           \
    "ldm r10!, {r0, r1, r2, r3}\n\t"                  \
    "sxtb16 r8, r9\n\t"                               \
    "sxtb16 r9, r9, ror #8\n\t"                       \
    "smlad r4, r0, r8, " A0 "\n\t"                    \
    "smlad r4, r1, r9, r4\n\t"                        \
    "smlad r5, r2, r8, " A1 "\n\t"                    \
    "smlad r5, r3, r9, r5\n\t"
#define VMCU_GROUP4_ACC VMCU_GROUP4("r4", "r5", "r6", "r7")
#define VMCU_GROUP2_ACC VMCU_GROUP2("r4", "r5")

/* The channel's m (r0), c (r1), e1 (r2) from the arrays; r3 the output, r9 the stride. */
#define VMCU_CONSTANTS                                \
    "ldr r0, [sp, #36]\n\t"                           \
    "ldr r2, [sp, #40]\n\t"                           \
    "ldr r0, [lr, r0]\n\t"                            \
    "ldr r2, [lr, r2]\n\t"                            \
    "ldr r1, [sp, #44]\n\t"                           \
    "mvn r2, r2\n\t"                                  \
    "lsl r1, r1, r2\n\t"                              \
    "ldr r3, [sp, #16]\n\t"                           \
    "ldr r9, [sp, #20]\n\t"

#define VMCU_STORE4                                   \
    VMCU_CONSTANTS                                    \
    VMCU_REQUANT("r8", "r4", "r0", "r1", "r2")        \
    "strb r8, [r3]\n\t"                               \
    VMCU_REQUANT("r8", "r5", "r0", "r1", "r2")        \
    "strb r8, [r3, r9]\n\t"                           \
    "add r10, r3, r9, lsl #1\n\t"                     \
    VMCU_REQUANT("r8", "r6", "r0", "r1", "r2")        \
    "strb r8, [r10]\n\t"                              \
    VMCU_REQUANT("r8", "r7", "r0", "r1", "r2")        \
    "strb r8, [r10, r9]\n\t"                          \
    "add r3, r3, #1\n\t"                              \
    "str r3, [sp, #16]\n\t"
#define VMCU_STORE2                                   \
    VMCU_CONSTANTS                                    \
    VMCU_REQUANT("r8", "r4", "r0", "r1", "r2")        \
    "strb r8, [r3]\n\t"                               \
    VMCU_REQUANT("r8", "r5", "r0", "r1", "r2")        \
    "strb r8, [r3, r9]\n\t"                           \
    "add r3, r3, #1\n\t"                              \
    "str r3, [sp, #16]\n\t"

/* A tagged word in TAG: a constant channel stores its value to the pixels and skips its weights; any
 * other tag returns the word's address. */
#define VMCU_CONST4                                   \
    "strb r8, [r3]\n\t"                               \
    "strb r8, [r3, r9]\n\t"                           \
    "add r10, r3, r9, lsl #1\n\t"                     \
    "strb r8, [r10]\n\t"                              \
    "strb r8, [r10, r9]\n\t"
#define VMCU_CONST2                                   \
    "strb r8, [r3]\n\t"                               \
    "strb r8, [r3, r9]\n\t"
#define VMCU_SPECIAL(TAG, STORES)                     \
    "3:\n\t"                                          \
    "asr r8, " TAG ", #1\n\t"                         \
    "ssat r9, #8, r8\n\t"                             \
    "cmp r9, r8\n\t"                                  \
    "bne 4f\n\t"                                      \
    "ldr r3, [sp, #16]\n\t"                           \
    "ldr r9, [sp, #20]\n\t"                           \
    STORES                                            \
    "add r3, r3, #1\n\t"                              \
    "str r3, [sp, #16]\n\t"                           \
    "ldr r9, [sp, #32]\n\t"                           \
    "add r11, r11, r9\n\t"                            \
    "b 0b\n\t"                                        \
    "4:\n\t"                                          \
    "sub r0, lr, #4\n\t"                              \
    "add sp, sp, #48\n\t"                             \
    "pop {r4-r11, pc}\n\t"

#define VMCU_ENTER                                    \
    "push {r4-r11, lr}\n\t"                           \
    "ldm r0, {r1-r12}\n\t"                            \
    "push {r1-r12}\n\t"                               \
    "mov lr, r1\n\t"                                  \
    "mov r11, r4\n\t"

/* groups even and k == 4 * groups: the first group is peeled to start from the bias, the rest run in
 * pairs entered in the middle. */
#define VMCU_BLOCK_EVEN(GROUP, GROUP_ACC, STORE, CONST) \
    VMCU_ENTER                                        \
    "0:\n\t"                                          \
    "ldr r12, [lr], #4\n\t"                           \
    "lsls r8, r12, #31\n\t"                           \
    "bne 3f\n\t"                                      \
    "ldr r10, [sp, #4]\n\t"                           \
    GROUP                                             \
    "ldr r12, [sp, #8]\n\t"                           \
    "b 2f\n\t"                                        \
    "1:\n\t" GROUP_ACC                                \
    "2:\n\t" GROUP_ACC                                \
    "cmp r10, r12\n\t"                                \
    "bne 1b\n\t"                                      \
    STORE                                             \
    "b 0b\n\t"                                        \
    VMCU_SPECIAL("r12", CONST)

/* Any groups and k: odd group counts enter the pair loop in the middle, and the weight pointer moves
 * back to the next row when k % 4 != 0. */
#define VMCU_BLOCK_ANY(MOVES, GROUP_ACC, STORE, CONST) \
    VMCU_ENTER                                        \
    "0:\n\t"                                          \
    "ldr r4, [lr], #4\n\t"                            \
    "lsls r8, r4, #31\n\t"                            \
    "bne 3f\n\t"                                      \
    MOVES                                             \
    "ldr r10, [sp, #4]\n\t"                           \
    "ldr r12, [sp, #8]\n\t"                           \
    "ldr r0, [sp, #28]\n\t"                           \
    "cbnz r0, 2f\n\t"                                 \
    "1:\n\t" GROUP_ACC                                \
    "2:\n\t" GROUP_ACC                                \
    "cmp r10, r12\n\t"                                \
    "bne 1b\n\t"                                      \
    "ldr r8, [sp, #24]\n\t"                           \
    "add r11, r11, r8\n\t"                            \
    STORE                                             \
    "b 0b\n\t"                                        \
    VMCU_SPECIAL("r4", CONST)

/* Each runs the channels from a->tp on until a tagged word that is not a constant channel, and returns
 * that word's address. Four pixels: 13 instructions per 16 MACs. */
typedef const int32_t *(*block_fn)(const block_args_t *);

__attribute__((naked, noinline)) static const int32_t *block4_even(const block_args_t *a __attribute__((unused))) {
    __asm__(VMCU_BLOCK_EVEN(VMCU_GROUP4("r12", "r12", "r12", "r12"), VMCU_GROUP4_ACC, VMCU_STORE4, VMCU_CONST4));
}
__attribute__((naked, noinline)) static const int32_t *block4_any(const block_args_t *a __attribute__((unused))) {
    __asm__(VMCU_BLOCK_ANY("mov r5, r4\n\tmov r6, r4\n\tmov r7, r4\n\t", VMCU_GROUP4_ACC, VMCU_STORE4,
                           VMCU_CONST4));
}
__attribute__((naked, noinline)) static const int32_t *block2_even(const block_args_t *a __attribute__((unused))) {
    __asm__(VMCU_BLOCK_EVEN(VMCU_GROUP2("r12", "r12"), VMCU_GROUP2_ACC, VMCU_STORE2, VMCU_CONST2));
}
__attribute__((naked, noinline)) static const int32_t *block2_any(const block_args_t *a __attribute__((unused))) {
    __asm__(VMCU_BLOCK_ANY("mov r5, r4\n\t", VMCU_GROUP2_ACC, VMCU_STORE2, VMCU_CONST2));
}

/* Two pixels by two channels, for columns too long for four pixels (k % 8 == 0): r0/r1 a pixel's column
 * words, r2-r5 the unpacked weights of rows j (r11) and j + 1 (r12), r6/r7 pixel 0's accumulators of
 * channels j, j + 1 and r8/r9 pixel 1's. 16 instructions per 16 MACs, reusing both the weights and the
 * column words (fewer cycles than 2x1). Pairs whose words are both constant tags are stored here; any
 * other tagged pair returns the address of its first word. */
#define VMCU_GROUP22                                  \
    "ldr r3, [r11], #4\n\t"                           \
    "ldr r5, [r12], #4\n\t"                           \
    "ldrd r0, r1, [r10], #8\n\t"                      \
    "sxtb16 r2, r3\n\t"                               \
    "sxtb16 r3, r3, ror #8\n\t"                       \
    "sxtb16 r4, r5\n\t"                               \
    "sxtb16 r5, r5, ror #8\n\t"                       \
    "smlad r6, r0, r2, r6\n\t"                        \
    "smlad r6, r1, r3, r6\n\t"                        \
    "smlad r7, r0, r4, r7\n\t"                        \
    "smlad r7, r1, r5, r7\n\t"                        \
    "ldrd r0, r1, [r10], #8\n\t"                      \
    "smlad r8, r0, r2, r8\n\t"                        \
    "smlad r8, r1, r3, r8\n\t"                        \
    "smlad r9, r0, r4, r9\n\t"                        \
    "smlad r9, r1, r5, r9\n\t"

/* m (r0), c (r1), e1 (r2) of the channel whose multiplier is at lr + dm + OFF. */
#define VMCU_CONSTANTS22(OFF)                         \
    "ldr r0, [sp, #36]\n\t"                           \
    "add r0, r0, lr\n\t"                              \
    "ldr r0, [r0, #" OFF "]\n\t"                      \
    "ldr r2, [sp, #40]\n\t"                           \
    "add r2, r2, lr\n\t"                              \
    "ldr r2, [r2, #" OFF "]\n\t"                      \
    "mvn r2, r2\n\t"                                  \
    "ldr r1, [sp, #44]\n\t"                           \
    "lsl r1, r1, r2\n\t"

__attribute__((naked, noinline)) static const int32_t *block22(const block_args_t *a __attribute__((unused))) {
    __asm__(VMCU_ENTER
            "ldr r12, [sp, #32]\n\t"
            "add r12, r11, r12\n\t"
            "0:\n\t"
            "ldrd r6, r7, [lr], #8\n\t"
            "orr r0, r6, r7\n\t"
            "lsls r0, r0, #31\n\t"
            "bne 3f\n\t"
            "mov r8, r6\n\t"
            "mov r9, r7\n\t"
            "ldr r10, [sp, #4]\n\t"
            "1:\n\t" VMCU_GROUP22 VMCU_GROUP22
            "ldr r0, [sp, #8]\n\t"
            "cmp r10, r0\n\t"
            "bne 1b\n\t"
            "ldr r3, [sp, #16]\n\t"
            "ldr r10, [sp, #20]\n\t"
            VMCU_CONSTANTS22("-4")
            VMCU_REQUANT("r4", "r6", "r0", "r1", "r2")
            "strb r4, [r3]\n\t"
            VMCU_REQUANT("r4", "r8", "r0", "r1", "r2")
            "strb r4, [r3, r10]\n\t"
            VMCU_CONSTANTS22("0")
            VMCU_REQUANT("r4", "r7", "r0", "r1", "r2")
            "strb r4, [r3, #1]\n\t"
            VMCU_REQUANT("r4", "r9", "r0", "r1", "r2")
            "add r5, r3, r10\n\t"
            "strb r4, [r5, #1]\n\t"
            "add r3, r3, #2\n\t"
            "str r3, [sp, #16]\n\t"
            "mov r11, r12\n\t"
            "ldr r0, [sp, #32]\n\t"
            "add r12, r12, r0\n\t"
            "b 0b\n\t"
            "3:\n\t"
            "lsls r0, r6, #31\n\t"
            "beq 4f\n\t"
            "lsls r0, r7, #31\n\t"
            "beq 4f\n\t"
            "asr r8, r6, #1\n\t"
            "ssat r0, #8, r8\n\t"
            "cmp r0, r8\n\t"
            "bne 4f\n\t"
            "asr r9, r7, #1\n\t"
            "ssat r0, #8, r9\n\t"
            "cmp r0, r9\n\t"
            "bne 4f\n\t"
            "ldr r3, [sp, #16]\n\t"
            "ldr r4, [sp, #20]\n\t"
            "strb r8, [r3]\n\t"
            "strb r8, [r3, r4]\n\t"
            "strb r9, [r3, #1]\n\t"
            "add r10, r3, r4\n\t"
            "strb r9, [r10, #1]\n\t"
            "add r3, r3, #2\n\t"
            "str r3, [sp, #16]\n\t"
            "ldr r0, [sp, #32]\n\t"
            "add r11, r11, r0, lsl #1\n\t"
            "add r12, r12, r0, lsl #1\n\t"
            "b 0b\n\t"
            "4:\n\t"
            "sub r0, lr, #8\n\t"
            "add sp, sp, #48\n\t"
            "pop {r4-r11, pc}\n\t");
}

#undef VMCU_CONSTANTS22
#undef VMCU_GROUP22
#undef VMCU_BLOCK_ANY
#undef VMCU_BLOCK_EVEN
#undef VMCU_ENTER
#undef VMCU_SPECIAL
#undef VMCU_CONST2
#undef VMCU_CONST4
#undef VMCU_STORE2
#undef VMCU_STORE4
#undef VMCU_CONSTANTS
#undef VMCU_GROUP2_ACC
#undef VMCU_GROUP4_ACC
#undef VMCU_GROUP2
#undef VMCU_GROUP4

/* The exact dot product of weight row `w` (k bytes) with column slot `slot` (its values are doubled). */
static int32_t column_dot(const column_t *c, int32_t slot, const int8_t *w) {
    int32_t acc = 0;
    for (int32_t i = 0; i < c->k; ++i) {
        const uint32_t word = c->col[2 * ((i / 4) * c->px + slot) + (i & 1)];
        const int16_t x2 = (int16_t)(i & 2 ? word >> 16 : word);
        acc += (x2 / 2) * w[i];
    }
    return acc;
}
/* Pointwise convolutions with Cin 8 or 16 and stride 1 keep one input pixel in registers (4 or 8 words
 * of int16 pairs) and run over per-channel records built once per call: the channel's weights unpacked
 * and doubled (2w fits int16, so the accumulator holds 2 * acc as VMCU_REQUANT wants), then b2, m, c, e1.
 * A constant channel is a record of zero weights, b2 = m = e1 = 0 and c = 2v + 1. Channels run in
 * unrolled groups until the record whose e1 carries VMCU_LAST (ASR by register reads only its low
 * byte). Cin 8: one LDM of the whole record, 10 instructions per channel; Cin 16: 19. */
typedef struct {
    const uint32_t *records;  /* #0 */
    const int8_t *in;         /* #4: the next input pixel */
    const int8_t *in_end;     /* #8 */
    int8_t *out;              /* #12 */
    int16x2_t offset2;        /* #16 */
} pixel_args_t;

#define VMCU_LAST 256

#define VMCU_PIXEL_ENTER                              \
    "push {r4-r11, lr}\n\t"                           \
    "ldm r0, {r1-r5}\n\t"                             \
    "push {r1-r5}\n\t"

#define VMCU_PIXEL_EXIT                               \
    "add sp, sp, #20\n\t"                             \
    "pop {r4-r11, pc}\n\t"

/* r0-r3 the pixel, r12 the records, lr the output; record: w02 w13 w46 w57 b2 m c e1. */
#define VMCU_CH8                                      \
    "ldm r12!, {r4-r11}\n\t"                          \
    "smlad r8, r0, r4, r8\n\t"                        \
    "smlad r8, r1, r5, r8\n\t"                        \
    "smlad r8, r2, r6, r8\n\t"                        \
    "smlad r8, r3, r7, r8\n\t"                        \
    VMCU_REQUANT("r4", "r8", "r9", "r10", "r11")      \
    "strb r4, [lr], #1\n\t"

#define VMCU_PW8(CHANNELS)                            \
    VMCU_PIXEL_ENTER                                  \
    "mov lr, r4\n\t"                                  \
    "1:\n\t"                                          \
    "ldr r4, [sp, #4]\n\t"                            \
    "ldr r5, [sp, #16]\n\t"                           \
    "ldr r2, [r4, #4]\n\t"                            \
    "ldr r0, [r4], #8\n\t"                            \
    "str r4, [sp, #4]\n\t"                            \
    "sxtab16 r1, r5, r0, ror #8\n\t"                  \
    "sxtab16 r0, r5, r0\n\t"                          \
    "sxtab16 r3, r5, r2, ror #8\n\t"                  \
    "sxtab16 r2, r5, r2\n\t"                          \
    "ldr r12, [sp]\n\t"                               \
    "2:\n\t" CHANNELS                                 \
    "tst r11, #256\n\t"                               \
    "beq 2b\n\t"                                      \
    "ldr r4, [sp, #4]\n\t"                            \
    "ldr r5, [sp, #8]\n\t"                            \
    "cmp r4, r5\n\t"                                  \
    "bne 1b\n\t"                                      \
    VMCU_PIXEL_EXIT

/* r0-r7 the pixel, r11 the records, r12 the output; record: w02 w13 b2 w46 w57 .. m c e1. */
#define VMCU_CH16                                     \
    "ldm r11!, {r8, r9, r10}\n\t"                     \
    "smlad r10, r0, r8, r10\n\t"                      \
    "smlad r10, r1, r9, r10\n\t"                      \
    "ldrd r8, r9, [r11], #8\n\t"                      \
    "smlad r10, r2, r8, r10\n\t"                      \
    "smlad r10, r3, r9, r10\n\t"                      \
    "ldrd r8, r9, [r11], #8\n\t"                      \
    "smlad r10, r4, r8, r10\n\t"                      \
    "smlad r10, r5, r9, r10\n\t"                      \
    "ldrd r8, r9, [r11], #8\n\t"                      \
    "smlad r10, r6, r8, r10\n\t"                      \
    "smlad r10, r7, r9, r10\n\t"                      \
    "ldrd r8, r9, [r11], #8\n\t"                      \
    "smmlar lr, r10, r8, r9\n\t"                      \
    "add lr, lr, r10, asr #31\n\t"                    \
    "ldr r8, [r11], #4\n\t"                           \
    "asr lr, lr, r8\n\t"                              \
    "ssat lr, #8, lr, asr #1\n\t"                     \
    "strb lr, [r12], #1\n\t"

#define VMCU_PW16(CHANNELS)                           \
    VMCU_PIXEL_ENTER                                  \
    "mov r12, r4\n\t"                                 \
    "1:\n\t"                                          \
    "ldr lr, [sp, #4]\n\t"                            \
    "ldr r8, [sp, #16]\n\t"                           \
    "ldr r0, [lr], #4\n\t"                            \
    "ldr r2, [lr], #4\n\t"                            \
    "ldr r4, [lr], #4\n\t"                            \
    "ldr r6, [lr], #4\n\t"                            \
    "str lr, [sp, #4]\n\t"                            \
    "sxtab16 r1, r8, r0, ror #8\n\t"                  \
    "sxtab16 r0, r8, r0\n\t"                          \
    "sxtab16 r3, r8, r2, ror #8\n\t"                  \
    "sxtab16 r2, r8, r2\n\t"                          \
    "sxtab16 r5, r8, r4, ror #8\n\t"                  \
    "sxtab16 r4, r8, r4\n\t"                          \
    "sxtab16 r7, r8, r6, ror #8\n\t"                  \
    "sxtab16 r6, r8, r6\n\t"                          \
    "ldr r11, [sp]\n\t"                               \
    "2:\n\t" CHANNELS                                 \
    "tst r8, #256\n\t"                                \
    "beq 2b\n\t"                                      \
    "ldr lr, [sp, #4]\n\t"                            \
    "ldr r8, [sp, #8]\n\t"                            \
    "cmp lr, r8\n\t"                                  \
    "bne 1b\n\t"                                      \
    VMCU_PIXEL_EXIT

typedef void (*pixel_fn)(const pixel_args_t *);

__attribute__((naked, noinline)) static void pw8_x2(const pixel_args_t *a __attribute__((unused))) {
    __asm__(VMCU_PW8(VMCU_CH8 VMCU_CH8));
}
__attribute__((naked, noinline)) static void pw8_x4(const pixel_args_t *a __attribute__((unused))) {
    __asm__(VMCU_PW8(VMCU_CH8 VMCU_CH8 VMCU_CH8 VMCU_CH8));
}
__attribute__((naked, noinline)) static void pw16_x2(const pixel_args_t *a __attribute__((unused))) {
    __asm__(VMCU_PW16(VMCU_CH16 VMCU_CH16));
}
__attribute__((naked, noinline)) static void pw16_x4(const pixel_args_t *a __attribute__((unused))) {
    __asm__(VMCU_PW16(VMCU_CH16 VMCU_CH16 VMCU_CH16 VMCU_CH16));
}

#undef VMCU_PW16
#undef VMCU_CH16
#undef VMCU_PW8
#undef VMCU_CH8
#undef VMCU_PIXEL_EXIT
#undef VMCU_PIXEL_ENTER

/* The table words of channels [0, n) (weight rows of k bytes), then two end tags. */
static void chan_table(int32_t *t, const vmcu_requant_t *r, const int32_t *bias, int32_t n, const int8_t *filter,
                       int32_t k, int32_t input_offset) {
    const vmcu_chan_ctx_t x = vmcu_chan_ctx(r, k, input_offset);
    for (int32_t ch = 0; ch < n; ++ch) {
        t[ch] = vmcu_chan_word(&x, ch, bias ? bias[ch] : 0, filter + ch * k, k, 1);
    }
    t[n] = t[n + 1] = VMCU_TAG_EXACT;  /* channel pairs read two */
}

/* (2 * w[a], 2 * w[b]) as an int16 pair. */
static inline uint32_t doubled_pair(const int8_t *w, int32_t a, int32_t b) {
    return (uint16_t)(2 * w[a]) | (uint32_t)(uint16_t)(2 * w[b]) << 16;
}

/* Expands the channel table (one word a channel, at `records`) in place into pixel-kernel records; 0
 * when a channel needs the exact path. Word order of a record: see VMCU_CH8 / VMCU_CH16. */
static int build_records(uint32_t *records, const vmcu_requant_t *r, const int8_t *filter, int32_t k,
                         int32_t out_c) {
    const int32_t words = k / 2 + 4;
    for (int32_t ch = out_c - 1; ch >= 0; --ch) {  /* back to front: record ch never overlaps words < ch */
        const int32_t b2 = (int32_t)records[ch];
        uint32_t *rec = records + ch * words;
        const int8_t *w = filter + ch * k;
        if (b2 & 1) {
            if (b2 == VMCU_TAG_EXACT) {
                return 0;
            }
            memset(rec, 0, sizeof(uint32_t) * (size_t)words);
            rec[words - 2] = (uint32_t)b2;  /* c = 2v + 1 */
            continue;
        }
        uint32_t wv[8];
        for (int32_t g = 0; g < k / 4; ++g) {
            wv[2 * g] = doubled_pair(w, 4 * g, 4 * g + 2);
            wv[2 * g + 1] = doubled_pair(w, 4 * g + 1, 4 * g + 3);
        }
        if (k == 8) {
            memcpy(rec, wv, 4 * sizeof *wv);
            rec[4] = (uint32_t)b2;
        } else {
            rec[0] = wv[0];
            rec[1] = wv[1];
            rec[2] = (uint32_t)b2;
            memcpy(rec + 3, wv + 2, 6 * sizeof *wv);
        }
        vmcu_chan_constants(r, ch, rec + words - 3);
    }
    records[out_c * words - 1] |= VMCU_LAST;
    return 1;
}

/* Channels [j0, j1) of a two-pixel block one at a time (block2_even), the exact path where the table
 * says so; an end tag stands at j1 meanwhile. */
static void run_channels(const block_args_t *args, const column_t *c, const vmcu_requant_t *r, int32_t *table,
                         int32_t j0, int32_t j1, const int8_t *filter, const int32_t *bias, int8_t *out0) {
    const int32_t k = c->k, saved = table[j1];
    block_args_t a = *args;
    table[j1] = VMCU_TAG_EXACT;
    for (int32_t j = j0; j < j1; ++j) {
        a.tp = table + j;
        a.wp = filter + j * k;
        a.op = out0 + j;
        j = (int32_t)(block2_even(&a) - table);
        if (j == j1) {
            break;
        }
        for (int32_t s = 0; s < 2; ++s) {
            out0[s * a.stride + j] = vmcu_requant_exact(r, (bias ? bias[j] : 0) + column_dot(c, s, filter + j * k), j);
        }
    }
    table[j1] = saved;
}

/* The general path for output pixels [0, pixels), c->px at a time (see the top of the file). */
static void conv_blocks(const vmcu_conv_2d_params_t *p, const column_t *c, const vmcu_requant_t *r,
                        int32_t *table, const int8_t *last_row, const int8_t *input, const int8_t *filter,
                        const int32_t *bias, int8_t *output) {
    const int32_t out_h = p->output_shape[1], out_w = p->output_shape[2], out_c = p->output_shape[3];
    const int32_t pixels = p->output_shape[0] * out_h * out_w, k = c->k, px_n = c->px;
    const int32_t split = k % 4 != 0, stop = split ? out_c - 1 : out_c;  /* the first call's end tag */
    const int32_t contiguous = c->pointwise && !c->staged && p->stride_h == 1 && p->stride_w == 1;
    block_args_t a;
    a.col = c->col;
    a.xend = c->col + 2 * px_n * c->groups;
    a.stride = out_c;
    a.skip = k - 4 * c->groups;
    a.odd_groups = c->groups & 1;
    a.k = k;
    a.dm = (int32_t)((uintptr_t)r->multiplier - (uintptr_t)table - 4u);
    a.ds = (int32_t)((uintptr_t)r->shift - (uintptr_t)table - 4u);
    a.odd = 2 * r->zero_point + 1;
    const block_fn block = px_n == 4 ? (k % 8 == 0 ? block4_even : block4_any)
                                     : (k % 8 == 0 ? block2_even : block2_any);
    const int pairs = px_n == 2 && k % 8 == 0;  /* two channels at a time, block2_even for the rest */
    const int32_t image_bytes = c->in_h * c->in_w * c->in_c;
    const int8_t *image = input;
    int32_t oy = 0, ox = 0;
    for (int32_t px = 0; px < pixels; px += px_n) {
        const int32_t n = vmcu_min_i32(px_n, pixels - px);
        const int32_t first = pixels < px_n ? 0 : px_n - n;  /* slots kept from the previous block */
        for (int32_t g = 0; g < c->groups && first > 0; ++g) {
            uint32_t *col = c->col + 2 * px_n * g;
            memmove(col, col + 2 * n, (size_t)(8 * first));
        }
        if (contiguous) {
            convert_pixels(c, first, input + px * c->in_c, n);
        } else {
            for (int32_t slot = first; slot < first + n; ++slot) {
                fill(c, slot, image, oy * p->stride_h - p->pad_top, ox * p->stride_w - p->pad_left);
                if (++ox == out_w) {
                    ox = 0;
                    if (++oy == out_h) {
                        oy = 0;
                        image += image_bytes;
                    }
                }
            }
        }
        int8_t *const out0 = output + (px - first) * out_c;
        if (pixels < px_n) {  /* too few pixels to fill a block */
            for (int32_t s = 0; s < n; ++s) {
                for (int32_t j = 0; j < out_c; ++j) {
                    const int32_t acc = (bias ? bias[j] : 0) + column_dot(c, s, filter + j * k);
                    out0[s * out_c + j] = vmcu_requant_exact(r, acc, j);
                }
            }
            continue;
        }
        if (pairs) {
            a.tp = table;
            a.wp = filter;
            a.op = out0;
            for (;;) {
                const int32_t j = (int32_t)(block22(&a) - table);
                if (j >= (out_c & ~1)) {
                    break;
                }
                run_channels(&a, c, r, table, j, j + 2, filter, bias, out0);
                a.tp = table + j + 2;
                a.wp = filter + (j + 2) * k;
                a.op = out0 + j + 2;
            }
            if (out_c & 1) {
                run_channels(&a, c, r, table, out_c - 1, out_c, filter, bias, out0);
            }
            continue;
        }
        a.tp = table;
        a.wp = filter;
        a.op = out0;
        for (;;) {
            const int32_t *t = block(&a);
            const int32_t j = (int32_t)(t - table);
            if (j == stop) {
                break;
            }
            for (int32_t s = 0; s < px_n; ++s) {
                const int32_t acc = (bias ? bias[j] : 0) + column_dot(c, s, filter + j * k);
                out0[s * out_c + j] = vmcu_requant_exact(r, acc, j);
            }
            a.tp = t + 1;
            a.wp = filter + (j + 1) * k;
            a.op = out0 + j + 1;
        }
        if (split) {  /* the last channel: its word sits after the end tag, its weights in last_row */
            block_args_t last = a;
            last.tp = table + out_c;
            last.wp = last_row;
            last.op = out0 + out_c - 1;
            last.dm -= 4;  /* the word is one past the channel's index */
            last.ds -= 4;
            if (block(&last) == table + out_c) {
                for (int32_t s = 0; s < px_n; ++s) {
                    const int32_t acc = (bias ? bias[out_c - 1] : 0) + column_dot(c, s, last_row);
                    out0[s * out_c + out_c - 1] = vmcu_requant_exact(r, acc, out_c - 1);
                }
            }
        }
    }
}

void vmcu_conv_2d_s8(const vmcu_conv_2d_params_t *p, const int8_t *input, const int8_t *filter,
                     const int32_t *bias, int8_t *output, int8_t *scratch) {
    const int32_t out_c = p->output_shape[3];
    const int32_t pixels = p->output_shape[0] * p->output_shape[1] * p->output_shape[2];
    column_t c;
    c.in_h = p->input_shape[1];
    c.in_w = p->input_shape[2];
    c.in_c = p->input_shape[3];
    c.filter_h = p->filter_shape[1];
    c.filter_w = p->filter_shape[2];
    c.dil_h = p->dilation_h;
    c.dil_w = p->dilation_w;
    c.input_offset = p->input_offset;
    c.k = c.filter_h * c.filter_w * c.in_c;
    c.span_h = (c.filter_h - 1) * c.dil_h + 1;
    c.span_w = (c.filter_w - 1) * c.dil_w + 1;
    c.groups = (c.k + 3) / 4;
    c.pointwise = c.filter_h == 1 && c.filter_w == 1 && p->pad_top == 0 && p->pad_left == 0;
    c.staged = c.in_c % 4 != 0;
    const int32_t split = c.k % 4 != 0;  /* the last channel reads its weights from last_row */
    const int32_t rest = (c.staged ? 4 * c.groups : 0) + (split ? 4 * c.groups : 0) + 4 * (out_c + 2);
    c.px = 32 * c.groups + rest <= VMCU_SCRATCH_MAX ? 4 : 2;  /* two pixels when four take too much */
    c.offset2 = vmcu_dup16(p->input_offset);
    const vmcu_requant_t r = vmcu_requant_init(p->output_multiplier, p->output_shift, p->output_offset,
                                               p->activation_min, p->activation_max);
    const int32_t *const b = p->has_bias ? bias : NULL;
    if (c.pointwise && p->stride_h == 1 && p->stride_w == 1 && (c.k == 8 || c.k == 16) && out_c % 2 == 0 &&
        (2 * c.k + 16) * out_c <= VMCU_SCRATCH_MAX) {
        uint32_t *const records = (uint32_t *)(void *)scratch;
        chan_table((int32_t *)records, &r, b, out_c, filter, c.k, p->input_offset);
        if (build_records(records, &r, filter, c.k, out_c)) {
            const pixel_args_t a = {records, input, input + pixels * c.k, output, c.offset2};
            const pixel_fn run = c.k == 8 ? (out_c % 4 ? pw8_x2 : pw8_x4) : (out_c % 4 ? pw16_x2 : pw16_x4);
            run(&a);
            if (!r.full_range) {
                for (int32_t i = 0; i < pixels * out_c; ++i) {
                    output[i] = (int8_t)vmcu_clamp_i32(output[i], r.act_min, r.act_max);
                }
            }
            return;
        }
    }
    c.col = (uint32_t *)(void *)scratch;
    c.stage = scratch + 8 * c.px * c.groups;
    int8_t *const last_row = c.stage + (c.staged ? 4 * c.groups : 0);
    int32_t *const table = (int32_t *)(void *)(last_row + (split ? 4 * c.groups : 0));
    chan_table(table, &r, b, out_c, filter, c.k, p->input_offset);
    if (split) {
        table[out_c + 1] = VMCU_TAG_EXACT;  /* the end tag */
        table[out_c] = table[out_c - 1];    /* the last channel, run on its own */
        table[out_c - 1] = VMCU_TAG_EXACT;
        memset(last_row, 0, (size_t)(4 * c.groups));
        memcpy(last_row, filter + (out_c - 1) * c.k, (size_t)c.k);
    }
    conv_blocks(p, &c, &r, table, last_row, input, filter, b, output);
    if (!r.full_range) {
        for (int32_t i = 0; i < pixels * out_c; ++i) {
            output[i] = (int8_t)vmcu_clamp_i32(output[i], r.act_min, r.act_max);
        }
    }
}
