/* Fused inverted bottleneck int8 on the circular pool for Cortex-M with the DSP extension: the schedule of
 * fused_ib.c (same prototype, same workspace, same results) run on the DSP tensor kernels' loops.
 *
 * - Expand: E pixels go through the DSP conv's column and block loops (arm/vmcu_conv_blocks.h), or its
 *   one-pixel loops for C_in 8 or 16, in runs that are consecutive in the ring, straight into their slots.
 *   A run goes in blocks of four pixels, its remainder in blocks of two (or one block of four overlapping
 *   the one before, for three; a lone pixel is written over itself with a zero output stride).
 * - "cache" keeps the E rows of the current output row's windows in order from the ring's start: at an
 *   output row it moves the rows still needed to the front and expands the rows its windows add (all
 *   ring_w columns). Rows of FUSED_DW_ROW_MIN output pixels or more then go through the DSP depthwise
 *   kernel itself (vmcu_depthwise_conv_2d_views_s8), a whole output row into `drow`, which the project
 *   reads. The records of its first channel groups (as many as VMCU_SCRATCH_MAX bytes hold) are built
 *   once and lent to every row; the others are rebuilt per row.
 * - "recompute" keeps the window, each window column's rows together ([col % ring_w][row - first window
 *   row], so that a column is one run) and expands at each step the columns it gains.
 * - Otherwise (narrow "cache" rows, "recompute") each depthwise pixel is computed from its window's
 *   in-bounds taps straight into the project's column: the taps are listed once a pixel, an asm loop runs
 *   them for each channel group (13 instructions a tap), and the four channels are requantized inline
 *   unless one needs the exact path.
 * - Project: the conv blocks on the project's column (doubled int16, as the blocks take them) once it holds
 *   a block of consecutive output pixels, rows running into each other; from `drow` with C_mid 8 or 16, the
 *   one-pixel loops. Outputs go straight into the pool when there is no residual and they do not straddle
 *   the wrap, else through `stage`, from which each pixel is stored, the residual added channel by channel
 *   (each after its input channel is read).
 *
 * Input pixels are thus read no later, and output pixels stored no earlier, than fused_ib.c does, which is
 * always safe under the same plan (a block that overlaps the one before reads again pixels of the same run).
 *
 * `workspace`: the ring (its depthwise pixel is not used). `scratch` (4-byte aligned), kernel_scratch_bytes
 * in vmcu.plan.fused, holds first what lasts the whole call: each 1x1 conv's channel table (C_out + 2
 * words, or the one-pixel loops' records) and the padded copy of its last weight row when C % 4 != 0
 * (4 * ceil(C / 4) bytes); the lent depthwise records; the project's column (8 * ceil(C_mid / 4) bytes a
 * pixel, for 4 pixels, or 2 when four take more than VMCU_SCRATCH_MAX, as in the tensor kernel), after a
 * staging row of 4 * ceil(C_mid / 4) bytes when it reads `drow` and C_mid % 4 != 0; `stage`, a block of output pixels (C_out bytes each). Then
 * what lasts one output row or step: the expand's staging row (4 * ceil(C_in / 4) bytes, for pixels with
 * C_in % 4 != 0 or across the wrap) and column, sharing their bytes with `drow` (W_out * C_mid bytes)
 * followed by the depthwise kernel's scratch, or with two words per window tap. */
#include "vmcu_arm.h"
#include "vmcu_conv_blocks.h"
#include "vmcu_dw.h"
#include "vmcu_seg.h"

/* "cache" runs the depthwise kernel on output rows of at least this many pixels; narrower rows would pay
 * its per-row set-up (records, staged rows) for too few pixels and take the per-pixel loop instead. */
#define FUSED_DW_ROW_MIN 8

/* A 1x1 conv of the block: its column and block runner, a view of the same column as two pixels for
 * short runs, what the runners need, and, for C_in 8 or 16, the one-pixel loop and its records (else
 * `pixel` is NULL). Set up in place (pointwise_init, then pointwise_columns): the runners point at the
 * columns and the requantizer. */
typedef struct {
    column_t c, c2;
    conv_run_t run, run2;
    block_args_t a, a2;
    vmcu_requant_t r;
    int32_t *table;
    const int8_t *last_row, *filter;
    const int32_t *bias;
    int32_t out_c;
    pixel_fn pixel;
    const uint32_t *records;
} pointwise_t;

/* Sets up a 1x1 conv with k input channels and builds its table (or its records, when `records` allows
 * them and they build) and padded last row, from *at on. */
