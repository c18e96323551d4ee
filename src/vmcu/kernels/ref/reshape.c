/* RESHAPE / SQUEEZE / EXPAND_DIMS: a byte copy; memmove because a memory plan may overlap the buffers. */
#include <string.h>

#include "vmcu_kernels.h"

void vmcu_reshape_s8(const vmcu_reshape_params_t *p, const int8_t *input, int8_t *output) {
    if (input != output) {
        memmove(output, input, (size_t)p->nbytes);
    }
}
