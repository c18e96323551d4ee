/* vmcu segment kernels: the ops of a segment plan (vMCU), reading and writing tensors that live in one
 * circular pool, where byte i of a tensor at `base` is pool[(base + i) mod size].
 *
 * Conventions (see README.md, "Segment kernels"):
 *   - A kernel never takes a modulo. It gets each tensor as a view {head, tail, split}: byte i is head[i]
 *     for i < split and tail[i - split] from split on; resolving an offset is one compare. Constants and
 *     tensors outside the pool are flat views (split = INT32_MAX) and never wrap.
 *   - A kernel resolves the pointer of a whole input pixel or row at once, then runs the same inner loop
 *     as its tensor-level twin: the wrap costs a compare per pixel or row, not per byte. The few pixels or
 *     rows that straddle the wrap are copied into a `bounce` buffer (in `scratch`) or read in two parts.
 *   - Output unit t (a pixel, an FC row, a last-axis row, or one element for the direct element-wise
 *     kernels) is stored at output offset t * U, in row-major order, after every read it depends on;
 *     staged kernels build it in `stage` (U bytes, outside the pool) and store it with at most one split.
 *     Reading a later unit's inputs early or storing a unit late is always safe, never the reverse.
 *   - Params structs are those of the tensor-level kernels (vmcu_kernels.h); the arithmetic is theirs
 *     (vmcu_fixedpoint.h), so results are bit-exact with them and with the reference.
 *   - `scratch` is 4-byte aligned; the `_arm.c` twins of conv, depthwise and FC use the DSP extension and
 *     keep the prototypes (when no tensor of the op wraps they call the tensor kernel itself).
 *     vmcu.kernels.segbind sizes `stage` and `scratch` for each call exactly.
 */
#ifndef VMCU_SEG_H
#define VMCU_SEG_H

#include <stdint.h>
#include <string.h>

#include "vmcu_kernels.h"

/* A tensor as a kernel reads it. */
typedef struct {
    const int8_t *head;  /* pool + base */
    const int8_t *tail;  /* pool: where byte `split` of the tensor lives */
    int32_t split;       /* pool size - base: the first tensor offset past the pool end */
} vmcu_seg_src_t;

/* A tensor as a kernel writes it. */
typedef struct {
    int8_t *head;
    int8_t *tail;
    int32_t split;
} vmcu_seg_dst_t;

static inline vmcu_seg_src_t vmcu_seg_src(const int8_t *pool, int32_t pool_bytes, int32_t base) {
    const vmcu_seg_src_t v = {pool + base, pool, pool_bytes - base};
    return v;
}

static inline vmcu_seg_dst_t vmcu_seg_dst(int8_t *pool, int32_t pool_bytes, int32_t base) {
    const vmcu_seg_dst_t v = {pool + base, pool, pool_bytes - base};
    return v;
}

/* A flat array (a constant in flash) as a view that never wraps. */
static inline vmcu_seg_src_t vmcu_seg_flat(const void *data) {
    const vmcu_seg_src_t v = {(const int8_t *)data, (const int8_t *)data, INT32_MAX};
    return v;
}

static inline const int8_t *vmcu_seg_at(const vmcu_seg_src_t *v, int32_t off) {
    return off < v->split ? v->head + off : v->tail + (off - v->split);
}

static inline int8_t *vmcu_seg_dst_at(const vmcu_seg_dst_t *v, int32_t off) {
    return off < v->split ? v->head + off : v->tail + (off - v->split);
}

/* Whether a whole tensor of nbytes lies before the wrap: then `head` is a plain array. */
static inline int vmcu_seg_contiguous(int32_t split, int32_t nbytes) { return nbytes <= split; }

/* Bytes of an int8 NHWC tensor. */
static inline int32_t vmcu_seg_nhwc_bytes(const int32_t shape[4]) { return shape[0] * shape[1] * shape[2] * shape[3]; }