static void pointwise_init(pointwise_t *pw, uint32_t **at, const vmcu_conv_2d_params_t *p, int32_t k, int records,
                           const int8_t *filter, const int32_t *bias) {
    const int32_t out_c = p->output_shape[3], groups = (k + 3) / 4;
    const int32_t rest = (k % 4 ? 8 * groups : 0) + 4 * (out_c + 2);
    const int32_t *const b = p->has_bias ? bias : NULL;
    column_t *c = &pw->c;
    memset(c, 0, sizeof *c);
    c->in_c = k;
    c->k = k;
    c->groups = groups;
    c->px = 32 * groups + rest <= VMCU_SCRATCH_MAX ? 4 : 2;  /* as the tensor kernel chooses */
    c->offset2 = vmcu_dup16(p->input_offset);
    pw->r = vmcu_requant_init(p->output_multiplier, p->output_shift, p->output_offset, p->activation_min,
                              p->activation_max);
    int32_t *const table = (int32_t *)*at;
    records = records && (k == 8 || k == 16) && out_c % 2 == 0 && (2 * k + 16) * out_c <= VMCU_SCRATCH_MAX;
    *at += records ? vmcu_max_i32(out_c + 2, (k / 2 + 4) * out_c) : out_c + 2;
    int8_t *const last_row = (int8_t *)*at;
    *at += k % 4 ? groups : 0;
    pw->table = table;
    pw->last_row = last_row;
    pw->filter = filter;
    pw->bias = b;
    pw->out_c = out_c;
    pw->pixel = NULL;
    pw->records = (const uint32_t *)table;
    if (records) {
        chan_table(table, &pw->r, b, out_c, filter, k, p->input_offset);
        if (build_records((uint32_t *)table, &pw->r, filter, k, out_c)) {
            pw->pixel = k == 8 ? (out_c % 4 ? pw8_x2 : pw8_x4) : (out_c % 4 ? pw16_x2 : pw16_x4);
            return;
        }
    }
    conv_table(c, table, last_row, &pw->r, b, out_c, filter, p->input_offset);
}

/* Places the conv's staging row (when `staged`) and column at *at on: the column words of c->px pixels,
 * and of two in the view c2. */
static void pointwise_columns(pointwise_t *pw, uint32_t **at, int staged) {
    column_t *c = &pw->c;
    c->stage = (int8_t *)*at;
    *at += staged ? c->groups : 0;
    c->col = *at;
    *at += 2 * c->px * c->groups;
    pw->c2 = *c;
    pw->c2.px = 2;
    conv_run_init(&pw->run, &pw->a, c, &pw->r, pw->table, pw->last_row, pw->filter, pw->bias, pw->out_c);
    conv_run_init(&pw->run2, &pw->a2, &pw->c2, &pw->r, pw->table, pw->last_row, pw->filter, pw->bias, pw->out_c);
}

/* Clamps n bytes to the conv's activation range (the loops saturate to int8 only). */
static void clamp(const vmcu_requant_t *r, int8_t *y, int32_t n) {
    if (r->full_range) {
        return;
    }
    for (int32_t i = 0; i < n; ++i) {
        y[i] = (int8_t)vmcu_clamp_i32(y[i], r->act_min, r->act_max);
    }
}

/* The ADD's constants, slot 0 for the block input and slot 1 for the projection, whichever operand each
 * is. */
typedef struct {
    int32_t offset[2], multiplier[2], shift[2];
    int32_t left_shift, out_multiplier, out_shift, out_offset, act_min, act_max;
    int32_t fast; /* both inputs requantized by add_input's shortcut */
} adder_t;

static adder_t adder_init(const vmcu_add_params_t *p, int32_t residual_first) {
    const int32_t first = residual_first ? 0 : 1, second = 1 - first;
    adder_t a;
    a.offset[first] = p->input1_offset;
    a.multiplier[first] = p->input1_multiplier;
    a.shift[first] = p->input1_shift;
    a.offset[second] = p->input2_offset;
    a.multiplier[second] = p->input2_multiplier;
    a.shift[second] = p->input2_shift;
    a.left_shift = p->left_shift;
    a.out_multiplier = p->output_multiplier;
    a.out_shift = p->output_shift;
    a.out_offset = p->output_offset;
    a.act_min = p->activation_min;
    a.act_max = p->activation_max;
    /* |x| <= 256 << left_shift keeps 2x within int32 */
    a.fast = p->left_shift <= 21 && p->input1_shift <= 0 && p->input2_shift <= 0;
    return a;
}

