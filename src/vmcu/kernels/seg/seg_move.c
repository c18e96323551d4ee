/* Data movement on the circular pool: RESHAPE copies front to back in runs that do not wrap (its output
 * may start the plan's gap before its input); TRANSPOSE resolves each output row and the input elements
 * it gathers once (element by element where either straddles the wrap, not at all when neither tensor
 * wraps; its output never overlaps its input); CONCATENATION copies blocks in runs, as
 * ref/concatenation.c does. vmcu_seg_rotate turns the whole pool by three in-place reversals, a word from
 * each end at a time. */
#include "vmcu_nd.h"
#include "vmcu_seg.h"

void vmcu_seg_reshape_s8(const vmcu_reshape_params_t *p, vmcu_seg_src_t input, vmcu_seg_dst_t output) {
    if (input.head != output.head) {
        vmcu_seg_copy(&input, 0, &output, 0, p->nbytes);
    }
}

/* The output rows of TRANSPOSE, input element strides[d] apart along output dimension d; specialised by
 * `ring` when inlined: without it (neither tensor wraps) each view is a plain array. */
static inline __attribute__((always_inline)) void transpose_rows(const vmcu_transpose_params_t *p,
                                                                 const vmcu_seg_src_t *input,
                                                                 const vmcu_seg_dst_t *output,
                                                                 const int32_t *strides, const int ring) {
    const int32_t last = VMCU_MAX_DIMS - 1, inner = p->output_shape[last], step = strides[last];
    int32_t out_strides[VMCU_MAX_DIMS];
    const int32_t rows = vmcu_nd_strides(p->output_shape, 0, out_strides) / inner;
    int32_t idx[VMCU_MAX_DIMS] = {0};
    for (int32_t r = 0, o = 0; r < rows; ++r, o += inner) {
        const int32_t src = vmcu_nd_offset(idx, strides);
        if (ring && (vmcu_seg_straddles(input->split, src, (inner - 1) * step + 1) ||
                     vmcu_seg_straddles(output->split, o, inner))) {
            for (int32_t i = 0; i < inner; ++i) {
                *vmcu_seg_dst_at(output, o + i) = *vmcu_seg_at(input, src + i * step);
            }
        } else {
            const int8_t *x = ring ? vmcu_seg_at(input, src) : input->head + src;
            int8_t *y = ring ? vmcu_seg_dst_at(output, o) : output->head + o;
            for (int32_t i = 0; i < inner; ++i) {
                y[i] = x[i * step];
            }
        }
        vmcu_nd_next(idx, p->output_shape, 1);
    }
}

void vmcu_seg_transpose_s8(const vmcu_transpose_params_t *p, vmcu_seg_src_t input, vmcu_seg_dst_t output) {
    int32_t in_strides[VMCU_MAX_DIMS], strides[VMCU_MAX_DIMS];
    const int32_t n = vmcu_nd_strides(p->input_shape, 0, in_strides);
    for (int32_t d = 0; d < VMCU_MAX_DIMS; ++d) {
        strides[d] = in_strides[p->perm[d]];
    }
    if (vmcu_seg_contiguous(input.split, n) && vmcu_seg_contiguous(output.split, n)) {
        transpose_rows(p, &input, &output, strides, 0);
    } else {
        transpose_rows(p, &input, &output, strides, 1);
    }
}

void vmcu_seg_concatenation_s8(const vmcu_concatenation_params_t *p, const vmcu_seg_src_t *inputs,
                               vmcu_seg_dst_t output) {
    int32_t outer = 1, inner = 1;
    for (int32_t d = 0; d < p->axis; ++d) {
        outer *= p->output_shape[d];
    }
    for (int32_t d = p->axis + 1; d < VMCU_MAX_DIMS; ++d) {
        inner *= p->output_shape[d];
    }
    for (int32_t o = 0, at = 0; o < outer; ++o) {
        for (int32_t i = 0; i < p->num_inputs; ++i) {
            const int32_t block = p->input_shapes[i * VMCU_MAX_DIMS + p->axis] * inner;
            vmcu_seg_copy(&inputs[i], o * block, &output, at, block);
            at += block;
        }
    }
}

/* Reverses a[0, n): four bytes from each end at a time (a byte swap of each word, then the words swapped;
 * memcpy for any alignment, one load or store on Cortex-M), the middle byte by byte. */
static void reverse(int8_t *a, int32_t n) {
    int32_t i = 0, j = n;
    for (; j - i >= 8; i += 4, j -= 4) {
        uint32_t x, y;
        memcpy(&x, a + i, 4);
        memcpy(&y, a + j - 4, 4);
        x = __builtin_bswap32(x);
        y = __builtin_bswap32(y);
        memcpy(a + i, &y, 4);
        memcpy(a + j - 4, &x, 4);
    }
    for (--j; i < j; ++i, --j) {
        const int8_t t = a[i];
        a[i] = a[j];
        a[j] = t;
    }
}

void vmcu_seg_rotate(int8_t *pool, int32_t pool_bytes, int32_t shift) {
    reverse(pool, shift);
    reverse(pool + shift, pool_bytes - shift);
    reverse(pool, pool_bytes);
}