/* Bytes readable contiguously from `off` (to the wrap, or unbounded after it). */
static inline int32_t vmcu_seg_run(int32_t split, int32_t off) { return off < split ? split - off : INT32_MAX; }

/* Whether bytes [off, off + n) straddle the wrap. */
static inline int vmcu_seg_straddles(int32_t split, int32_t off, int32_t n) { return off < split && off + n > split; }

/* Copies n bytes of a tensor from `off` into dst (outside the pool: a stage or bounce; one or two memcpy). */
static inline void vmcu_seg_read(const vmcu_seg_src_t *v, int32_t off, int8_t *dst, int32_t n) {
    if (vmcu_seg_straddles(v->split, off, n)) {
        const int32_t first = v->split - off;
        memcpy(dst, v->head + off, (size_t)first);
        memcpy(dst + first, v->tail, (size_t)(n - first));
    } else if (n > 0) {
        memcpy(dst, vmcu_seg_at(v, off), (size_t)n);
    }
}

/* Copies n bytes from src (outside the pool: a stage) into a tensor at `off` (one or two memcpy). */
static inline void vmcu_seg_write(const vmcu_seg_dst_t *v, int32_t off, const int8_t *src, int32_t n) {
    if (vmcu_seg_straddles(v->split, off, n)) {
        const int32_t first = v->split - off;
        memcpy(v->head + off, src, (size_t)first);
        memcpy(v->tail, src + first, (size_t)(n - first));
    } else if (n > 0) {
        memcpy(vmcu_seg_dst_at(v, off), src, (size_t)n);
    }
}

static inline void vmcu_seg_fill(const vmcu_seg_dst_t *v, int32_t off, int8_t value, int32_t n) {
    if (vmcu_seg_straddles(v->split, off, n)) {
        const int32_t first = v->split - off;
        memset(v->head + off, value, (size_t)first);
        memset(v->tail, value, (size_t)(n - first));
    } else if (n > 0) {
        memset(vmcu_seg_dst_at(v, off), value, (size_t)n);
    }
}

/* Copies n bytes between two tensors front to back, in runs that neither wrap (memmove within a run). */
static inline void vmcu_seg_copy(const vmcu_seg_src_t *src, int32_t src_off, const vmcu_seg_dst_t *dst,
                                 int32_t dst_off, int32_t n) {
    while (n > 0) {
        int32_t k = n < vmcu_seg_run(src->split, src_off) ? n : vmcu_seg_run(src->split, src_off);
        k = k < vmcu_seg_run(dst->split, dst_off) ? k : vmcu_seg_run(dst->split, dst_off);
        memmove(vmcu_seg_dst_at(dst, dst_off), vmcu_seg_at(src, src_off), (size_t)k);
        src_off += k;
        dst_off += k;
        n -= k;
    }
}

/* n contiguous input bytes at `off`: in the pool, or copied into `bounce` when they straddle the wrap. */
static inline const int8_t *vmcu_seg_span(const vmcu_seg_src_t *v, int32_t off, int32_t n, int8_t *bounce) {
    if (vmcu_seg_straddles(v->split, off, n)) {
        vmcu_seg_read(v, off, bounce, n);
        return bounce;
    }
    return vmcu_seg_at(v, off);
}

/* Where to build an output unit of n bytes at `off`: in place, or in `stage` when it straddles the wrap
 * (then vmcu_seg_commit stores it). */
static inline int8_t *vmcu_seg_unit(const vmcu_seg_dst_t *v, int32_t off, int32_t n, int8_t *stage) {
    return vmcu_seg_straddles(v->split, off, n) ? stage : vmcu_seg_dst_at(v, off);
}

static inline void vmcu_seg_commit(const vmcu_seg_dst_t *v, int32_t off, int32_t n, const int8_t *unit,
                                   const int8_t *stage) {
    if (unit == stage) {
        vmcu_seg_write(v, off, stage, n);
    }
}

