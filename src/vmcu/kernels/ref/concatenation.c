/* CONCATENATION int8 with equal quantization everywhere: interleaved block copies along `axis`. */
#include <string.h>

#include "vmcu_kernels.h"

void vmcu_concatenation_s8(const vmcu_concatenation_params_t *p, const int8_t *const *inputs,
                           int8_t *output) {
    int32_t outer = 1, inner = 1;
    for (int32_t d = 0; d < p->axis; ++d) {
        outer *= p->output_shape[d];
    }
    for (int32_t d = p->axis + 1; d < VMCU_MAX_DIMS; ++d) {
        inner *= p->output_shape[d];
    }
    for (int32_t o = 0; o < outer; ++o) {
        for (int32_t i = 0; i < p->num_inputs; ++i) {
            const int32_t block = p->input_shapes[i * VMCU_MAX_DIMS + p->axis] * inner;
            memcpy(output, inputs[i] + o * block, (size_t)block);
            output += block;
        }
    }
}