/* Operand i's MultiplyByQuantizedMultiplier, vmcu_requantize exactly. In the fast case the shift is a right
 * one (e = -shift >= 0) and 2x fits int32: the doubling high multiply is SMMULR(2x, m) and the rounding
 * division by 2^e, for e >= 1, is (((s - [s < 0]) >> (e - 1)) + 1) >> 1 (see vmcu_arm.h). */
static inline int32_t add_input(const adder_t *a, int32_t i, int32_t v) {
    const int32_t x = (v + a->offset[i]) * ((int32_t)1 << a->left_shift);
    if (!a->fast) {
        return vmcu_requantize(x, a->multiplier[i], a->shift[i]);
    }
    const int32_t s = vmcu_smmulr(2 * x, a->multiplier[i]), e1 = ~a->shift[i];
    return e1 < 0 ? s : (((s + (s >> 31)) >> e1) + 1) >> 1;
}

/* TFLM reference_integer_ops::Add of the block input x and the projection y. */
static inline int8_t add_one(const adder_t *a, int32_t x, int32_t y) {
    const int32_t zp = a->out_offset;
    const int32_t sum = vmcu_wrap_add(add_input(a, 0, x), add_input(a, 1, y)); /* either operand order */
    const int32_t raw = vmcu_requant_value(sum, a->out_multiplier, a->out_shift, ~a->out_shift, 2 * zp + 1, zp);
    return (int8_t)vmcu_clamp_i32(raw, a->act_min, a->act_max);
}

/* The depthwise's requantization, set up once a call for the per-pixel loop. */
typedef struct {
    const int32_t *multiplier, *shift, *bias;
    int32_t odd, zp, lo, hi, poff2;
    int16x2_t off2;
    int32_t full; /* the activation range is all of int8 */
} dw_out_t;

static dw_out_t dw_out_init(const vmcu_fused_ib_params_t *p, const int32_t *bias) {
    const vmcu_depthwise_conv_2d_params_t *d = p->depthwise;
    const dw_out_t q = {d->output_multiplier, d->output_shift, d->has_bias ? bias : NULL, 2 * d->output_offset + 1,
                        d->output_offset, d->activation_min, d->activation_max, 2 * p->project->input_offset,
                        vmcu_dup16(d->input_offset), d->activation_min == -128 && d->activation_max == 127};
    return q;
}

typedef struct {
    const vmcu_fused_ib_params_t *p;
    vmcu_seg_src_t input;
    pointwise_t expand, project;
    adder_t add;
    dw_out_t dw;  /* the per-pixel depthwise's requantization */
    int8_t *ring;
    int8_t *stage;  /* the project's block of output pixels */
    int32_t in_w, in_c, se_h, se_w, mid_c, ring_w, out_h, out_w, out_c;
    int32_t rlo, rows;  /* the output row's first window row and how many of its window rows are in E */
    int32_t slot;       /* output pixels in the project's column */
} fused_t;

static inline int32_t input_offset(const fused_t *f, int32_t row, int32_t col) {
    return ((row * f->se_h) * f->in_w + col * f->se_w) * f->in_c;
}

/* The pixel at `off` of `in` into slot `slot` of column c, through the staging row when its channels are
 * not whole words or it straddles the wrap (`pad`: the value that converts to 0). */
static void convert_input(const vmcu_seg_src_t *in, const column_t *c, int32_t slot, int32_t off, int8_t pad) {
    const int32_t k = c->k;
    const int8_t *src = vmcu_seg_at(in, off);
    if (k % 4 != 0 || vmcu_seg_straddles(in->split, off, k)) {
        vmcu_seg_read(in, off, c->stage, k);
        memset(c->stage + k, pad, (size_t)(4 * c->groups - k));
        src = c->stage;
    }
    convert_groups(c, slot, src, 0, c->groups);
}

/* Pixels b .. b + c->px - 1 of a run of n (the last one repeated past its end) through the conv blocks into
 * dst + b * C_mid. Pixel j of the run is (row0 + j / len, j % len) for "cache", (row0 + j % len,
 * col0 + j / len) for "recompute"; pixels consecutive in a row are converted together. */