/* Output rows of a windowed op (NHWC, int8) as the seg kernels hand them to their tensor twins. */
typedef struct {
    int32_t in_h, row_in;    /* input rows per image, bytes per input row */
    int32_t out_h, row_out;  /* output rows per image, bytes per output row */
    int32_t stride, pad_top;
    int32_t reach;           /* input rows one output row's windows span: (kh - 1) * dilation + 1 */
} vmcu_seg_rows_t;

/* The longest run of output rows [oy0, oy1) of image b whose input rows [*r0, *r1) and output rows both
 * straddle neither wrap (returns oy1; oy1 == oy0 when row oy0 itself straddles one): a flat sub-image for
 * the tensor kernel, with pad_top r0 - (oy0 * stride - pad_top). */
static inline int32_t vmcu_seg_flat_rows(const vmcu_seg_rows_t *g, const vmcu_seg_src_t *in,
                                         const vmcu_seg_dst_t *out, int32_t b, int32_t oy0, int32_t *r0,
                                         int32_t *r1) {
    const int32_t image = b * g->in_h * g->row_in, first = (b * g->out_h + oy0) * g->row_out;
    const int32_t y0 = oy0 * g->stride - g->pad_top;
    int32_t oy1 = oy0;
    *r0 = *r1 = y0 < 0 ? 0 : (y0 > g->in_h ? g->in_h : y0);
    while (oy1 < g->out_h) {
        int32_t r = oy1 * g->stride - g->pad_top + g->reach;
        r = r < *r0 ? *r0 : (r > g->in_h ? g->in_h : r);
        if (vmcu_seg_straddles(in->split, image + *r0 * g->row_in, (r - *r0) * g->row_in) ||
            vmcu_seg_straddles(out->split, first, (oy1 + 1 - oy0) * g->row_out)) {
            break;
        }
        *r1 = r;
        oy1 += 1;
    }
    return oy1;
}

/* Windowed and matrix ops: `stage` holds one output unit, `scratch` a bounce pixel or row (NULL when no
 * input pixel straddles the wrap) and, in the arm variant, the tensor kernel's column buffers; the pools
 * keep 4 * depth bytes of int32 accumulators there. */
void vmcu_seg_conv_2d_s8(const vmcu_conv_2d_params_t *p, vmcu_seg_src_t input, const int8_t *filter,
                         const int32_t *bias, vmcu_seg_dst_t output, int8_t *stage, int8_t *scratch);
void vmcu_seg_depthwise_conv_2d_s8(const vmcu_depthwise_conv_2d_params_t *p, vmcu_seg_src_t input,
                                   const int8_t *filter, const int32_t *bias, vmcu_seg_dst_t output,
                                   int8_t *stage, int8_t *scratch);
void vmcu_seg_fully_connected_s8(const vmcu_fully_connected_params_t *p, vmcu_seg_src_t input,
                                 const int8_t *filter, const int32_t *bias, vmcu_seg_dst_t output,
                                 int8_t *stage, int8_t *scratch);
void vmcu_seg_average_pool_2d_s8(const vmcu_pool_2d_params_t *p, vmcu_seg_src_t input, vmcu_seg_dst_t output,
                                 int8_t *stage, int8_t *scratch);
void vmcu_seg_max_pool_2d_s8(const vmcu_pool_2d_params_t *p, vmcu_seg_src_t input, vmcu_seg_dst_t output,
                             int8_t *stage, int8_t *scratch);

/* Element-wise ops store each element right after reading it (no stage); DEQUANTIZE stages a row. */
void vmcu_seg_add_s8(const vmcu_add_params_t *p, vmcu_seg_src_t input1, vmcu_seg_src_t input2,
                     vmcu_seg_dst_t output);
void vmcu_seg_mul_s8(const vmcu_mul_params_t *p, vmcu_seg_src_t input1, vmcu_seg_src_t input2,
                     vmcu_seg_dst_t output);
