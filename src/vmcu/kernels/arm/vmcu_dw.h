/* The DSP depthwise kernel (arm/depthwise_conv_2d.c) on tensors given as views of a circular pool
 * (vmcu_seg.h): vmcu_depthwise_conv_2d_s8 runs it on flat views, seg/seg_depthwise_conv_2d_arm.c on the
 * pool's views. */
#ifndef VMCU_DW_H
#define VMCU_DW_H

#include "vmcu_seg.h"

/* The records of the first `groups` groups of four channels, built once by the caller and lent to calls
 * that run a few rows each (the fused bottleneck's output rows), which then do not rebuild them. */
typedef struct {
    const uint32_t *words;
    int32_t groups;
} vmcu_dw_records_t;

/* Words of one group's record: its four accumulator starts, two words a tap, three constants a channel. */
static inline int32_t vmcu_dw_record_words(const vmcu_depthwise_conv_2d_params_t *p) {
    return 4 + 2 * p->filter_shape[1] * p->filter_shape[2] + 12;
}

/* The records of groups 0 .. groups - 1 at `records` (vmcu_dw_record_words each). */
void vmcu_depthwise_conv_2d_records_s8(const vmcu_depthwise_conv_2d_params_t *p, const int8_t *filter,
                                       const int32_t *bias, int32_t groups, uint32_t *records);

/* The first `grouped_rows` output rows (over all images; INT32_MAX: all) run group of four channels after
 * group, which the caller allows when none of their output bytes lands on an input byte of another channel
 * (see depthwise_conv_2d.c); the other rows run one at a time. `lent`: NULL, or records of the first groups
 * (the kernel builds the others in `scratch`, which keeps room for them). */
void vmcu_depthwise_conv_2d_views_s8(const vmcu_depthwise_conv_2d_params_t *p, const vmcu_seg_src_t *input,
                                     const int8_t *filter, const int32_t *bias, const vmcu_seg_dst_t *output,
                                     int32_t grouped_rows, const vmcu_dw_records_t *lent, int8_t *scratch);

/* Output channels c .. c + 3 of image 0 of a flat input, each pixel's four bytes after the previous one's in
 * `plane` (Ho * Wo * 4 bytes), or, when c + 4 > C, the last C - c channels exactly in its first C - c bytes;
 * the activation range is left to the caller. Reads input channels c .. c + 3 only (depth multiplier 1).
 * Scratch: one group's record, a window and the staged rows of a grouped pass
 * (vmcu.kernels.scratch.inplace_depthwise_scratch_bytes). For the in-place kernel. */
void vmcu_depthwise_conv_2d_plane_s8(const vmcu_depthwise_conv_2d_params_t *p, const int8_t *input,
                                     const int8_t *filter, const int32_t *bias, int32_t c, int8_t *plane,
                                     int8_t *scratch);

#endif /* VMCU_DW_H */
