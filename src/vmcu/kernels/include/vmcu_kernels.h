/* vmcu int8 kernel library: one pure function per op, a params struct and plain pointers.
 *
 * Every params struct mirrors a dataclass of vmcu/ir/params.py field by field; vmcu.kernels.cparams maps
 * a dataclass to the C field values (the code generator and the tests both use it). Rules:
 *   - ints and bools are int32_t, floats are double (TFLM computes those scales in double);
 *   - per-channel tuples are pointers to const int32_t tables with one entry per output channel;
 *   - NHWC shapes of spatial ops are int32_t[4];
 *   - shapes of rank-generic ops are int32_t[VMCU_MAX_DIMS], right-aligned and padded with leading 1s
 *     (axes and permutations are renumbered accordingly);
 *   - string fields (dtypes) select the function and are not stored.
 * Kernels never allocate: those that need working memory take `scratch`, sized by
 * vmcu.kernels.scratch_bytes(); the portable variants need none and accept NULL.
 * Every kernel walks its output in row-major order; see README.md for what each iteration reads.
 */
#ifndef VMCU_KERNELS_H
#define VMCU_KERNELS_H

#include <stdint.h>

#define VMCU_MAX_DIMS 6

typedef struct {
    int32_t input_shape[4];
    int32_t filter_shape[4];  /* OHWI */
    int32_t output_shape[4];
    int32_t stride_h, stride_w;
    int32_t dilation_h, dilation_w;
    int32_t pad_top, pad_left, pad_bottom, pad_right;
    int32_t input_offset;     /* -input zero point */
    int32_t output_offset;    /* output zero point */
    const int32_t *output_multiplier;
    const int32_t *output_shift;
    int32_t activation_min, activation_max;
    int32_t has_bias;
} vmcu_conv_2d_params_t;

typedef struct {
    int32_t input_shape[4];
    int32_t filter_shape[4];  /* 1HWO */
    int32_t output_shape[4];
    int32_t stride_h, stride_w;
    int32_t dilation_h, dilation_w;
    int32_t pad_top, pad_left, pad_bottom, pad_right;
    int32_t depth_multiplier;
    int32_t input_offset;
    int32_t output_offset;
    const int32_t *output_multiplier;
    const int32_t *output_shift;
    int32_t activation_min, activation_max;
    int32_t has_bias;
} vmcu_depthwise_conv_2d_params_t;

typedef struct {
    int32_t batches;
    int32_t accum_depth;
    int32_t output_depth;
    int32_t input_offset;
    int32_t weights_offset;
    int32_t output_offset;
    int32_t per_channel;
    const int32_t *output_multiplier;  /* output_depth entries even when per-tensor */
    const int32_t *output_shift;
    int32_t activation_min, activation_max;
    int32_t has_bias;
} vmcu_fully_connected_params_t;

typedef struct {
    int32_t input1_shape[VMCU_MAX_DIMS];
    int32_t input2_shape[VMCU_MAX_DIMS];
    int32_t output_shape[VMCU_MAX_DIMS];
    int32_t requires_broadcast;
    int32_t left_shift;
    int32_t input1_offset, input2_offset, output_offset;
    int32_t input1_multiplier, input1_shift;
    int32_t input2_multiplier, input2_shift;
    int32_t output_multiplier, output_shift;
    int32_t activation_min, activation_max;
} vmcu_add_params_t;

typedef struct {
    int32_t input1_shape[VMCU_MAX_DIMS];
    int32_t input2_shape[VMCU_MAX_DIMS];
    int32_t output_shape[VMCU_MAX_DIMS];
    int32_t requires_broadcast;
    int32_t input1_offset, input2_offset, output_offset;
    int32_t output_multiplier, output_shift;
    int32_t activation_min, activation_max;
} vmcu_mul_params_t;

typedef struct {
    int32_t input_shape[4];
    int32_t output_shape[4];
    int32_t filter_h, filter_w;
    int32_t stride_h, stride_w;
    int32_t pad_top, pad_left, pad_bottom, pad_right;
    int32_t activation_min, activation_max;
} vmcu_pool_2d_params_t;

typedef struct {
    int32_t input_shape[VMCU_MAX_DIMS];
    int32_t output_shape[VMCU_MAX_DIMS];
    int32_t axes[VMCU_MAX_DIMS];  /* the first num_axes entries are used */
    int32_t num_axes;
    int32_t keep_dims;
    int32_t num_elements;
    int32_t input_zero_point, output_zero_point;
    int32_t multiplier, shift;
} vmcu_mean_params_t;

