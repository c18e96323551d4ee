/* DEPTHWISE_CONV_2D int8, depth multiplier 1, in place (TinyEngine): the output overwrites its input.
 *
 * Same arithmetic as vmcu_depthwise_conv_2d_s8 (TFLM DepthwiseConvPerChannel), another loop order. Input
 * [N][H][W][C] and output [N][Ho][Wo][C] both start at `data`, and Ho * Wo <= H * W (the planner aliases
 * only an output no larger than its input). The kernel takes one (batch b, channel c) at a time: it
 * computes the whole output plane of channel c into scratch (Ho * Wo bytes), reading input channel c only,
 * and then stores the plane into the NHWC output.
 *
 * Why no byte is overwritten before it is read. NHWC offsets are pixel * C + channel and every batch
 * starts at a multiple of C, so in input and output alike the byte at offset k holds channel k mod C.
 * Storing output channel c of batch b writes offsets b*Ho*Wo*C + q*C + c (q < Ho*Wo), all = c (mod C),
 * all below (b + 1) * Ho*Wo*C <= (b + 1) * H*W*C, where input batch b + 1 begins. So it only overwrites
 * input channel c of batch b, read completely into the plane just computed, or bytes of earlier batches,
 * all read already; the input channels c' != c still to come sit at other residues and stay intact.
 * The argument never uses stride, dilation or padding: they only choose which pixels of input channel c
 * feed the plane (with stride 2 most input rows are read by no output row, with padding some taps fall
 * outside), and every one of those reads happens before the plane is stored.
 */
#include "vmcu_fixedpoint.h"
#include "vmcu_kernels.h"

static int32_t accumulate(const vmcu_depthwise_conv_2d_params_t *p, const int8_t *input, const int8_t *filter,
                          int32_t c, int32_t oy, int32_t ox) {
    const int32_t in_h = p->input_shape[1], in_w = p->input_shape[2], channels = p->input_shape[3];
    const int32_t filter_h = p->filter_shape[1], filter_w = p->filter_shape[2];
    const int32_t in_y0 = oy * p->stride_h - p->pad_top, in_x0 = ox * p->stride_w - p->pad_left;
    int32_t acc = 0;
    for (int32_t fy = 0; fy < filter_h; ++fy) {
        const int32_t iy = in_y0 + p->dilation_h * fy;
        if (iy < 0 || iy >= in_h) {
            continue;
        }
        for (int32_t fx = 0; fx < filter_w; ++fx) {
            const int32_t ix = in_x0 + p->dilation_w * fx;
            if (ix < 0 || ix >= in_w) {
                continue;
            }
            const int32_t x = input[(iy * in_w + ix) * channels + c];
            acc += filter[(fy * filter_w + fx) * channels + c] * (x + p->input_offset);
        }
    }
    return acc;
}

void vmcu_depthwise_conv_2d_inplace_s8(const vmcu_depthwise_conv_2d_params_t *p, int8_t *data,
                                       const int8_t *filter, const int32_t *bias, int8_t *scratch) {
    const int32_t batches = p->input_shape[0], channels = p->input_shape[3];
    const int32_t in_pixels = p->input_shape[1] * p->input_shape[2];
    const int32_t out_w = p->output_shape[2], out_pixels = p->output_shape[1] * p->output_shape[2];
    for (int32_t b = 0; b < batches; ++b) {
        const int8_t *input = data + b * in_pixels * channels;
        int8_t *output = data + b * out_pixels * channels;
        for (int32_t c = 0; c < channels; ++c) {
            for (int32_t q = 0; q < out_pixels; ++q) {
                int32_t acc = accumulate(p, input, filter, c, q / out_w, q % out_w);
                if (p->has_bias) {
                    acc += bias[c];
                }
                acc = vmcu_multiply_by_quantized_multiplier(acc, p->output_multiplier[c], p->output_shift[c]);
                scratch[q] = (int8_t)vmcu_clamp_i32(acc + p->output_offset, p->activation_min, p->activation_max);
            }
            for (int32_t q = 0; q < out_pixels; ++q) {
                output[q * channels + c] = scratch[q];
            }
        }
    }
}
