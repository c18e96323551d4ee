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
 * Kernels never allocate: those that need working memory take `scratch` (4-byte aligned), sized exactly
 * by vmcu.kernels.scratch_bytes(); it is also the workspace that lets an output overlap its input under
 * a segment plan (see README.md: every kernel reads all inputs of an output unit before storing it).
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
    int32_t depth;  /* the last dimension: one staged row */
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
/* Depthwise conv, depth multiplier 1, whose output overwrites its input at `data` (output no larger than
 * input); scratch holds one output channel plane (Ho * Wo bytes). See ref/depthwise_conv_2d_inplace.c. */
void vmcu_depthwise_conv_2d_inplace_s8(const vmcu_depthwise_conv_2d_params_t *p, int8_t *data,
                                       const int8_t *filter, const int32_t *bias, int8_t *scratch);

/* Element-wise binary ops with NumPy broadcasting. */
void vmcu_add_s8(const vmcu_add_params_t *p, const int8_t *input1, const int8_t *input2, int8_t *output);
void vmcu_mul_s8(const vmcu_mul_params_t *p, const int8_t *input1, const int8_t *input2, int8_t *output);

void vmcu_average_pool_2d_s8(const vmcu_pool_2d_params_t *p, const int8_t *input, int8_t *output,
                             int8_t *scratch);
void vmcu_max_pool_2d_s8(const vmcu_pool_2d_params_t *p, const int8_t *input, int8_t *output,
                         int8_t *scratch);
void vmcu_mean_s8(const vmcu_mean_params_t *p, const int8_t *input, int8_t *output, int8_t *scratch);

void vmcu_softmax_s8(const vmcu_softmax_params_t *p, const int8_t *input, int8_t *output);
void vmcu_softmax_s8_s16(const vmcu_softmax_params_t *p, const int8_t *input, int16_t *output,
                         int8_t *scratch);
void vmcu_logistic_s8(const vmcu_logistic_params_t *p, const int8_t *input, int8_t *output);

/* QUANTIZE float32 -> int8, QUANTIZE int8 -> int8 (requantize), DEQUANTIZE int8 -> float32. */
void vmcu_quantize_f32_s8(const vmcu_quantize_params_t *p, const float *input, int8_t *output);
void vmcu_quantize_s8(const vmcu_quantize_params_t *p, const int8_t *input, int8_t *output);
void vmcu_dequantize_s8(const vmcu_dequantize_params_t *p, const int8_t *input, float *output,
                        int8_t *scratch);

/* Data movement. RESHAPE tolerates overlapping buffers (memmove). */
void vmcu_pad_s8(const vmcu_pad_params_t *p, const int8_t *input, int8_t *output);
void vmcu_reshape_s8(const vmcu_reshape_params_t *p, const int8_t *input, int8_t *output);
void vmcu_transpose_s8(const vmcu_transpose_params_t *p, const int8_t *input, int8_t *output);
void vmcu_concatenation_s8(const vmcu_concatenation_params_t *p, const int8_t *const *inputs, int8_t *output);

/* Stage addressing (ref/stage_io.c) for patch-based and stream schedules. A ring holds pixel (y, x) of a
 * tensor `width` pixels wide in slot (y * width + x) % pixels, pixel_bytes bytes each (a whole tensor is the
 * ring of all its pixels). vmcu_ring_read returns rows x cols pixels from (y, x) as one contiguous block:
 * in place when they are one run of the ring, else gathered into `stage`. vmcu_ring_slot returns where a
 * kernel writes `cols` pixels of row y from column x (in place, or `stage` if the run wraps) and
 * vmcu_ring_commit then moves a staged run into the ring. vmcu_axis_rows gives the input rows [first,
 * first + rows) and the padding that output row out_row of a window (stride, offset = leading padding,
 * extent = dilated kernel size) reads from an input `size` rows high. vmcu_copy_rows gathers `rows` runs of
 * row_bytes bytes, src_stride apart, into dst. */
typedef struct {
    int8_t *base;
    int32_t pixels;
    int32_t width;
    int32_t pixel_bytes;
} vmcu_ring_t;

const int8_t *vmcu_ring_read(const vmcu_ring_t *r, int32_t y, int32_t rows, int32_t x, int32_t cols,
                             int8_t *stage);
int8_t *vmcu_ring_slot(const vmcu_ring_t *r, int32_t y, int32_t x, int32_t cols, int8_t *stage);
void vmcu_ring_commit(const vmcu_ring_t *r, int32_t y, int32_t x, int32_t cols, const int8_t *written);
void vmcu_axis_rows(int32_t out_row, int32_t stride, int32_t offset, int32_t extent, int32_t size,
                    int32_t *first, int32_t *rows, int32_t *pad_before, int32_t *pad_after);
void vmcu_copy_rows(int8_t *dst, const int8_t *src, int32_t src_stride, int32_t rows, int32_t row_bytes);

#endif /* VMCU_KERNELS_H */