typedef struct {
    int32_t outer_size;
    int32_t depth;
    int32_t input_multiplier;
    int32_t input_left_shift;
    int32_t diff_min;
} vmcu_softmax_params_t;

typedef struct {
    int32_t size;  /* elements (the product of the dataclass's input_shape) */
    int32_t input_zero_point;
    int32_t input_range_radius;
    int32_t input_multiplier;
    int32_t input_left_shift;
} vmcu_logistic_params_t;

typedef struct {
    int32_t size;
    double output_scale;
    int32_t output_zero_point;
    int32_t input_zero_point;
    int32_t requantize_multiplier;
    int32_t requantize_shift;
} vmcu_quantize_params_t;

typedef struct {
    int32_t size;
    double scale;
    int32_t zero_point;
} vmcu_dequantize_params_t;

typedef struct {
    int32_t input_shape[VMCU_MAX_DIMS];
    int32_t output_shape[VMCU_MAX_DIMS];
    int32_t paddings[VMCU_MAX_DIMS][2];  /* (before, after) per dimension */
    int32_t pad_value;
} vmcu_pad_params_t;

typedef struct {
    int32_t nbytes;
} vmcu_reshape_params_t;

typedef struct {
    int32_t input_shape[VMCU_MAX_DIMS];
    int32_t output_shape[VMCU_MAX_DIMS];
    int32_t perm[VMCU_MAX_DIMS];
} vmcu_transpose_params_t;

typedef struct {
    int32_t num_inputs;
    const int32_t *input_shapes;  /* num_inputs rows of VMCU_MAX_DIMS */
    int32_t output_shape[VMCU_MAX_DIMS];
    int32_t axis;
} vmcu_concatenation_params_t;

/* Convolutions and FC: bias may be NULL when has_bias is 0. */
void vmcu_conv_2d_s8(const vmcu_conv_2d_params_t *p, const int8_t *input, const int8_t *filter,
                     const int32_t *bias, int8_t *output, int8_t *scratch);
void vmcu_depthwise_conv_2d_s8(const vmcu_depthwise_conv_2d_params_t *p, const int8_t *input,
                               const int8_t *filter, const int32_t *bias, int8_t *output, int8_t *scratch);
void vmcu_fully_connected_s8(const vmcu_fully_connected_params_t *p, const int8_t *input,
                             const int8_t *filter, const int32_t *bias, int8_t *output, int8_t *scratch);

/* Element-wise binary ops with NumPy broadcasting. */
void vmcu_add_s8(const vmcu_add_params_t *p, const int8_t *input1, const int8_t *input2, int8_t *output);
void vmcu_mul_s8(const vmcu_mul_params_t *p, const int8_t *input1, const int8_t *input2, int8_t *output);

void vmcu_average_pool_2d_s8(const vmcu_pool_2d_params_t *p, const int8_t *input, int8_t *output);
void vmcu_max_pool_2d_s8(const vmcu_pool_2d_params_t *p, const int8_t *input, int8_t *output);
void vmcu_mean_s8(const vmcu_mean_params_t *p, const int8_t *input, int8_t *output);

void vmcu_softmax_s8(const vmcu_softmax_params_t *p, const int8_t *input, int8_t *output);
void vmcu_softmax_s8_s16(const vmcu_softmax_params_t *p, const int8_t *input, int16_t *output);
void vmcu_logistic_s8(const vmcu_logistic_params_t *p, const int8_t *input, int8_t *output);

/* QUANTIZE float32 -> int8, QUANTIZE int8 -> int8 (requantize), DEQUANTIZE int8 -> float32. */
void vmcu_quantize_f32_s8(const vmcu_quantize_params_t *p, const float *input, int8_t *output);
void vmcu_quantize_s8(const vmcu_quantize_params_t *p, const int8_t *input, int8_t *output);
void vmcu_dequantize_s8(const vmcu_dequantize_params_t *p, const int8_t *input, float *output);

/* Data movement. RESHAPE tolerates overlapping buffers (memmove). */
void vmcu_pad_s8(const vmcu_pad_params_t *p, const int8_t *input, int8_t *output);
void vmcu_reshape_s8(const vmcu_reshape_params_t *p, const int8_t *input, int8_t *output);
void vmcu_transpose_s8(const vmcu_transpose_params_t *p, const int8_t *input, int8_t *output);
void vmcu_concatenation_s8(const vmcu_concatenation_params_t *p, const int8_t *const *inputs, int8_t *output);

#endif /* VMCU_KERNELS_H */
