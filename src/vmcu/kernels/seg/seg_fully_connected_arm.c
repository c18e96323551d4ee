/* FULLY_CONNECTED int8 on the circular pool for Cortex-M with the DSP extension (same results as
 * seg_fully_connected.c).
 *
 * Rows in order: each maximal run of rows whose input and output straddle neither tensor's wrap is one call
 * of the tensor kernel (arm/fully_connected.c, as tuned) on the flat rows. A row that straddles a wrap
 * runs rows_seg, a copy of that kernel's loops: the input row converted to int16 in scratch (group by
 * group, each resolved, when it straddles), SMLAD dot products, the output row requantized in place or in
 * `stage` when it straddles the wrap and then stored in two parts. The row is read before any of its
 * outputs is stored.
 */
#include "vmcu_arm.h"
#include "vmcu_seg.h"

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

/* Converts input row `row` (depth = 4 * groups + tail bytes) to int16 in col and col_tail. */
static void convert_row(const vmcu_seg_src_t *in, int32_t row, int32_t groups, int32_t tail, int32_t input_offset,
                        uint32_t *col, int16_t *col_tail) {
    const int16x2_t x_offset = vmcu_dup16(input_offset);
    if (!vmcu_seg_straddles(in->split, row, 4 * groups + tail)) {
        const int8_t *x = vmcu_seg_at(in, row);
        for (int32_t g = 0; g < groups; ++g) {
            const uint32_t v = vmcu_load32(x + 4 * g);
            col[2 * g] = (uint32_t)__sxtab16(x_offset, (int8x4_t)v);
            col[2 * g + 1] = (uint32_t)vmcu_sxtab16_ror8(x_offset, v);
        }
        for (int32_t j = 0; j < tail; ++j) {
            col_tail[j] = (int16_t)(x[4 * groups + j] + input_offset);
        }
        return;
    }
    for (int32_t g = 0; g < groups; ++g) {
        int8_t bounce[4];
        const uint32_t v = vmcu_load32(vmcu_seg_span(in, row + 4 * g, 4, bounce));
        col[2 * g] = (uint32_t)__sxtab16(x_offset, (int8x4_t)v);
        col[2 * g + 1] = (uint32_t)vmcu_sxtab16_ror8(x_offset, v);
    }
    for (int32_t j = 0; j < tail; ++j) {
        col_tail[j] = (int16_t)(*vmcu_seg_at(in, row + 4 * groups + j) + input_offset);
    }
}

/* Rows [b0, b1) with the copied loops: each input row converted once (group by group, each resolved, when
 * it straddles the wrap), each output row requantized in place or, when it straddles the wrap, in `stage`. */
static void rows_seg(const vmcu_fully_connected_params_t *p, const vmcu_seg_src_t *input, const int8_t *filter,
                     const int32_t *bias, const vmcu_seg_dst_t *output, int8_t *stage, int8_t *scratch, int32_t b0,
                     int32_t b1) {
    const int32_t depth = p->accum_depth, groups = depth / 4, tail = depth % 4, out_depth = p->output_depth;
    uint32_t *col = (uint32_t *)(void *)scratch;
    int16_t *col_tail = (int16_t *)(col + 2 * groups);
    int32_t *acc = (int32_t *)(void *)(scratch + 8 * groups + (2 * tail + 3) / 4 * 4);
    const int16x2_t w_offset = vmcu_dup16(p->weights_offset);
    const vmcu_requant_t r = vmcu_requant_init(p->output_multiplier, p->output_shift, p->output_offset,
                                               p->activation_min, p->activation_max);
    for (int32_t b = b0; b < b1; ++b) {
        convert_row(input, b * depth, groups, tail, p->input_offset, col, col_tail);
        int8_t *const out = vmcu_seg_unit(output, b * out_depth, out_depth, stage);
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
            vmcu_requant_block(&r, acc, c0, n, out + c0, NULL);
        }
        vmcu_seg_commit(output, b * out_depth, out_depth, out, stage);
    }
}

void vmcu_seg_fully_connected_s8(const vmcu_fully_connected_params_t *p, vmcu_seg_src_t input,
                                 const int8_t *filter, const int32_t *bias, vmcu_seg_dst_t output,
                                 int8_t *stage, int8_t *scratch) {
    if (vmcu_seg_contiguous(input.split, p->batches * p->accum_depth) &&
        vmcu_seg_contiguous(output.split, p->batches * p->output_depth)) {
        vmcu_fully_connected_s8(p, input.head, filter, bias, output.head, scratch);  /* nothing wraps */
        return;
    }
    /* rows in order: runs of rows that straddle neither wrap to the tensor kernel, the others to rows_seg */
    const int32_t depth = p->accum_depth, out_depth = p->output_depth;
    vmcu_fully_connected_params_t q = *p;
    for (int32_t b = 0; b < p->batches;) {
        const int32_t flat = vmcu_min_i32(vmcu_seg_run(input.split, b * depth) / depth,
                                          vmcu_seg_run(output.split, b * out_depth) / out_depth);
        const int32_t k = vmcu_min_i32(p->batches - b, flat);
        if (k == 0) {
            rows_seg(p, &input, filter, bias, &output, stage, scratch, b, b + 1);
            b += 1;
            continue;
        }
        q.batches = k;
        vmcu_fully_connected_s8(&q, vmcu_seg_at(&input, b * depth), filter, bias,
                                vmcu_seg_dst_at(&output, b * out_depth), scratch);
        b += k;
    }
}
