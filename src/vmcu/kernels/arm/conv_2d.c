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
 * gather of receptive fields and the walk over the image are this file's. The walk also runs on views of
 * a circular pool (vmcu_conv_2d_views_s8, vmcu_conv.h) for the segment kernel (seg/seg_conv_2d_arm.c): a
 * field that straddles the pool's wrap is gathered through the staging row, and a block whose output
 * straddles it goes by pairs of pixels, each stored on its own.
 */
#include "vmcu_arm.h"
#include "vmcu_conv.h"
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

/* n bytes of the input view at offset `off` into dst, in two parts when they straddle the wrap. */
static inline void read_bytes(int8_t *dst, const vmcu_seg_src_t *in, int32_t off, int32_t n) {
    if (vmcu_seg_straddles(in->split, off, n)) {
        const int32_t first = in->split - off;
        copy_bytes(dst, in->head + off, first);
        copy_bytes(dst + first, in->tail, n - first);
    } else {
        copy_bytes(dst, vmcu_seg_at(in, off), n);
    }
}

/* Gathers the receptive field at input origin (iy0, ix0) of the image at offset `image` of the view into
 * the int8 staging row, the input zero point standing for padding (and for the K % 4 filler); with
 * dilation_w 1 each filter row's in-bounds taps are one contiguous copy (in two parts across the wrap). */
