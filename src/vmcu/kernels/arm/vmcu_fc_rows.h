/* The SMLAD row loops of the DSP fully-connected kernel, shared by arm/fully_connected.c and
 * seg/seg_fully_connected_arm.c (which runs them on rows that straddle the pool's wrap): four weight rows
 * at a time in naked asm (21 instructions per 16 MACs), two at a time in C, and the chunked loop over all
 * output channels of one row (fc_outputs). Include after vmcu_arm.h. */
#ifndef VMCU_FC_ROWS_H
#define VMCU_FC_ROWS_H

#include "vmcu_kernels.h"

/* Arguments of rows4, copied to its stack frame: the offsets below are fixed. */
typedef struct {
    const uint32_t *col;   /* #0: the converted input row */
    const uint32_t *xend;  /* #4: col + 2 * groups */
    const int8_t *w;       /* #8: the first of the rows */
    int32_t depth;         /* #12: row bytes, 4 * groups */
    int32_t *acc;          /* #16: four accumulators a quad */
    int32_t *acc_end;      /* #20 */
    int16x2_t w_offset;    /* #24 */
} rows4_args_t;

/* One group of four K values for the four rows r8-r11: r4/r5 the input pair, r6/r7 a row's weights
 * unpacked with weights_offset (lr), r0-r3 += . 21 instructions per 16 MACs. */
#define VMCU_FC_ROW(ACC, W)                           \
    "ldr r7, [" W "], #4\n\t"                         \
    "sxtab16 r6, lr, r7\n\t"                          \
    "sxtab16 r7, lr, r7, ror #8\n\t"                  \
    "smlad " ACC ", r4, r6, " ACC "\n\t"              \
    "smlad " ACC ", r5, r7, " ACC "\n\t"
#define VMCU_FC_GROUP                                 \
    "ldrd r4, r5, [r12], #8\n\t"                      \
    VMCU_FC_ROW("r0", "r8")                           \
    VMCU_FC_ROW("r1", "r9")                           \
    VMCU_FC_ROW("r2", "r10")                          \
    VMCU_FC_ROW("r3", "r11")

/* The dot products of rows j .. j + 3 (consecutive, depth bytes apart) with the column, for quads of rows
 * until acc reaches acc_end; groups >= 1, any. */
__attribute__((naked, noinline)) static void rows4(const rows4_args_t *a __attribute__((unused))) {
    __asm__("push {r4-r11, lr}\n\t"
            "ldm r0, {r1-r7}\n\t"
            "push {r1-r7}\n\t"
            "mov lr, r7\n\t"
            "mov r8, r3\n\t"
            "0:\n\t"
            "ldr r4, [sp, #12]\n\t"
            "add r9, r8, r4\n\t"
            "add r10, r9, r4\n\t"
            "add r11, r10, r4\n\t"
            "ldr r12, [sp, #0]\n\t"
            "movs r0, #0\n\t"
            "movs r1, #0\n\t"
            "movs r2, #0\n\t"
            "movs r3, #0\n\t"
            "1:\n\t" VMCU_FC_GROUP
            "ldr r4, [sp, #4]\n\t"
            "cmp r12, r4\n\t"
            "bne 1b\n\t"
            "ldr r4, [sp, #16]\n\t"
            "stm r4!, {r0-r3}\n\t"
            "str r4, [sp, #16]\n\t"
            "mov r8, r11\n\t"
            "ldr r5, [sp, #20]\n\t"
            "cmp r4, r5\n\t"
            "bne 0b\n\t"
            "add sp, sp, #28\n\t"
            "pop {r4-r11, pc}\n\t");
}

#undef VMCU_FC_GROUP
#undef VMCU_FC_ROW

/* Dot products of the converted row with weight rows w0 and w1 (K = 4 * groups + tail). */
static inline void dot_2(const uint32_t *x, const int8_t *w0, const int8_t *w1, int32_t groups, int32_t tail,
                         int16x2_t w_offset, int32_t weights_offset, int32_t *s0, int32_t *s1) {
    int32_t a0 = *s0, a1 = *s1;
    for (int32_t g = 0; g < groups; ++g, x += 2, w0 += 4, w1 += 4) {
        const uint32_t u0 = vmcu_load32(w0), u1 = vmcu_load32(w1);
        a0 = __smlad((int16x2_t)x[0], __sxtab16(w_offset, (int8x4_t)u0), a0);
        a0 = __smlad((int16x2_t)x[1], vmcu_sxtab16_ror8(w_offset, u0), a0);
        a1 = __smlad((int16x2_t)x[0], __sxtab16(w_offset, (int8x4_t)u1), a1);
        a1 = __smlad((int16x2_t)x[1], vmcu_sxtab16_ror8(w_offset, u1), a1);
    }
    const int16_t *t = (const int16_t *)x;
    for (int32_t j = 0; j < tail; ++j) {
        a0 += t[j] * (w0[j] + weights_offset);
        a1 += t[j] * (w1[j] + weights_offset);
    }
    *s0 = a0;
    *s1 = a1;
}

/* One converted input row (col, its K % 4 tail after the groups) against every weight row: chunks of
 * VMCU_ACC_CHUNK output channels accumulated in acc, quads in asm when K % 4 == 0, pairs in C, then
 * requantized into out. */
static inline void fc_outputs(const vmcu_fully_connected_params_t *p, const uint32_t *col, const int8_t *filter,
                              const int32_t *bias, const vmcu_requant_t *r, int32_t *acc, int8_t *out) {
    const int32_t depth = p->accum_depth, groups = depth / 4, tail = depth % 4, out_depth = p->output_depth;
    const int16x2_t w_offset = vmcu_dup16(p->weights_offset);
    for (int32_t c0 = 0; c0 < out_depth; c0 += VMCU_ACC_CHUNK) {
        const int32_t n = vmcu_min_i32(VMCU_ACC_CHUNK, out_depth - c0);
        int32_t i = 0;
        if (tail == 0 && groups > 0 && n >= 4) {  /* quads of rows in asm, the bias added after */
            const rows4_args_t a = {col, col + 2 * groups, filter + c0 * depth, depth, acc, acc + (n & ~3),
                                    w_offset};
            rows4(&a);
            for (i = 0; i < (n & ~3) && p->has_bias; ++i) {
                acc[i] = vmcu_wrap_add(acc[i], bias[c0 + i]);
            }
            i = n & ~3;
        }
        for (; i < n; i += 2) {
            const int32_t i1 = i + 1 < n ? i + 1 : i;
            int32_t s0 = p->has_bias ? bias[c0 + i] : 0, s1 = p->has_bias ? bias[c0 + i1] : 0;
            dot_2(col, filter + (c0 + i) * depth, filter + (c0 + i1) * depth, groups, tail, w_offset,
                  p->weights_offset, &s0, &s1);
            acc[i] = s0;
            acc[i1] = s1;
        }
        vmcu_requant_block(r, acc, c0, n, out + c0, NULL);
    }
}

#endif /* VMCU_FC_ROWS_H */