static void expand_block(fused_t *f, int two, int8_t *dst, int32_t b, int32_t n, int32_t row0, int32_t col0,
                         int32_t len) {
    pointwise_t *e = &f->expand;
    const column_t *c = two ? &e->c2 : &e->c;
    const int32_t px = c->px, in_c = f->in_c, cache = f->p->cache;
    const int8_t pad = (int8_t)-f->p->expand->input_offset;
    for (int32_t s = 0; s < px;) {
        const int32_t j = vmcu_min_i32(b + s, n - 1), major = j / len, minor = j - major * len;
        const int32_t off = cache ? input_offset(f, row0 + major, minor) : input_offset(f, row0 + minor, col0 + major);
        int32_t m = cache && f->se_w == 1 && in_c % 4 == 0 ? vmcu_min_i32(px - s, vmcu_min_i32(len - minor, n - j)) : 1;
        if (m > 1 && vmcu_seg_straddles(f->input.split, off, m * in_c)) {
            m = vmcu_max_i32(1, (f->input.split - off) / in_c);
        }
        if (m > 1) {
            convert_pixels(c, s, vmcu_seg_at(&f->input, off), m);
        } else {
            convert_input(&f->input, c, s, off, pad);
        }
        s += m;
    }
    conv_block(two ? &e->run2 : &e->run, two ? &e->a2 : &e->a, dst + b * f->mid_c);
}

/* The one-pixel loops on the run's pixels: a call per maximal stretch of a row that is contiguous in the
 * input and does not straddle the wrap, the pixel across the wrap from the staging row. */
static void expand_pixels(fused_t *f, int8_t *dst, int32_t n, int32_t row0, int32_t col0, int32_t len) {
    const pointwise_t *e = &f->expand;
    const int32_t in_c = f->in_c, mid_c = f->mid_c, cache = f->p->cache;
    for (int32_t j = 0; j < n;) {
        const int32_t major = j / len, minor = j - major * len;
        const int32_t off = cache ? input_offset(f, row0 + major, minor) : input_offset(f, row0 + minor, col0 + major);
        int32_t m = cache && f->se_w == 1 ? vmcu_min_i32(len - minor, n - j) : 1;
        const int8_t *src = vmcu_seg_at(&f->input, off);
        if (vmcu_seg_straddles(f->input.split, off, m * in_c)) {
            m = (f->input.split - off) / in_c;
            if (m == 0) {
                vmcu_seg_read(&f->input, off, e->c.stage, in_c);
                src = e->c.stage;
                m = 1;
            }
        }
        const pixel_args_t a = {e->records, src, src + m * in_c, dst + j * mid_c, e->c.offset2};
        e->pixel(&a);
        j += m;
    }
}

/* Expands a run of n E pixels (see expand_block) into consecutive ring slots from dst. */
static void expand_run(fused_t *f, int8_t *dst, int32_t n, int32_t row0, int32_t col0, int32_t len) {
    pointwise_t *e = &f->expand;
    if (e->pixel) {
        expand_pixels(f, dst, n, row0, col0, len);
        clamp(&e->r, dst, n * f->mid_c);
        return;
    }
    const int32_t px = e->c.px;
    int32_t i = 0;
    for (; i + px <= n; i += px) {
        expand_block(f, 0, dst, i, n, row0, col0, len);
    }
    if (i < n && n - i == 3 && px == 4 && n >= 4) {  /* cheaper as four pixels, one again */
        expand_block(f, 0, dst, n - 4, n, row0, col0, len);
    } else if (i < n) {
        e->a2.stride = n == 1 ? 0 : f->mid_c;
        for (; i < n; i += 2) {
            expand_block(f, 1, dst, vmcu_max_i32(0, vmcu_min_i32(i, n - 2)), n, row0, col0, len);
        }
        e->a2.stride = f->mid_c;
    }
    clamp(&e->r, dst, n * f->mid_c);
}

static inline uint32_t pack(int32_t lo, int32_t hi) { return ((uint32_t)lo & 0xFFFFu) | (uint32_t)hi << 16; }

/* Channel ch's output y as the project reads it, 2 * (y + its input offset), when vmcu_requant_value takes
 * its fast path (|acc| < 2^30, a right shift), with the halving folded into SSAT; `full` (a constant at
 * each call) drops the clamp to an activation range that is all of int8. */
static inline __attribute__((always_inline)) int32_t dw_twice(const dw_out_t *q, int32_t acc, int32_t m,
                                                              int32_t e1, int full) {
    int32_t y = vmcu_ssat8_half(vmcu_requant_twice((int32_t)((uint32_t)acc << 1), m, e1, q->odd));
    if (!full) {
        y = vmcu_clamp_i32(y, q->lo, q->hi);
    }
    return q->poff2 + 2 * y;
}

