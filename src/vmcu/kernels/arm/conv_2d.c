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
 *
 * The column, block and one-pixel loops live in vmcu_conv_blocks.h, shared with seg/fused_ib_arm.c; the
 * gather of receptive fields and the walk over the image are this file's.
 */
#include "vmcu_arm.h"
#include "vmcu_conv_blocks.h"
#include "vmcu_kernels.h"

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


/* The general path for output pixels [0, pixels), c->px at a time (see the top of the file). */
static void conv_blocks(const vmcu_conv_2d_params_t *p, const column_t *c, const vmcu_requant_t *r,
                        int32_t *table, const int8_t *last_row, const int8_t *input, const int8_t *filter,
                        const int32_t *bias, int8_t *output) {
    const int32_t out_h = p->output_shape[1], out_w = p->output_shape[2], out_c = p->output_shape[3];
    const int32_t pixels = p->output_shape[0] * out_h * out_w, k = c->k, px_n = c->px;
    const int32_t contiguous = c->pointwise && !c->staged && p->stride_h == 1 && p->stride_w == 1;
    conv_run_t run;
    block_args_t a;
    conv_run_init(&run, &a, c, r, table, last_row, filter, bias, out_c);
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
        conv_block(&run, &a, out0);
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
    conv_table(&c, table, last_row, &r, b, out_c, filter, p->input_offset);
    conv_blocks(p, &c, &r, table, last_row, input, filter, b, output);
    if (!r.full_range) {
        for (int32_t i = 0; i < pixels * out_c; ++i) {
            output[i] = (int8_t)vmcu_clamp_i32(output[i], r.act_min, r.act_max);
        }
    }
}
