/* Index helpers for the rank-generic kernels (shapes right-aligned to VMCU_MAX_DIMS). */
#ifndef VMCU_ND_H
#define VMCU_ND_H

#include "vmcu_kernels.h"

/* Row-major strides of `shape`; a broadcast dimension (size 1 where the output is larger) gets stride 0
 * when `out_shape` is given. Returns the element count of `shape`. */
static inline int32_t vmcu_nd_strides(const int32_t *shape, const int32_t *out_shape, int32_t *strides) {
    int32_t n = 1;
    for (int32_t d = VMCU_MAX_DIMS - 1; d >= 0; --d) {
        strides[d] = (out_shape != 0 && shape[d] == 1 && out_shape[d] != 1) ? 0 : n;
        n *= shape[d];
    }
    return n;
}

/* Advances the multi-index `idx` over `shape` in row-major order, skipping the last `skip` dims
 * (which the caller iterates itself). */
static inline void vmcu_nd_next(int32_t *idx, const int32_t *shape, int32_t skip) {
    for (int32_t d = VMCU_MAX_DIMS - 1 - skip; d >= 0; --d) {
        if (++idx[d] < shape[d]) {
            return;
        }
        idx[d] = 0;
    }
}

static inline int32_t vmcu_nd_offset(const int32_t *idx, const int32_t *strides) {
    int32_t off = 0;
    for (int32_t d = 0; d < VMCU_MAX_DIMS; ++d) {
        off += idx[d] * strides[d];
    }
    return off;
}

#endif /* VMCU_ND_H */