/* The same for any accumulator, by vmcu_requant_value, out of line. */
static __attribute__((noinline)) int32_t dw_twice_exact(const dw_out_t *q, int32_t acc, int32_t ch) {
    const int32_t shift = q->shift[ch];
    const int32_t y = vmcu_requant_value(acc, q->multiplier[ch], shift, ~shift, q->odd, q->zp);
    return q->poff2 + 2 * vmcu_clamp_i32(y, q->lo, q->hi);
}

/* A depthwise tap of a window: its input and weight at channel 0. */
typedef struct {
    const int8_t *e, *w;
} tap_t;

/* Channels 0 .. 4 * groups - 1 of a depthwise pixel over the taps t .. end - 1 into dst, two words a
 * group, `step` words apart; `full` as in dw_twice. Each group's taps run in a loop of 13 instructions a
 * tap; it reads the taps and the bytes they point at, hence its memory clobber. */
static inline __attribute__((always_inline)) void dw_groups(const dw_out_t *q, const tap_t *taps, const tap_t *end,
                                                            uint32_t *dst, int32_t step, int32_t groups, int full) {
    const dw_out_t c = *q; /* in registers: the column's stores could alias *q */
    q = &c;
    for (int32_t m = 0; m < 4 * groups; m += 4, dst += step) {
        int32_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
        if (q->bias) {
            a0 = q->bias[m];
            a1 = q->bias[m + 1];
            a2 = q->bias[m + 2];
            a3 = q->bias[m + 3];
        }
        if (end != taps) {
            const tap_t *t = taps;
            uint32_t ev, wv, e02, e13;
            __asm__("1:\n\t"
                    "ldrd %[ev], %[wv], [%[t]], #8\n\t"
                    "ldr %[ev], [%[ev], %[m]]\n\t"
                    "ldr %[wv], [%[wv], %[m]]\n\t"
                    "sxtab16 %[e02], %[off2], %[ev]\n\t"
                    "sxtab16 %[e13], %[off2], %[ev], ror #8\n\t"
                    "sxtb16 %[ev], %[wv]\n\t"
                    "sxtb16 %[wv], %[wv], ror #8\n\t"
                    "smlabb %[a0], %[e02], %[ev], %[a0]\n\t"
                    "smlatt %[a2], %[e02], %[ev], %[a2]\n\t"
                    "smlabb %[a1], %[e13], %[wv], %[a1]\n\t"
                    "smlatt %[a3], %[e13], %[wv], %[a3]\n\t"
                    "cmp %[t], %[end]\n\t"
                    "bne 1b\n\t"
                    : [t] "+r"(t), [a0] "+r"(a0), [a1] "+r"(a1), [a2] "+r"(a2), [a3] "+r"(a3), [ev] "=&r"(ev),
                      [wv] "=&r"(wv), [e02] "=&r"(e02), [e13] "=&r"(e13)
                    : [m] "r"(m), [end] "r"(end), [off2] "r"(q->off2)
                    : "cc", "memory");
        }
        const int32_t *const mul = q->multiplier + m, *const sh = q->shift + m;
        const int32_t e0 = ~sh[0], e1 = ~sh[1], e2 = ~sh[2], e3 = ~sh[3];
        /* one test for the four channels: any |acc| >= 2^30 or shift >= 0 takes the exact path */
        const uint32_t wide = (uint32_t)((a0 ^ (a0 << 1)) | (a1 ^ (a1 << 1)) | (a2 ^ (a2 << 1)) | (a3 ^ (a3 << 1)));
        if (__builtin_expect((int32_t)(wide | (uint32_t)(e0 | e1 | e2 | e3)) < 0, 0)) {
            dst[0] = pack(dw_twice_exact(q, a0, m), dw_twice_exact(q, a2, m + 2));
            dst[1] = pack(dw_twice_exact(q, a1, m + 1), dw_twice_exact(q, a3, m + 3));
            continue;
        }
        dst[0] = pack(dw_twice(q, a0, mul[0], e0, full), dw_twice(q, a2, mul[2], e2, full));
        dst[1] = pack(dw_twice(q, a1, mul[1], e1, full), dw_twice(q, a3, mul[3], e3, full));
    }
}

static __attribute__((noinline)) void dw_groups_full(const dw_out_t *q, const tap_t *taps, const tap_t *end,
                                                     uint32_t *dst, int32_t step, int32_t groups) {
    dw_groups(q, taps, end, dst, step, groups, 1);
}

static __attribute__((noinline)) void dw_groups_clamped(const dw_out_t *q, const tap_t *taps, const tap_t *end,
                                                        uint32_t *dst, int32_t step, int32_t groups) {
    dw_groups(q, taps, end, dst, step, groups, 0);
}

