/* The column and block loops of the DSP CONV_2D kernel, shared by arm/conv_2d.c (which gathers any
 * receptive field into the column) and seg/fused_ib_arm.c (which runs the 1x1 expand and project of an
 * inverted bottleneck on pixels it converts itself): the int16 column layout, the naked-asm blocks of four
 * or two pixels with their in-register requantization (VMCU_REQUANT), the channel table with its constant
 * and exact-path tags, and the one-pixel kernels for Cin 8 or 16 (arm/conv_2d.c describes them all).
 * conv_table and conv_run_init set a call up once; conv_block then runs every channel of one converted
 * block of pixels. Include after vmcu_arm.h. */
#ifndef VMCU_CONV_BLOCKS_H
#define VMCU_CONV_BLOCKS_H

/* The int16 column of c->px pixels and what arm/conv_2d.c's gather needs of the conv's geometry. */
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

/* Converts n consecutive input pixels (pointwise, stride 1) into slots slot0 .. slot0 + n - 1. Inlined, like
 * conv_block, into every block loop: a shared out-of-line copy made arm/conv_2d.c's flat loop slower. */
static inline __attribute__((always_inline)) void convert_pixels(const column_t *c, int32_t slot0,
                                                                 const int8_t *src, int32_t n) {
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

/* The channel table of a conv with weight rows of c->k bytes (chan_table); when k % 4 != 0 the last
 * channel's word moves after the end tag and its row to last_row (4 * groups bytes, zero-padded), so that
 * no block reads past the filter's end. */
static void conv_table(const column_t *c, int32_t *table, int8_t *last_row, const vmcu_requant_t *r,
                       const int32_t *bias, int32_t out_c, const int8_t *filter, int32_t input_offset) {
    chan_table(table, r, bias, out_c, filter, c->k, input_offset);
    if (c->k % 4 != 0) {
        table[out_c + 1] = VMCU_TAG_EXACT;  /* the end tag */
        table[out_c] = table[out_c - 1];    /* the last channel, run on its own */
        table[out_c - 1] = VMCU_TAG_EXACT;
        memset(last_row, 0, (size_t)(4 * c->groups));
        memcpy(last_row, filter + (out_c - 1) * c->k, (size_t)c->k);
    }
}

/* What conv_block needs besides the converted column and the block asm's arguments (kept apart, so that
 * the asm, which takes the arguments' address, leaves these in registers): the loop for k and c->px, the
 * table and the conv's weights. */
typedef struct {
    block_fn block;
    const column_t *c;
    const vmcu_requant_t *r;
    int32_t *table;
    const int8_t *filter, *last_row;
    const int32_t *bias;
    int32_t out_c;
    int32_t stop;   /* the first call's end tag */
    int32_t pairs;  /* two channels at a time, block2_even for the rest */
} conv_run_t;

/* Sets up a run and the block asm's arguments (tp, wp and op are set per block; a->stride, the output
 * bytes from one pixel to the next, is out_c). */
static void conv_run_init(conv_run_t *run, block_args_t *a, const column_t *c, const vmcu_requant_t *r,
                          int32_t *table, const int8_t *last_row, const int8_t *filter, const int32_t *bias,
                          int32_t out_c) {
    const int32_t k = c->k, px_n = c->px;
    a->col = c->col;
    a->xend = c->col + 2 * px_n * c->groups;
    a->stride = out_c;
    a->skip = k - 4 * c->groups;
    a->odd_groups = c->groups & 1;
    a->k = k;
    a->dm = (int32_t)((uintptr_t)r->multiplier - (uintptr_t)table - 4u);
    a->ds = (int32_t)((uintptr_t)r->shift - (uintptr_t)table - 4u);
    a->odd = 2 * r->zero_point + 1;
    run->block = px_n == 4 ? (k % 8 == 0 ? block4_even : block4_any) : (k % 8 == 0 ? block2_even : block2_any);
    run->c = c;
    run->r = r;
    run->table = table;
    run->filter = filter;
    run->last_row = last_row;
    run->bias = bias;
    run->out_c = out_c;
    run->stop = k % 4 != 0 ? out_c - 1 : out_c;
    run->pairs = px_n == 2 && k % 8 == 0;
}

/* Every channel of the c->px pixels in the column, pixel s to out0 + s * a->stride (any distance: a pair's
 * two pixels may go to unrelated buffers), before clamping to the activation range. */
static inline __attribute__((always_inline)) void conv_block(const conv_run_t *run, block_args_t *a,
                                                             int8_t *out0) {
    const column_t *c = run->c;
    const vmcu_requant_t *r = run->r;
    int32_t *const table = run->table;
    const int8_t *const filter = run->filter;
    const int32_t *const bias = run->bias;
    const int32_t k = c->k, out_c = run->out_c, px_n = c->px, stride = a->stride;
    if (run->pairs) {
        a->tp = table;
        a->wp = filter;
        a->op = out0;
        for (;;) {
            const int32_t j = (int32_t)(block22(a) - table);
            if (j >= (out_c & ~1)) {
                break;
            }
            run_channels(a, c, r, table, j, j + 2, filter, bias, out0);
            a->tp = table + j + 2;
            a->wp = filter + (j + 2) * k;
            a->op = out0 + j + 2;
        }
        if (out_c & 1) {
            run_channels(a, c, r, table, out_c - 1, out_c, filter, bias, out0);
        }
        return;
    }
    a->tp = table;
    a->wp = filter;
    a->op = out0;
    for (;;) {
        const int32_t *t = run->block(a);
        const int32_t j = (int32_t)(t - table);
        if (j == run->stop) {
            break;
        }
        for (int32_t s = 0; s < px_n; ++s) {
            const int32_t acc = (bias ? bias[j] : 0) + column_dot(c, s, filter + j * k);
            out0[s * stride + j] = vmcu_requant_exact(r, acc, j);
        }
        a->tp = t + 1;
        a->wp = filter + (j + 1) * k;
        a->op = out0 + j + 1;
    }
    if (k % 4 != 0) {  /* the last channel: its word sits after the end tag, its weights in last_row */
        block_args_t last = *a;
        last.tp = table + out_c;
        last.wp = run->last_row;
        last.op = out0 + out_c - 1;
        last.dm -= 4;  /* the word is one past the channel's index */
        last.ds -= 4;
        if (run->block(&last) == table + out_c) {
            for (int32_t s = 0; s < px_n; ++s) {
                const int32_t acc = (bias ? bias[out_c - 1] : 0) + column_dot(c, s, run->last_row);
                out0[s * stride + out_c - 1] = vmcu_requant_exact(r, acc, out_c - 1);
            }
        }
    }
}

#endif /* VMCU_CONV_BLOCKS_H */
