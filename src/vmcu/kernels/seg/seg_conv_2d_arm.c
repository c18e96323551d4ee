/* CONV_2D int8 on the circular pool for Cortex-M with the DSP extension (same results as seg_conv_2d.c and
 * ref/conv_2d.c).
 *
 * The work goes to the tensor kernel (arm/conv_2d.c, as tuned) wherever the wrap allows: the output is
 * walked in order in rows of pixels, and each maximal run of them whose input rows and output straddle
 * neither tensor's wrap is one call on the flat sub-image (its padding adjusted). The rows that straddle a
 * wrap, and runs of fewer pixels than a block, run the same kernel's gather and blocks on the pool's views
 * (vmcu_conv_2d_views_s8, vmcu_conv.h): a receptive field that straddles the wrap is gathered through an
 * int8 staging row, and a block whose output straddles it goes pixel by pixel, the pixel across the wrap
 * through `stage`. A 1x1 stride-1 conv runs whole on the views (its blocks of consecutive pixels then go
 * on across the wrap), but with C_in 8 or 16, whose one-pixel loops take runs of pixels that straddle
 * neither wrap and leave the views the pixels that straddle one.
 */
#include "vmcu_arm.h"
#include "vmcu_conv.h"
#include "vmcu_seg.h"

#define VMCU_SEG_BLOCK 4 /* pixels of a block of the tensor kernel (two when four take too much scratch) */

/* Whether the tensor kernel runs a 1x1 stride-1 conv one pixel at a time (its loops for C_in 8 and 16). */
static int one_pixel(const vmcu_conv_2d_params_t *p) {
    const int32_t k = p->input_shape[3], out_c = p->output_shape[3];
    return (k == 8 || k == 16) && out_c % 2 == 0 && (2 * k + 16) * out_c <= VMCU_SCRATCH_MAX;
}

/* Pixels from pixel t on (of `pixels`) whose input and output straddle neither wrap (1x1 stride 1). */
static inline int32_t flat_pixels(const vmcu_conv_2d_params_t *p, const vmcu_seg_src_t *input,
                                  const vmcu_seg_dst_t *output, int32_t t, int32_t pixels) {
    const int32_t in_c = p->input_shape[3], out_c = p->output_shape[3];
    return vmcu_min_i32(pixels - t, vmcu_min_i32(vmcu_seg_run(input->split, t * in_c) / in_c,
                                                 vmcu_seg_run(output->split, t * out_c) / out_c));
}

/* A 1x1 stride-1 unpadded conv with C_in 8 or 16 maps pixel t to pixel t: runs of pixels that straddle
 * neither tensor's wrap go to the tensor kernel as one-row images, the pixels between them to the views. */
static void pointwise_runs(const vmcu_conv_2d_params_t *p, const vmcu_seg_src_t *input, const int8_t *filter,
                           const int32_t *bias, const vmcu_seg_dst_t *output, int8_t *stage, int8_t *scratch) {
    const int32_t in_c = p->input_shape[3], out_c = p->output_shape[3];
    const int32_t pixels = vmcu_seg_nhwc_bytes(p->output_shape) / out_c;
    vmcu_conv_2d_params_t q = *p;
    for (int32_t t = 0; t < pixels;) {
        const int32_t k = flat_pixels(p, input, output, t, pixels);
        if (k == 0) {
            int32_t end = t + 1;
            while (end < pixels && flat_pixels(p, input, output, end, pixels) == 0) {
                end += 1;
            }
            vmcu_conv_2d_views_s8(p, input, filter, bias, output, t, end, stage, scratch);
            t = end;
            continue;
        }
        q.input_shape[0] = q.input_shape[1] = q.output_shape[0] = q.output_shape[1] = 1;
        q.input_shape[2] = q.output_shape[2] = k;
        vmcu_conv_2d_s8(&q, vmcu_seg_at(input, t * in_c), filter, bias, vmcu_seg_dst_at(output, t * out_c), scratch);
        t += k;
    }
}