/* The depthwise pixel of the window at (r0, c0) from the ring (its rows rlo .. rlo + rows - 1 in the layout
 * of the variant) into slot s of the project's column, as doubled int16 with the project's input offset
 * (0 for the channels that pad the last group). The window's in-bounds taps are listed first (input
 * and weight at channel 0), once for all channels. */
static void depthwise_pixel(const fused_t *f, tap_t *taps, int32_t s, int32_t r0, int32_t c0, const int8_t *filter) {
    const vmcu_depthwise_conv_2d_params_t *d = f->p->depthwise;
    const dw_out_t *q = &f->dw;
    const int32_t mid_w = d->input_shape[2], mid_c = f->mid_c, kw = d->filter_shape[2];
    const int32_t clo = vmcu_max_i32(c0, 0), chi = vmcu_min_i32(c0 + kw, mid_w);
    tap_t *t = taps;
    for (int32_t i = 0; i < f->rows; ++i) {
        for (int32_t col = clo; col < chi; ++col, ++t) {
            t->e = f->ring + (f->p->cache ? i * f->ring_w + col : (col % f->ring_w) * f->rows + i) * mid_c;
            t->w = filter + ((f->rlo + i - r0) * kw + (col - c0)) * mid_c;
        }
    }
    const tap_t *const end = t;
    const column_t *pc = &f->project.c;
    const int32_t step = 2 * pc->px, groups = mid_c / 4, m = 4 * groups;
    uint32_t *const dst = pc->col + 2 * s;
    (q->full ? dw_groups_full : dw_groups_clamped)(q, taps, end, dst, step, groups);
    if (m < mid_c) {
        int32_t y[4] = {0, 0, 0, 0};
        for (int32_t j = 0; m + j < mid_c; ++j) {
            int32_t acc = q->bias ? q->bias[m + j] : 0;
            for (const tap_t *u = taps; u < end; ++u) {
                acc += u->w[m + j] * (u->e[m + j] + d->input_offset);
            }
            y[j] = dw_twice_exact(q, acc, m + j);
        }
        dst[step * groups] = pack(y[0], y[2]);
        dst[step * groups + 1] = pack(y[1], y[3]);
    }
}

/* Output pixel at `unit` from `y` (n bytes), each channel after its residual channel is read. */
static void store(const fused_t *f, vmcu_seg_dst_t *out, int32_t unit, const int8_t *y, int32_t n) {
    if (!f->p->add) {
        vmcu_seg_write(out, unit, y, n);
        return;
    }
    const adder_t a = f->add;
    int8_t *const head = vmcu_seg_dst_at(out, unit);
    const int32_t nh = vmcu_seg_straddles(out->split, unit, n) ? out->split - unit : n;
    const int8_t *xa = vmcu_seg_at(&f->input, unit);
    const int32_t nx = vmcu_seg_straddles(f->input.split, unit, n) ? f->input.split - unit : n;
    if (nh == n && nx == n) {
        for (int32_t o = 0; o < n; ++o) {
            head[o] = add_one(&a, xa[o], y[o]);
        }
        return;
    }
    for (int32_t o = 0; o < n; ++o) {
        const int8_t v = add_one(&a, o < nx ? xa[o] : f->input.tail[o - nx], y[o]);
        if (o < nh) {
            head[o] = v;
        } else {
            out->tail[o - nh] = v;
        }
    }
}

/* Projects the n output pixels in the column's first slots (the others repeat slot 0), the first at
 * `unit`, and stores them. */
static void project(fused_t *f, vmcu_seg_dst_t *out, int32_t unit, int32_t n) {
    pointwise_t *pj = &f->project;
    const int32_t px = pj->c.px, out_c = f->out_c;
    for (int32_t s = n; s < px; ++s) {
        for (int32_t g = 0; g < pj->c.groups; ++g) {
            pj->c.col[2 * (g * px + s)] = pj->c.col[2 * g * px];
            pj->c.col[2 * (g * px + s) + 1] = pj->c.col[2 * g * px + 1];
        }
    }
    if (!f->p->add && n == px && !vmcu_seg_straddles(out->split, unit, px * out_c)) {
        int8_t *const y = vmcu_seg_dst_at(out, unit);
        conv_block(&pj->run, &pj->a, y);
        clamp(&pj->r, y, px * out_c);
        return;
    }
    conv_block(&pj->run, &pj->a, f->stage);
    clamp(&pj->r, f->stage, n * out_c);
    for (int32_t s = 0; s < n; ++s) {
        store(f, out, unit + s * out_c, f->stage + s * out_c, out_c);
    }
}

