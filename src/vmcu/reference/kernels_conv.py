"""Reference kernels of the windowed and reducing ops: conv, depthwise, fully connected, pooling, mean.

Each follows TFLM's reference kernel (reference_integer_ops::ConvPerChannel, DepthwiseConvPerChannel,
FullyConnected[PerChannel], AveragePool, MaxPool; reference_ops::QuantizedMeanOrSumExtraArgs) to the
bit, vectorised over all pixels. Accumulation in float64 BLAS is exact: every partial sum is an integer
far below 2^53 (|(x + offset) * w| <= 255 * 128), so any summation order gives the int32 result.
"""

from __future__ import annotations

import numpy as np

from vmcu.ir.params import (
    Conv2DParams,
    DepthwiseConv2DParams,
    FullyConnectedParams,
    MeanParams,
    Pool2DParams,
)
from vmcu.ir.quant import multiply_by_quantized_multiplier

Arrays = list[np.ndarray | None]


def requantize(acc: np.ndarray, multiplier: tuple[int, ...] | int, shift: tuple[int, ...] | int,
               offset: int, lo: int, hi: int) -> np.ndarray:
    """int32 accumulator -> int8: MultiplyByQuantizedMultiplier, + output offset, clamp."""
    out = multiply_by_quantized_multiplier(acc, np.asarray(multiplier, dtype=np.int64),
                                           np.asarray(shift, dtype=np.int64)) + offset
    return np.clip(out, lo, hi).astype(np.int8)


def _windows(x: np.ndarray, p: Conv2DParams | DepthwiseConv2DParams | Pool2DParams, kh: int, kw: int,
             dh: int, dw: int, fill: float) -> list[np.ndarray]:
    """One strided view (N, OH, OW, C) per filter tap, of `x` padded with `fill` (taps outside the
    input, which TFLM skips, then contribute nothing)."""
    _, oh, ow, _ = p.output_shape
    need_h = (oh - 1) * p.stride_h + (kh - 1) * dh + 1
    need_w = (ow - 1) * p.stride_w + (kw - 1) * dw + 1
    bottom = max(need_h - p.pad_top - x.shape[1], 0)
    right = max(need_w - p.pad_left - x.shape[2], 0)
    xp = np.pad(x, ((0, 0), (p.pad_top, bottom), (p.pad_left, right), (0, 0)), constant_values=fill)
    return [xp[:, i * dh:i * dh + (oh - 1) * p.stride_h + 1:p.stride_h,
               j * dw:j * dw + (ow - 1) * p.stride_w + 1:p.stride_w, :]
            for i in range(kh) for j in range(kw)]


def _bias(p: Conv2DParams | DepthwiseConv2DParams | FullyConnectedParams, inputs: Arrays) -> np.ndarray | int:
    return inputs[2].astype(np.int64) if p.has_bias and inputs[2] is not None else 0


def conv2d(p: Conv2DParams, inputs: Arrays) -> np.ndarray:
    """CONV_2D: im2col then one exact float64 matrix product."""
    x = inputs[0].astype(np.float64) + p.input_offset
    w = inputs[1].astype(np.float64)
    o, kh, kw, c = p.filter_shape
    taps = _windows(x, p, kh, kw, p.dilation_h, p.dilation_w, 0.0)
    cols = taps[0] if len(taps) == 1 else np.concatenate(taps, axis=-1)
    acc = (cols.reshape(-1, kh * kw * c) @ w.reshape(o, -1).T).astype(np.int64)
    acc = acc.reshape(p.output_shape) + _bias(p, inputs)
    return requantize(acc, p.output_multiplier, p.output_shift, p.output_offset, p.activation_min,
                      p.activation_max)


def depthwise_conv2d(p: DepthwiseConv2DParams, inputs: Arrays) -> np.ndarray:
    """DEPTHWISE_CONV_2D: output channel c * depth_multiplier + m reads input channel c."""
    x = inputs[0].astype(np.int64) + p.input_offset
    if p.depth_multiplier > 1:
        x = np.repeat(x, p.depth_multiplier, axis=-1)
    w = inputs[1].astype(np.int64)[0]
    _, kh, kw, _ = p.filter_shape
    acc = np.zeros(p.output_shape, dtype=np.int64)
    for k, tap in enumerate(_windows(x, p, kh, kw, p.dilation_h, p.dilation_w, 0)):
        acc += tap * w[k // kw, k % kw]
    acc += _bias(p, inputs)
    return requantize(acc, p.output_multiplier, p.output_shift, p.output_offset, p.activation_min,
                      p.activation_max)


def fully_connected(p: FullyConnectedParams, inputs: Arrays) -> np.ndarray:
    """FULLY_CONNECTED: [batches, accum_depth] x [output_depth, accum_depth]^T."""
    x = inputs[0].reshape(p.batches, p.accum_depth).astype(np.float64) + p.input_offset
    w = inputs[1].astype(np.float64) + p.weights_offset
    acc = (x @ w.T).astype(np.int64) + _bias(p, inputs)
    out = requantize(acc, p.output_multiplier, p.output_shift, p.output_offset, p.activation_min,
                     p.activation_max)
    return out.reshape(p.output_shape)


def average_pool2d(p: Pool2DParams, inputs: Arrays) -> np.ndarray:
    """AVERAGE_POOL_2D: sum of in-bounds taps, divided by their count rounding half away from zero."""
    x = inputs[0].astype(np.int64)
    ones = np.ones(x.shape[:3] + (1,), dtype=np.int64)
    total = sum(_windows(x, p, p.filter_h, p.filter_w, 1, 1, 0))
    count = sum(_windows(ones, p, p.filter_h, p.filter_w, 1, 1, 0))
    half = count // 2
    avg = np.where(total > 0, (total + half) // count, -((half - total) // count))
    return np.clip(avg, p.activation_min, p.activation_max).astype(np.int8)


def max_pool2d(p: Pool2DParams, inputs: Arrays) -> np.ndarray:
    """MAX_POOL_2D: maximum over in-bounds taps."""
    x = inputs[0].astype(np.int64)
    out = np.maximum.reduce(_windows(x, p, p.filter_h, p.filter_w, 1, 1, np.iinfo(np.int64).min))
    return np.clip(out, p.activation_min, p.activation_max).astype(np.int8)


def mean(p: MeanParams, inputs: Arrays) -> np.ndarray:
    """MEAN: integer sum minus zero-point sum, rescaled by the multiplier with 1/count folded in."""
    total = inputs[0].astype(np.int64).sum(axis=p.axes)
    shifted = total - p.input_zero_point * p.num_elements
    out = multiply_by_quantized_multiplier(shifted, p.multiplier, p.shift) + p.output_zero_point
    return np.clip(out, -128, 127).astype(np.int8).reshape(p.output_shape)
