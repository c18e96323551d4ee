/* The DSP CONV_2D kernel (arm/conv_2d.c) on tensors given as views of a circular pool (vmcu_seg.h):
 * vmcu_conv_2d_s8 runs its blocks on flat views, seg/seg_conv_2d_arm.c on the pool's views the pixels it
 * cannot hand to vmcu_conv_2d_s8 as flat runs. */
#ifndef VMCU_CONV_H
#define VMCU_CONV_H

#include "vmcu_seg.h"

/* Output pixels [px0, px1) (row-major over all images) through the tensor kernel's column, gather and
 * blocks, reading the input and storing the output through the views; the activation range applied. A block
 * whose output straddles the output's wrap, and a last block of fewer pixels, go one pixel at a time, a
 * pixel that straddles the wrap through `stage` (C_out bytes). Scratch (vmcu.kernels.scratch,
 * conv_views_arm_scratch_bytes): the tensor kernel's column, staging row, padded last weight row and channel
 * table, then, when C_in % 4 == 0 and the input wraps, a staging row (4 * ceil(K / 4) bytes) for fields
 * that straddle the wrap. */
void vmcu_conv_2d_views_s8(const vmcu_conv_2d_params_t *p, const vmcu_seg_src_t *input, const int8_t *filter,
                           const int32_t *bias, const vmcu_seg_dst_t *output, int32_t px0, int32_t px1, int8_t *stage,
                           int8_t *scratch);

#endif /* VMCU_CONV_H */