/* Adds a depthwise pixel to the project's column, and projects and stores the column once it holds a
 * block or the last output pixel (t). */
static void project_pixel_done(fused_t *f, vmcu_seg_dst_t *out, int32_t t) {
    if (++f->slot == f->project.c.px || t == f->out_h * f->out_w - 1) {
        project(f, out, (t + 1 - f->slot) * f->out_c, f->slot);
        f->slot = 0;
    }
}

/* "cache": output row oy from its depthwise pixels in drow, through the one-pixel loops (straight into
 * the pool when the row needs no residual and does not wrap) or the project's column. */
static void project_row(fused_t *f, vmcu_seg_dst_t *out, const int8_t *drow, int32_t oy) {
    const pointwise_t *pj = &f->project;
    const int32_t out_w = f->out_w, out_c = f->out_c, mid_c = f->mid_c, unit = oy * out_w * out_c;
    if (pj->pixel) {
        const int direct = !f->p->add && !vmcu_seg_straddles(out->split, unit, out_w * out_c);
        for (int32_t ox = 0; ox < out_w; ox += direct ? out_w : 1) {
            const int32_t n = direct ? out_w : 1;
            int8_t *const y = direct ? vmcu_seg_dst_at(out, unit) : f->stage;
            const pixel_args_t a = {pj->records, drow + ox * mid_c, drow + (ox + n) * mid_c, y, pj->c.offset2};
            pj->pixel(&a);
            clamp(&pj->r, y, n * out_c);
            if (!direct) {
                store(f, out, unit + ox * out_c, y, out_c);
            }
        }
        return;
    }
    const vmcu_seg_src_t view = vmcu_seg_flat(drow);
    const int8_t pad = (int8_t)-f->p->project->input_offset;
    for (int32_t ox = 0; ox < out_w;) {
        const int32_t n = mid_c % 4 ? 1 : vmcu_min_i32(pj->c.px - f->slot, out_w - ox);
        if (n > 1) {
            convert_pixels(&pj->c, f->slot, drow + ox * mid_c, n);
        } else {
            convert_input(&view, &pj->c, f->slot, ox * mid_c, pad);
        }
        f->slot += n - 1;
        ox += n;
        project_pixel_done(f, out, oy * out_w + ox - 1);
    }
}

/* Moves n bytes down to dst < src (the regions may overlap): four words loaded before they are stored. */
static void move_down(int8_t *dst, const int8_t *src, int32_t n) {
    int32_t i = 0;
    for (; i + 16 <= n; i += 16) {
        const uint32_t w0 = vmcu_load32(src + i), w1 = vmcu_load32(src + i + 4);
        const uint32_t w2 = vmcu_load32(src + i + 8), w3 = vmcu_load32(src + i + 12);
        vmcu_store32(dst + i, w0);
        vmcu_store32(dst + i + 4, w1);
        vmcu_store32(dst + i + 8, w2);
        vmcu_store32(dst + i + 12, w3);
    }
    for (; i < n; ++i) {
        dst[i] = src[i];
    }
}