void vmcu_seg_logistic_s8(const vmcu_logistic_params_t *p, vmcu_seg_src_t input, vmcu_seg_dst_t output);
void vmcu_seg_quantize_s8(const vmcu_quantize_params_t *p, vmcu_seg_src_t input, vmcu_seg_dst_t output);
void vmcu_seg_quantize_f32_s8(const vmcu_quantize_params_t *p, vmcu_seg_src_t input, vmcu_seg_dst_t output);
void vmcu_seg_dequantize_s8(const vmcu_dequantize_params_t *p, vmcu_seg_src_t input, vmcu_seg_dst_t output,
                            int8_t *stage);

/* Row ops stage one row of the output's last axis; `scratch` bounces a softmax input row. */
void vmcu_seg_softmax_s8(const vmcu_softmax_params_t *p, vmcu_seg_src_t input, vmcu_seg_dst_t output,
                         int8_t *stage, int8_t *scratch);
void vmcu_seg_softmax_s8_s16(const vmcu_softmax_params_t *p, vmcu_seg_src_t input, vmcu_seg_dst_t output,
                             int8_t *stage, int8_t *scratch);
void vmcu_seg_mean_s8(const vmcu_mean_params_t *p, vmcu_seg_src_t input, vmcu_seg_dst_t output, int8_t *stage);
void vmcu_seg_pad_s8(const vmcu_pad_params_t *p, vmcu_seg_src_t input, vmcu_seg_dst_t output, int8_t *stage);

/* Data movement: RESHAPE copies front to back (its output may overlap its input by the plan's gap);
 * TRANSPOSE and CONCATENATION never overlap their inputs. */
void vmcu_seg_reshape_s8(const vmcu_reshape_params_t *p, vmcu_seg_src_t input, vmcu_seg_dst_t output);
void vmcu_seg_transpose_s8(const vmcu_transpose_params_t *p, vmcu_seg_src_t input, vmcu_seg_dst_t output);
void vmcu_seg_concatenation_s8(const vmcu_concatenation_params_t *p, const vmcu_seg_src_t *inputs,
                               vmcu_seg_dst_t output);

/* Rotates the whole pool left by `shift` bytes in place (byte x moves to x - shift mod pool_bytes): how
 * generated code makes graph inputs and outputs that the plan places across the pool end contiguous. */
void vmcu_seg_rotate(int8_t *pool, int32_t pool_bytes, int32_t shift);

/* Fused inverted bottleneck (vmcu.plan.fused): 1x1 expand -> kxk depthwise -> 1x1 project [-> + input].
 * `depthwise` is stated on the expanded tensor (an absorbed PAD's padding included); `add` is NULL without
 * a residual. The expanded pixels live in a ring of ring_h x ring_w pixels: cache = 1 keeps rows of E
 * (the columns the windows need), cache = 0 the window. `workspace` (the plan's, no alignment needed):
 * the ring and one depthwise pixel, (ring_h * ring_w + 1) * C_mid bytes; no stage, output pixels go
 * straight into the pool. `scratch` (4-byte aligned) is NULL for the portable kernel; the arm one takes
 * vmcu.plan.fused.kernel_scratch_bytes. */
typedef struct {
    const vmcu_conv_2d_params_t *expand;
    const vmcu_depthwise_conv_2d_params_t *depthwise;
    const vmcu_conv_2d_params_t *project;
    const vmcu_add_params_t *add;
    int32_t residual_first; /* the block input is the ADD's first operand */
    int32_t cache;
    int32_t ring_h, ring_w;
} vmcu_fused_ib_params_t;

void vmcu_seg_fused_ib_s8(const vmcu_fused_ib_params_t *p, vmcu_seg_src_t input, const int8_t *expand_filter,
                          const int32_t *expand_bias, const int8_t *depthwise_filter,
                          const int32_t *depthwise_bias, const int8_t *project_filter,
                          const int32_t *project_bias, vmcu_seg_dst_t output, int8_t *workspace,
                          int8_t *scratch);

#endif /* VMCU_SEG_H */
