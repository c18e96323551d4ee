/* Addressing for patch-based and stream stages (vmcu/codegen/patch.py).
 *
 * Kernels take contiguous NHWC buffers, but a stage op reads a window of a larger buffer (the input image,
 * a tile buffer wider than the window, a ring of the last rows of a tensor) and may write one row of a tile
 * into the full stage output. A window that is one contiguous run of its buffer is handed to the kernel in
 * place; only the others are gathered into a staging area, so the common case copies nothing. A ring keeps
 * pixel (y, x) of a tensor of width W in slot (y * W + x) % pixels: a whole-image buffer is the ring whose
 * capacity is every pixel, which never wraps.
 */
#include <string.h>

#include "vmcu_kernels.h"

static int32_t slot_of(const vmcu_ring_t *r, int32_t y, int32_t x) {
    return (y * r->width + x) % r->pixels;
}

/* Whether `count` consecutive pixels from slot `slot` run past the end of the ring. */
static int32_t wraps(const vmcu_ring_t *r, int32_t slot, int32_t count) {
    return slot + count > r->pixels;
}

const int8_t *vmcu_ring_read(const vmcu_ring_t *r, int32_t y, int32_t rows, int32_t x, int32_t cols,
                             int8_t *stage) {
    if (rows <= 0 || cols <= 0) {
        return r->base;  /* a window wholly in padding: the kernel reads nothing */
    }
    const int32_t pb = r->pixel_bytes, first = slot_of(r, y, x);
    if ((rows == 1 || cols == r->width) && !wraps(r, first, (rows - 1) * r->width + cols)) {
        return r->base + first * pb;
    }
    int8_t *dst = stage;
    for (int32_t k = 0; k < rows; ++k, dst += cols * pb) {
        const int32_t slot = slot_of(r, y + k, x);
        const int32_t head = wraps(r, slot, cols) ? r->pixels - slot : cols;
        memcpy(dst, r->base + slot * pb, (size_t)(head * pb));
        memcpy(dst + head * pb, r->base, (size_t)((cols - head) * pb));
    }
    return stage;
}

int8_t *vmcu_ring_slot(const vmcu_ring_t *r, int32_t y, int32_t x, int32_t cols, int8_t *stage) {
    const int32_t slot = slot_of(r, y, x);
    return wraps(r, slot, cols) ? stage : r->base + slot * r->pixel_bytes;
}

void vmcu_ring_commit(const vmcu_ring_t *r, int32_t y, int32_t x, int32_t cols, const int8_t *written) {
    const int32_t pb = r->pixel_bytes, slot = slot_of(r, y, x);
    if (!wraps(r, slot, cols)) {
        return;  /* the kernel wrote in place */
    }
    const int32_t head = r->pixels - slot;
    memcpy(r->base + slot * pb, written, (size_t)(head * pb));
    memcpy(r->base, written + head * pb, (size_t)((cols - head) * pb));
}

void vmcu_axis_rows(int32_t out_row, int32_t stride, int32_t offset, int32_t extent, int32_t size,
                    int32_t *first, int32_t *rows, int32_t *pad_before, int32_t *pad_after) {
    const int32_t lo = out_row * stride - offset, hi = lo + extent;
    const int32_t a = lo < 0 ? 0 : (lo > size ? size : lo);
    const int32_t b = hi > size ? size : hi;
    const int32_t before = (hi < 0 ? hi : 0) - lo, after = hi - (size > lo ? size : lo);
    *first = a;
    *rows = b > a ? b - a : 0;
    *pad_before = before > 0 ? before : 0;
    *pad_after = after > 0 ? after : 0;
}

void vmcu_copy_rows(int8_t *dst, const int8_t *src, int32_t src_stride, int32_t rows, int32_t row_bytes) {
    for (int32_t k = 0; k < rows; ++k) {
        memcpy(dst + k * row_bytes, src + k * src_stride, (size_t)row_bytes);
    }
}
