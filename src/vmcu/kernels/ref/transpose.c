/* TRANSPOSE int8: output dimension i walks input dimension perm[i]. */
#include "vmcu_nd.h"

void vmcu_transpose_s8(const vmcu_transpose_params_t *p, const int8_t *input, int8_t *output) {
    int32_t in_strides[VMCU_MAX_DIMS], strides[VMCU_MAX_DIMS];
    vmcu_nd_strides(p->input_shape, 0, in_strides);
    for (int32_t d = 0; d < VMCU_MAX_DIMS; ++d) {
        strides[d] = in_strides[p->perm[d]];
    }
    const int32_t last = VMCU_MAX_DIMS - 1, inner = p->output_shape[last], step = strides[last];
    int32_t out_strides[VMCU_MAX_DIMS];
    const int32_t rows = vmcu_nd_strides(p->output_shape, 0, out_strides) / inner;
    int32_t idx[VMCU_MAX_DIMS] = {0};
    for (int32_t r = 0; r < rows; ++r) {
        const int8_t *src = input + vmcu_nd_offset(idx, strides);
        for (int32_t i = 0; i < inner; ++i) {
            *output++ = src[i * step];
        }
        vmcu_nd_next(idx, p->output_shape, 1);
    }
}
