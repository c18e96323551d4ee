/* The DSP depthwise kernel (arm/depthwise_conv_2d.c) on tensors given as views of a circular pool
 * (vmcu_seg.h): vmcu_depthwise_conv_2d_s8 runs it on flat views, seg/seg_depthwise_conv_2d_arm.c on the
 * pool's views. */
#ifndef VMCU_DW_H
#define VMCU_DW_H

#include "vmcu_seg.h"

/* The first `grouped_rows` output rows (over all images; INT32_MAX: all) run group of four channels after
 * group, which the caller allows when none of their output bytes lands on an input byte of another channel
 * (see depthwise_conv_2d.c); the other rows run one at a time. */
void vmcu_depthwise_conv_2d_views_s8(const vmcu_depthwise_conv_2d_params_t *p, const vmcu_seg_src_t *input,
                                     const int8_t *filter, const int32_t *bias, const vmcu_seg_dst_t *output,
                                     int32_t grouped_rows, int8_t *scratch);

#endif /* VMCU_DW_H */