/* vmcu_seg_flat_rows, except that a run of fewer output pixels than a block counts as none. */
static int32_t block_rows(const vmcu_seg_rows_t *g, const vmcu_seg_src_t *in, const vmcu_seg_dst_t *out, int32_t b,
                          int32_t oy0, int32_t out_w, int32_t *r0, int32_t *r1) {
    const int32_t oy1 = vmcu_seg_flat_rows(g, in, out, b, oy0, r0, r1);
    return (oy1 - oy0) * out_w < VMCU_SEG_BLOCK ? oy0 : oy1;
}

void vmcu_seg_conv_2d_s8(const vmcu_conv_2d_params_t *p, vmcu_seg_src_t input, const int8_t *filter,
                         const int32_t *bias, vmcu_seg_dst_t output, int8_t *stage, int8_t *scratch) {
    if (vmcu_seg_contiguous(input.split, vmcu_seg_nhwc_bytes(p->input_shape)) &&
        vmcu_seg_contiguous(output.split, vmcu_seg_nhwc_bytes(p->output_shape))) {
        vmcu_conv_2d_s8(p, input.head, filter, bias, output.head, scratch);  /* nothing wraps */
        return;
    }
    if (p->filter_shape[1] == 1 && p->filter_shape[2] == 1 && p->stride_h == 1 && p->stride_w == 1 &&
        p->pad_top == 0 && p->pad_left == 0) {
        if (one_pixel(p)) {
            pointwise_runs(p, &input, filter, bias, &output, stage, scratch);
        } else {
            vmcu_conv_2d_views_s8(p, &input, filter, bias, &output, 0,
                                  vmcu_seg_nhwc_bytes(p->output_shape) / p->output_shape[3], stage, scratch);
        }
        return;
    }
    /* Output rows in order, per image: maximal runs of rows whose input band and output rows straddle
     * neither wrap are sub-images for the tensor kernel (input rows [r0, r1), padding adjusted); a row
     * that straddles one, or a run of fewer pixels than a block (the tensor kernel's slow path), goes to the
     * views. */
    const vmcu_seg_rows_t g = {p->input_shape[1], p->input_shape[2] * p->input_shape[3], p->output_shape[1],
                               p->output_shape[2] * p->output_shape[3], p->stride_h, p->pad_top,
                               (p->filter_shape[1] - 1) * p->dilation_h + 1};
    vmcu_conv_2d_params_t q = *p;
    for (int32_t b = 0; b < p->output_shape[0]; ++b) {
        for (int32_t oy0 = 0; oy0 < g.out_h;) {
            int32_t r0, r1;
            const int32_t oy1 = block_rows(&g, &input, &output, b, oy0, p->output_shape[2], &r0, &r1);
            const int32_t row = b * g.out_h + oy0;
            if (oy1 == oy0) {
                int32_t end = oy0 + 1;  /* the run of rows for the views, in one call */
                while (end < g.out_h &&
                       block_rows(&g, &input, &output, b, end, p->output_shape[2], &r0, &r1) == end) {
                    end += 1;
                }
                vmcu_conv_2d_views_s8(p, &input, filter, bias, &output, row * p->output_shape[2],
                                      (row + end - oy0) * p->output_shape[2], stage, scratch);
                oy0 = end;
                continue;
            }
            q.input_shape[0] = q.output_shape[0] = 1;
            q.input_shape[1] = r1 - r0;
            q.output_shape[1] = oy1 - oy0;
            q.pad_top = r0 - (oy0 * p->stride_h - p->pad_top);
            q.pad_bottom = vmcu_max_i32(0, (oy1 - 1) * p->stride_h - p->pad_top + g.reach - r1);
            vmcu_conv_2d_s8(&q, vmcu_seg_at(&input, (b * g.in_h + r0) * g.row_in), filter, bias,
                            vmcu_seg_dst_at(&output, row * g.row_out), scratch);
            oy0 = oy1;
        }
    }
}
