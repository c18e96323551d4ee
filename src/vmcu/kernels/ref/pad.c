/* PAD / PADV2 int8: rows of the output's last dimension are either all padding or padding, a copied input
 * row, padding. The row is moved before its padding is written, so an output overlapping the input (as a
 * segment plan allows) never overwrites input bytes it has yet to read. */
#include <string.h>

#include "vmcu_nd.h"

void vmcu_pad_s8(const vmcu_pad_params_t *p, const int8_t *input, int8_t *output) {
    const int32_t last = VMCU_MAX_DIMS - 1;
    const int32_t out_inner = p->output_shape[last], in_inner = p->input_shape[last];
    const int32_t before = p->paddings[last][0], after = p->paddings[last][1];
    int32_t in_strides[VMCU_MAX_DIMS], out_strides[VMCU_MAX_DIMS];
    vmcu_nd_strides(p->input_shape, 0, in_strides);
    const int32_t rows = vmcu_nd_strides(p->output_shape, 0, out_strides) / out_inner;
    int32_t idx[VMCU_MAX_DIMS] = {0};
    for (int32_t r = 0; r < rows; ++r, output += out_inner) {
        int32_t inside = 1, in_off = 0;
        for (int32_t d = 0; d < last; ++d) {
            const int32_t i = idx[d] - p->paddings[d][0];
            inside &= i >= 0 && i < p->input_shape[d];
            in_off += i * in_strides[d];
        }
        if (inside) {
            memmove(output + before, input + in_off, (size_t)in_inner);
            memset(output, p->pad_value, (size_t)before);
            memset(output + before + in_inner, p->pad_value, (size_t)after);
        } else {
            memset(output, p->pad_value, (size_t)out_inner);
        }
        vmcu_nd_next(idx, p->output_shape, 1);
    }
}