void vmcu_seg_fused_ib_s8(const vmcu_fused_ib_params_t *p, vmcu_seg_src_t input, const int8_t *expand_filter,
                          const int32_t *expand_bias, const int8_t *depthwise_filter,
                          const int32_t *depthwise_bias, const int8_t *project_filter,
                          const int32_t *project_bias, vmcu_seg_dst_t output, int8_t *workspace,
                          int8_t *scratch) {
    const vmcu_conv_2d_params_t *e = p->expand, *pr = p->project;
    const vmcu_depthwise_conv_2d_params_t *d = p->depthwise;
    const int32_t mid_h = d->input_shape[1], mid_w = d->input_shape[2], mid_c = d->input_shape[3];
    const int32_t kh = d->filter_shape[1], kw = d->filter_shape[2];
    const int32_t step_h = d->stride_h * pr->stride_h, step_w = d->stride_w * pr->stride_w;
    fused_t f;
    f.p = p;
    f.input = input;
    f.ring = workspace;
    f.in_w = e->input_shape[2];
    f.in_c = e->input_shape[3];
    f.se_h = e->stride_h;
    f.se_w = e->stride_w;
    f.mid_c = mid_c;
    f.ring_w = p->ring_w;
    f.out_h = pr->output_shape[1];
    f.out_w = pr->output_shape[2];
    f.out_c = pr->output_shape[3];
    f.slot = 0;
    if (p->add) {
        f.add = adder_init(p->add, p->residual_first);
    }
    f.dw = dw_out_init(p, depthwise_bias);
    const int rowwise = p->cache && f.out_w >= FUSED_DW_ROW_MIN; /* the depthwise kernel on whole rows */
    uint32_t *at = (uint32_t *)(void *)scratch;
    pointwise_init(&f.project, &at, pr, mid_c, rowwise, project_filter, project_bias);
    pointwise_init(&f.expand, &at, e, f.in_c, 1, expand_filter, expand_bias);
    /* "cache" rows: the depthwise records of the first groups, built once */
    const int32_t record_bytes = 4 * vmcu_dw_record_words(d);
    const int32_t lent_groups = rowwise ? vmcu_min_i32(mid_c / 4, VMCU_SCRATCH_MAX / record_bytes) : 0;
    const vmcu_dw_records_t lent = {at, lent_groups};
    vmcu_depthwise_conv_2d_records_s8(d, depthwise_filter, depthwise_bias, lent_groups, at);
    at += lent_groups * vmcu_dw_record_words(d);
    pointwise_columns(&f.project, &at, rowwise && mid_c % 4 != 0);
    f.stage = (int8_t *)at;
    at += (f.project.c.px * f.out_c + 3) / 4;
    /* then what lives through one output row or step at most: the expand's column, sharing its bytes with
     * the depthwise output row and the depthwise kernel's scratch, or with the window's taps */
    int8_t *const drow = (int8_t *)at;
    tap_t *const taps = (tap_t *)(void *)at;
    int8_t *const dw_scratch = (int8_t *)(at + (f.out_w * mid_c + 3) / 4);
    pointwise_columns(&f.expand, &at, 1);
    /* "cache": the depthwise kernel on one output row of the E rows in the ring */
    vmcu_depthwise_conv_2d_params_t row = *d;
    row.input_shape[2] = f.ring_w;
    row.output_shape[1] = 1;
    row.output_shape[2] = f.out_w;
    row.stride_w = step_w;
    const int32_t row_bytes = f.ring_w * mid_c;
    int32_t top = 0, held = 0; /* "cache": the ring holds E rows top .. top + held - 1, in order */
    for (int32_t oy = 0; oy < f.out_h; ++oy) {
        const int32_t r0 = oy * step_h - d->pad_top;
        f.rlo = vmcu_max_i32(r0, 0);
        f.rows = vmcu_max_i32(vmcu_min_i32(r0 + kh, mid_h) - f.rlo, 0);
        if (p->cache) {
            const int32_t keep = vmcu_max_i32(0, vmcu_min_i32(held, top + held - f.rlo));
            if (keep > 0 && keep < held) {
                move_down(f.ring, f.ring + (held - keep) * row_bytes, keep * row_bytes);
            }
            top = f.rlo;
            held = keep;
            if (held < f.rows) {
                expand_run(&f, f.ring + held * row_bytes, (f.rows - held) * f.ring_w, top + held, 0, f.ring_w);
                held = f.rows;
            }
        }
        if (rowwise) {
            row.input_shape[1] = held;
            row.pad_top = f.rlo - r0;
            const vmcu_seg_src_t rows = vmcu_seg_flat(f.ring);
            const vmcu_seg_dst_t dst = {drow, drow, INT32_MAX};
            vmcu_depthwise_conv_2d_views_s8(&row, &rows, depthwise_filter, depthwise_bias, &dst, INT32_MAX, &lent,
                                            dw_scratch);
            project_row(&f, &output, drow, oy);
            continue;
        }
        for (int32_t ox = 0; ox < f.out_w; ++ox) {
            const int32_t c0 = ox * step_w - d->pad_left;
            const int32_t clo = vmcu_max_i32(c0, 0), chi = vmcu_min_i32(c0 + kw, mid_w);
            for (int32_t col = ox == 0 ? clo : vmcu_max_i32(clo, c0 + kw - step_w); !p->cache && f.rows > 0 &&
                                                                                   col < chi;) {
                const int32_t end = vmcu_min_i32(chi, col + f.ring_w - col % f.ring_w); /* to the ring's end */
                expand_run(&f, f.ring + (col % f.ring_w) * f.rows * mid_c, (end - col) * f.rows, f.rlo, col, f.rows);
                col = end;
            }
            depthwise_pixel(&f, taps, f.slot, r0, c0, depthwise_filter);
            project_pixel_done(&f, &output, oy * f.out_w + ox);
        }
    }
}