static __attribute__((noinline)) void stage_field(const column_t *c, const vmcu_seg_src_t *in, int32_t image,
                                                  int32_t iy0, int32_t ix0) {
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
        int32_t src = image + (iy * c->in_w + ix0 + fx0 * dil_w) * in_c;
        fill_bytes(dst, zero_point, fx0 * in_c);
        if (dil_w == 1) {
            read_bytes(dst + fx0 * in_c, in, src, (fx1 - fx0) * in_c);
        } else {
            for (int32_t fx = fx0; fx < fx1; ++fx, src += dil_w * in_c) {
                read_bytes(dst + fx * in_c, in, src, in_c);
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
            const vmcu_seg_src_t flat = vmcu_seg_flat(image);
            stage_field(c, &flat, 0, iy0, ix0);
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

/* fill on a view of the pool (the image at offset `image`): a field whose in-bounds bytes lie on one side of
 * the wrap is filled from there, one that straddles it is gathered through the staging row. */
static void fill_view(const column_t *c, int32_t slot, const vmcu_seg_src_t *in, int32_t image, int32_t iy0,
                      int32_t ix0) {
    const int32_t y0 = vmcu_max_i32(iy0, 0), y1 = vmcu_min_i32(iy0 + c->span_h, c->in_h);
    const int32_t x0 = vmcu_max_i32(ix0, 0), x1 = vmcu_min_i32(ix0 + c->span_w, c->in_w);
    const int32_t first = image + (y0 * c->in_w + x0) * c->in_c;
    const int32_t end = image + ((y1 - 1) * c->in_w + x1) * c->in_c;
    if (y1 <= y0 || x1 <= x0 || !vmcu_seg_straddles(in->split, first, end - first)) {
        fill(c, slot, vmcu_seg_at(in, first) - (first - image), iy0, ix0);  /* the image as a flat array */
        return;
    }
    stage_field(c, in, image, iy0, ix0);
    convert_groups(c, slot, c->stage, 0, c->groups);
}

/* What a call on views of the pool adds: the column as two pixels, whose blocks store their pixels
 * anywhere (the second a->stride bytes after the first), and the plan's one output unit for the pixel that
 * straddles the wrap. */
typedef struct {
    column_t c2;
    conv_run_t run2;
    block_args_t a2;
    int8_t *stage;
} views_t;

/* Output pixel j's field on views into slot `slot` of the two-pixel column. */
static void field_view(const vmcu_conv_2d_params_t *p, const column_t *c, int32_t slot, const vmcu_seg_src_t *in,
                       int32_t j) {
    const int32_t out_h = p->output_shape[1], out_w = p->output_shape[2];
    if (c->pointwise && p->stride_h == 1 && p->stride_w == 1) {
        fill_view(c, slot, in, j * c->in_c, 0, 0);  /* input pixel j as a one-pixel image */
        return;
    }
    const int32_t image = j / (out_h * out_w) * c->in_h * c->in_w * c->in_c;
    fill_view(c, slot, in, image, j / out_w % out_h * p->stride_h - p->pad_top, j % out_w * p->stride_w - p->pad_left);
}

/* Output pixels j0 and j1 (j1 == j0: one pixel, computed twice over itself) as a two-pixel block, each
 * stored in place, or the one that straddles the wrap in `stage` and then in two parts; clamped. */
static void pair_view(const vmcu_conv_2d_params_t *p, views_t *v, const vmcu_seg_src_t *in,
                      const vmcu_seg_dst_t *out, int32_t j0, int32_t j1, const vmcu_requant_t *r) {
    const int32_t out_c = p->output_shape[3];
    field_view(p, &v->c2, 0, in, j0);
    field_view(p, &v->c2, 1, in, j1);
    int8_t *y[2];
    const int32_t j[2] = {j0, j1};
    for (int32_t s = 0; s < 2; ++s) {
        y[s] = vmcu_seg_straddles(out->split, j[s] * out_c, out_c) ? v->stage : vmcu_seg_dst_at(out, j[s] * out_c);
    }
    v->a2.stride = (int32_t)(y[1] - y[0]);
    conv_block(&v->run2, &v->a2, y[0]);
    for (int32_t s = 0; s < 2; ++s) {
        for (int32_t i = 0; i < out_c && !r->full_range; ++i) {
            y[s][i] = (int8_t)vmcu_clamp_i32(y[s][i], r->act_min, r->act_max);
        }
        if (y[s] == v->stage) {
            vmcu_seg_write(out, j[s] * out_c, v->stage, out_c);
        }
    }
}

/* Output pixels [px0, px1) (row-major over all images), c->px at a time (see the top of the file). Flat
 * (`v` NULL: input->head and output->head are the tensors), the pixels of a call too few for a block take
 * the exact path and the activation range is left to the caller. On views of the pool, fields go through
 * fill_view and each block is clamped; a block whose output straddles the wrap, and a last block of fewer
 * pixels, go by pairs (pair_view). */
static inline __attribute__((always_inline)) void conv_blocks(const vmcu_conv_2d_params_t *p, const column_t *c,
                                                              const vmcu_requant_t *r, int32_t *table,
                                                              const int8_t *last_row, const vmcu_seg_src_t *in,
                                                              const int8_t *filter, const int32_t *bias,
                                                              const vmcu_seg_dst_t *out, int32_t px0, int32_t px1,
                                                              views_t *v) {
    const int32_t out_h = p->output_shape[1], out_w = p->output_shape[2], out_c = p->output_shape[3];
    const int32_t pixels = px1 - px0, k = c->k, px_n = c->px, in_c = c->in_c;
    const int32_t contiguous = c->pointwise && !c->staged && p->stride_h == 1 && p->stride_w == 1;
    conv_run_t run;
    block_args_t a;
    conv_run_init(&run, &a, c, r, table, last_row, filter, bias, out_c);
    const int32_t image_bytes = c->in_h * c->in_w * in_c;
    int32_t image = px0 / (out_h * out_w) * image_bytes;
    int32_t oy = px0 / out_w % out_h, ox = px0 % out_w;
    for (int32_t px = px0; px < px1; px += px_n) {
        const int32_t n = vmcu_min_i32(px_n, px1 - px);
        if (v && (n < px_n || vmcu_seg_straddles(out->split, px * out_c, px_n * out_c))) {
            for (int32_t j = px; j < px + n; j += 2) {
                pair_view(p, v, in, out, j, vmcu_min_i32(j + 1, px + n - 1), r);
            }
            for (ox += n; ox >= out_w; ox -= out_w) {
                if (++oy == out_h) {
                    oy = 0;
                    image += image_bytes;
                }
            }
            continue;
        }
        const int32_t first = pixels < px_n ? 0 : px_n - n;  /* slots kept from the previous block */
        for (int32_t g = 0; g < c->groups && first > 0; ++g) {
            uint32_t *col = c->col + 2 * px_n * g;
            memmove(col, col + 2 * n, (size_t)(8 * first));
        }
        if (contiguous && (!v || !vmcu_seg_straddles(in->split, px * in_c, n * in_c))) {
            convert_pixels(c, first, v ? vmcu_seg_at(in, px * in_c) : in->head + px * in_c, n);
        } else {
            for (int32_t slot = first; slot < first + n; ++slot) {
                if (contiguous) {  /* input pixel px + s as a one-pixel image */
                    fill_view(c, slot, in, (px + slot - first) * in_c, 0, 0);
                    continue;
                }
                const int32_t iy0 = oy * p->stride_h - p->pad_top, ix0 = ox * p->stride_w - p->pad_left;
                if (v) {
                    fill_view(c, slot, in, image, iy0, ix0);
                } else {
                    fill(c, slot, in->head + image, iy0, ix0);
                }
                if (++ox == out_w) {
                    ox = 0;
                    if (++oy == out_h) {
                        oy = 0;
                        image += image_bytes;
                    }
                }
            }
        }
        int8_t *const out0 = v ? vmcu_seg_dst_at(out, px * out_c) : out->head + (px - first) * out_c;
        if (!v && pixels < px_n) {  /* too few pixels to fill a block */
            for (int32_t s = 0; s < n; ++s) {
                for (int32_t j = 0; j < out_c; ++j) {
                    const int32_t acc = (bias ? bias[j] : 0) + column_dot(c, s, filter + j * k);
                    out0[s * out_c + j] = vmcu_requant_exact(r, acc, j);
                }
            }
            continue;
        }
        conv_block(&run, &a, out0);
        for (int32_t i = 0; v && i < px_n * out_c && !r->full_range; ++i) {
            out0[i] = (int8_t)vmcu_clamp_i32(out0[i], r->act_min, r->act_max);
        }
    }
}

/* The column of a call and what its gather needs (the column's place in scratch is the caller's). */
static void column_init(column_t *c, const vmcu_conv_2d_params_t *p) {
    const int32_t out_c = p->output_shape[3];
    c->in_h = p->input_shape[1];
    c->in_w = p->input_shape[2];
    c->in_c = p->input_shape[3];
    c->filter_h = p->filter_shape[1];
    c->filter_w = p->filter_shape[2];
    c->dil_h = p->dilation_h;
    c->dil_w = p->dilation_w;
    c->input_offset = p->input_offset;
    c->k = c->filter_h * c->filter_w * c->in_c;
    c->span_h = (c->filter_h - 1) * c->dil_h + 1;
    c->span_w = (c->filter_w - 1) * c->dil_w + 1;
    c->groups = (c->k + 3) / 4;
    c->pointwise = c->filter_h == 1 && c->filter_w == 1 && p->pad_top == 0 && p->pad_left == 0;
    c->staged = c->in_c % 4 != 0;
    const int32_t split = c->k % 4 != 0;  /* the last channel reads its weights from last_row */
    const int32_t rest = (c->staged ? 4 * c->groups : 0) + (split ? 4 * c->groups : 0) + 4 * (out_c + 2);
    c->px = 32 * c->groups + rest <= VMCU_SCRATCH_MAX ? 4 : 2;  /* two pixels when four take too much */
    c->offset2 = vmcu_dup16(p->input_offset);
}

void vmcu_conv_2d_views_s8(const vmcu_conv_2d_params_t *p, const vmcu_seg_src_t *input, const int8_t *filter,
                           const int32_t *bias, const vmcu_seg_dst_t *output, int32_t px0, int32_t px1, int8_t *stage,
                           int8_t *scratch) {
    const int32_t out_c = p->output_shape[3];
    column_t c;
    column_init(&c, p);
    const vmcu_requant_t r = vmcu_requant_init(p->output_multiplier, p->output_shift, p->output_offset,
                                               p->activation_min, p->activation_max);
    const int32_t *const b = p->has_bias ? bias : NULL;
    c.col = (uint32_t *)(void *)scratch;
    int8_t *const last_row = scratch + 8 * c.px * c.groups + (c.staged ? 4 * c.groups : 0);
    int32_t *const table = (int32_t *)(void *)(last_row + (c.k % 4 ? 4 * c.groups : 0));
    /* the staging row of the tensor kernel, or, when it has none, after the table for fields across the wrap */
    c.stage = c.staged ? scratch + 8 * c.px * c.groups : (int8_t *)(table + out_c + 2);
    conv_table(&c, table, last_row, &r, b, out_c, filter, p->input_offset);
    views_t v;
    v.c2 = c;
    v.c2.px = 2;
    v.stage = stage;
    conv_run_init(&v.run2, &v.a2, &v.c2, &r, table, last_row, filter, b, out_c);
    conv_blocks(p, &c, &r, table, last_row, input, filter, b, output, px0, px1, &v);
}

void vmcu_conv_2d_s8(const vmcu_conv_2d_params_t *p, const int8_t *input, const int8_t *filter,
                     const int32_t *bias, int8_t *output, int8_t *scratch) {
    const int32_t out_c = p->output_shape[3];
    const int32_t pixels = p->output_shape[0] * p->output_shape[1] * p->output_shape[2];
    column_t c;
    column_init(&c, p);
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
    int32_t *const table = (int32_t *)(void *)(last_row + (c.k % 4 ? 4 * c.groups : 0));
    conv_table(&c, table, last_row, &r, b, out_c, filter, p->input_offset);
    const vmcu_seg_src_t in = vmcu_seg_flat(input);
    const vmcu_seg_dst_t out = {output, output, INT32_MAX};
    conv_blocks(p, &c, &r, table, last_row, &in, filter, b, &out, 0, pixels, NULL);
    if (!r.full_range) {
        for (int32_t i = 0; i < pixels * out_c; ++i) {
            output[i] = (int8_t)vmcu_clamp_i32(output[i], r.act_min, r.act_max);
        }
    }
}
