"""Build int8 graphs layer by layer with seeded random weights and calibrated, realistic quantization.

The papers' layers and networks exist only as architectures, so they are rebuilt here. Random weights alone
give activations that vanish or saturate after a few layers; every weighted layer is therefore normalised the
way a folded BatchNorm would be (per-channel mean and spread of its float output on a calibration sample), and
every activation's scale and zero point come from the range that sample actually reaches, so the int8 model
uses its range without saturating, like a post-training-quantized network.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from vmcu.ir.graph import Graph, Op, Quant, Tensor

ACTIVATION_RANGES: dict[str, tuple[float, float] | None] = {
    "NONE": None, "RELU": None, "RELU6": (0.0, 6.0), "RELU_N1_TO_1": (-1.0, 1.0),
}
MIN_POSITIONS_PER_CHANNEL = 16  # fewer calibration values per channel: normalise over the whole layer
MIN_RANGE = 1e-2  # narrowest activation range: a near-constant tensor would otherwise need a multiplier > 2^30
MIN_SPREAD = 1e-3  # a channel whose calibration output is (nearly) constant is not scaled up without bound
SOFTMAX_QUANT = Quant((1.0 / 256.0,), (-128,))  # the int8 output quantization TFLite requires of SOFTMAX


def _pair(v: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(v, int):
        return v, v
    a, b = v
    return int(a), int(b)


def _f32(v: float) -> float:
    """The float32 value the file will hold, as a Python float."""
    return float(np.float32(v))


def _window(size: int, k: int, s: int, d: int, padding: str) -> tuple[int, int, int]:
    """Output size and (before, after) padding of one spatial dimension, as TFLite computes them."""
    if padding == "SAME":
        out = -(-size // s)
        total = max((out - 1) * s + (k - 1) * d + 1 - size, 0)
        return out, total // 2, total - total // 2
    if padding == "VALID":
        out = (size - (k - 1) * d - 1) // s + 1
        if out < 1:
            raise ValueError(f"VALID window {k} (dilation {d}) does not fit an input of size {size}")
        return out, 0, 0
    raise ValueError(f"padding must be 'SAME' or 'VALID', not {padding!r}")


def _taps(x: np.ndarray, kernel: tuple[int, int], stride: tuple[int, int], dilation: tuple[int, int],
          padding: str, fill: float) -> tuple[list[tuple[int, int, np.ndarray]], int, int]:
    """Strided views of the padded input, one per kernel tap: the float model's convolutions and pools."""
    _, h, w, _ = x.shape
    ho, pt, pb = _window(h, kernel[0], stride[0], dilation[0], padding)
    wo, pl, pr = _window(w, kernel[1], stride[1], dilation[1], padding)
    xp = np.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)), constant_values=fill)
    views = []
    for i in range(kernel[0]):
        for j in range(kernel[1]):
            r, c = i * dilation[0], j * dilation[1]
            views.append((i, j, xp[:, r:r + (ho - 1) * stride[0] + 1:stride[0],
                                   c:c + (wo - 1) * stride[1] + 1:stride[1], :]))
    return views, ho, wo


def _conv_options(padding: str, stride: tuple[int, int], dilation: tuple[int, int],
                  activation: str) -> dict[str, Any]:
    return {"padding": padding, "stride_w": stride[1], "stride_h": stride[0],
            "dilation_w": dilation[1], "dilation_h": dilation[0], "activation": activation}


def _apply_activation(y: np.ndarray, activation: str) -> np.ndarray:
    if activation not in ACTIVATION_RANGES:
        raise ValueError(f"fused activation must be one of {sorted(ACTIVATION_RANGES)}, not {activation!r}")
    if activation == "RELU":
        return np.maximum(y, 0.0)
    bounds = ACTIVATION_RANGES[activation]
    return y if bounds is None else np.clip(y, *bounds)


def _range_quant(y: np.ndarray, activation: str = "NONE") -> Quant:
    """Per-tensor int8 quantization covering the observed range (the fixed range of a bounded activation)."""
    bounds = ACTIVATION_RANGES[activation]
    lo, hi = bounds if bounds is not None else (min(float(y.min()), 0.0), max(float(y.max()), 0.0))
    hi = max(hi, lo + MIN_RANGE)
    scale = _f32((hi - lo) / 255.0)
    zero_point = int(np.clip(np.round(-128.0 - lo / scale), -128, 127))
    return Quant((scale,), (zero_point,))


def _quantize_symmetric(w: np.ndarray, axis: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric int8 weights in [-127, 127]: one scale per slice along `axis`, or one for the tensor."""
    reduce = tuple(a for a in range(w.ndim) if a != axis) if axis is not None else None
    amax = np.abs(w).max(axis=reduce, keepdims=True)
    scale = np.maximum(amax, 1e-12).astype(np.float32) / np.float32(127.0)
    q = np.clip(np.round(w / scale), -127, 127).astype(np.int8)
    return q, scale.reshape(-1).astype(np.float32)


class GraphBuilder:
    """Assemble an int8 graph op by op; each method returns the index of the op's output tensor.

    A float calibration sample (`calibration_samples` random inputs spanning the input's int8 range) is
    propagated as the graph grows; it only decides weight normalisation and activation scales.
    """

    def __init__(self, seed: int = 0, calibration_samples: int = 1) -> None:
        self._rng = np.random.default_rng(seed)
        self._samples = calibration_samples
        self._tensors: list[Tensor] = []
        self._ops: list[Op] = []
        self._inputs: list[int] = []
        self._calib: dict[int, np.ndarray] = {}
        self._counts: dict[str, int] = {}

    # -- bookkeeping ------------------------------------------------------------------------------------

    def _prefix(self, kind: str, name: str | None) -> str:
        n = self._counts.get(kind, 0)
        self._counts[kind] = n + 1
        return name if name is not None else f"{kind}_{n}"

    def _tensor(self, name: str, shape: Sequence[int], dtype: str, quant: Quant | None = None,
                data: np.ndarray | None = None) -> int:
        if data is not None:
            data = np.ascontiguousarray(data)
            data.setflags(write=False)
        index = len(self._tensors)
        self._tensors.append(Tensor(index, name, tuple(int(d) for d in shape), dtype, quant, data))
        return index

    def _activation(self, name: str, value: np.ndarray, quant: Quant) -> int:
        index = self._tensor(name, (1,) + value.shape[1:], "int8", quant)
        self._calib[index] = value.astype(np.float32)
        return index

    def _op(self, op_type: str, inputs: Sequence[int], outputs: Sequence[int],
            options: dict[str, Any] | None = None) -> None:
        self._ops.append(Op(len(self._ops), op_type, tuple(inputs), tuple(outputs), options or {}))

    def calibration(self, x: int) -> np.ndarray:
        """Float value of activation `x` on the calibration sample (batch first), which its scale fits."""
        if x not in self._calib:
            raise ValueError(f"tensor {x} is not an activation of this builder")
        return self._calib[x]

    def shape(self, x: int) -> tuple[int, ...]:
        """Shape of tensor `x` (NHWC for feature maps)."""
        return self._tensors[x].shape

    def quant(self, x: int) -> Quant:
        """Quantization of activation `x`."""
        q = self._tensors[x].quant
        if q is None:
            raise ValueError(f"tensor {x} is not quantized")
        return q

    def _fold_norm(self, z: np.ndarray, activation: str) -> tuple[np.ndarray, np.ndarray]:
        """Per-channel gain and bias giving the layer's output a BatchNorm-like spread: mean beta, std gamma.

        ReLU layers get a positive mean so a realistic share of outputs is non-zero; the others center on 0.
        """
        channels = z.shape[-1]
        if z.size // channels >= MIN_POSITIONS_PER_CHANNEL:
            axes = tuple(range(z.ndim - 1))
            mean, std, rms = z.mean(axis=axes), z.std(axis=axes), np.sqrt(np.mean(np.square(z), axis=axes))
        else:
            mean, std = np.full(channels, z.mean()), np.full(channels, z.std())
            rms = np.full(channels, np.sqrt(np.mean(np.square(z))))
        if activation in ("RELU", "RELU6"):
            gamma = self._rng.uniform(0.5, 2.0, channels)
            beta = self._rng.uniform(0.0, 1.5, channels)
        else:
            gamma = self._rng.uniform(0.5, 1.5, channels)
            beta = self._rng.normal(0.0, 0.25, channels)
        gain = gamma / np.maximum(std, np.maximum(0.1 * rms, MIN_SPREAD))
        return gain.astype(np.float32), (beta - mean * gain).astype(np.float32)

    def _weighted(self, kind: str, name: str | None, x: int, z: np.ndarray, w: np.ndarray, w_axis: int,
                  activation: str, per_channel: bool = True) -> tuple[int, int, int]:
        """Normalise, quantize and add the weights, bias and output of a conv/depthwise/FC layer.

        `z` is the float output of the raw weights `w` on the calibration sample; the layer is linear, so the
        normalised output is `z * gain + bias` without recomputing it.
        """
        prefix = self._prefix(kind, name)
        gain, bias = self._fold_norm(z, activation)
        shape = [1] * w.ndim
        shape[w_axis] = -1
        wq, w_scale = _quantize_symmetric(w * gain.reshape(shape), w_axis if per_channel else None)
        in_scale = self.quant(x).scale[0]
        b_scale = (in_scale * w_scale.astype(np.float64)).astype(np.float32)
        bq = np.clip(np.round(bias / b_scale.astype(np.float64)), -(2**31), 2**31 - 1).astype(np.int32)
        y = _apply_activation(z * gain + bias, activation)
        w_idx = self._tensor(f"{prefix}/weights", wq.shape, "int8",
                             Quant(tuple(float(s) for s in w_scale), (0,) * len(w_scale), w_axis), wq)
        b_idx = self._tensor(f"{prefix}/bias", bq.shape, "int32",
                             Quant(tuple(float(s) for s in b_scale), (0,) * len(b_scale)), bq)
        out = self._activation(f"{prefix}/out", y, _range_quant(y, activation))
        return w_idx, b_idx, out

    # -- layers -----------------------------------------------------------------------------------------

    def input(self, shape: Sequence[int], scale: float, zero_point: int = 0, name: str = "input") -> int:
        """A graph input; its calibration sample spans the whole int8 range of (scale, zero_point)."""
        shape = tuple(int(d) for d in shape)
        if not shape or shape[0] != 1:
            raise ValueError(f"input shape must have batch 1, got {list(shape)}")
        q = self._rng.integers(-128, 128, (self._samples,) + shape[1:])
        value = (_f32(scale) * (q - zero_point)).astype(np.float32)
        index = self._activation(name, value, Quant((_f32(scale),), (int(zero_point),)))
        self._inputs.append(index)
        return index

    def conv2d(self, x: int, out_channels: int, kernel: int | Sequence[int], stride: int | Sequence[int] = 1,
               padding: str = "SAME", activation: str = "RELU6", dilation: int | Sequence[int] = 1,
               name: str | None = None) -> int:
        """CONV_2D with per-output-channel weights [out, kh, kw, in] and an int32 bias."""
        k, s, d = _pair(kernel), _pair(stride), _pair(dilation)
        xv = self.calibration(x)
        w = self._rng.standard_normal((out_channels, k[0], k[1], xv.shape[-1])).astype(np.float32)
        views, ho, wo = _taps(xv, k, s, d, padding, 0.0)
        z = np.zeros((xv.shape[0], ho, wo, out_channels), np.float32)
        for i, j, v in views:
            z += v @ w[:, i, j, :].T
        w_idx, b_idx, out = self._weighted("conv2d", name, x, z, w, 0, activation)
        self._op("CONV_2D", (x, w_idx, b_idx), (out,), _conv_options(padding, s, d, activation))
        return out

    def depthwise_conv2d(self, x: int, kernel: int | Sequence[int], stride: int | Sequence[int] = 1,
                         padding: str = "SAME", activation: str = "RELU6", dilation: int | Sequence[int] = 1,
                         depth_multiplier: int = 1, name: str | None = None) -> int:
        """DEPTHWISE_CONV_2D with weights [1, kh, kw, in*multiplier], per-channel along axis 3."""
        k, s, d = _pair(kernel), _pair(stride), _pair(dilation)
        xv = np.repeat(self.calibration(x), depth_multiplier, axis=-1)
        channels = xv.shape[-1]
        w = self._rng.standard_normal((1, k[0], k[1], channels)).astype(np.float32)
        views, ho, wo = _taps(xv, k, s, d, padding, 0.0)
        z = np.zeros((xv.shape[0], ho, wo, channels), np.float32)
        for i, j, v in views:
            z += v * w[0, i, j, :]
        w_idx, b_idx, out = self._weighted("depthwise", name, x, z, w, 3, activation)
        self._op("DEPTHWISE_CONV_2D", (x, w_idx, b_idx), (out,),
                 {**_conv_options(padding, s, d, activation), "depth_multiplier": depth_multiplier})
        return out

    def fully_connected(self, x: int, units: int, activation: str = "NONE", name: str | None = None) -> int:
        """FULLY_CONNECTED on the flattened input with per-tensor weights [units, in] (the converter's choice
        for this op) and output [1, units]."""
        xv = self.calibration(x)
        flat = xv.reshape(xv.shape[0], -1)
        w = self._rng.standard_normal((units, flat.shape[1])).astype(np.float32)
        w_idx, b_idx, out = self._weighted("fc", name, x, flat @ w.T, w, 0, activation, per_channel=False)
        self._op("FULLY_CONNECTED", (x, w_idx, b_idx), (out,),
                 {"activation": activation, "weights_format": 0, "keep_num_dims": False})
        return out

    def _pool(self, op_type: str, x: int, pool: int | Sequence[int], stride: int | Sequence[int] | None,
              padding: str, name: str | None) -> int:
        k = _pair(pool)
        s = k if stride is None else _pair(stride)
        xv = self.calibration(x)
        prefix = self._prefix("avgpool" if op_type == "AVERAGE_POOL_2D" else "maxpool", name)
        if op_type == "AVERAGE_POOL_2D":
            views, _, _ = _taps(xv, k, s, (1, 1), padding, 0.0)
            counts, _, _ = _taps(np.ones_like(xv[:1]), k, s, (1, 1), padding, 0.0)
            y = sum(v for _, _, v in views) / sum(c for _, _, c in counts)
        else:
            views, _, _ = _taps(xv, k, s, (1, 1), padding, -np.inf)
            y = np.max(np.stack([v for _, _, v in views]), axis=0)
        out = self._activation(f"{prefix}/out", y, self.quant(x))  # int8 pooling keeps the input's scale
        self._op(op_type, (x,), (out,), {"padding": padding, "stride_w": s[1], "stride_h": s[0],
                                         "filter_w": k[1], "filter_h": k[0], "activation": "NONE"})
        return out

    def avg_pool2d(self, x: int, pool: int | Sequence[int], stride: int | Sequence[int] | None = None,
                   padding: str = "VALID", name: str | None = None) -> int:
        """AVERAGE_POOL_2D (stride defaults to the pool size); output quantized like the input."""
        return self._pool("AVERAGE_POOL_2D", x, pool, stride, padding, name)

    def max_pool2d(self, x: int, pool: int | Sequence[int], stride: int | Sequence[int] | None = None,
                   padding: str = "VALID", name: str | None = None) -> int:
        """MAX_POOL_2D (stride defaults to the pool size); output quantized like the input."""
        return self._pool("MAX_POOL_2D", x, pool, stride, padding, name)

    def add(self, a: int, b: int, activation: str = "NONE", name: str | None = None) -> int:
        """Elementwise ADD of two tensors of one shape (a residual connection)."""
        if self.shape(a) != self.shape(b):
            raise ValueError(f"add needs equal shapes, got {list(self.shape(a))} and {list(self.shape(b))}")
        prefix = self._prefix("add", name)
        y = _apply_activation(self.calibration(a) + self.calibration(b), activation)
        out = self._activation(f"{prefix}/out", y, _range_quant(y, activation))
        self._op("ADD", (a, b), (out,), {"activation": activation})
        return out

    def pad(self, x: int, paddings: Sequence[tuple[int, int]], name: str | None = None) -> int:
        """PAD with the zero point (real 0): one (before, after) pair per dimension."""
        pads = np.asarray(paddings, dtype=np.int32)
        if pads.shape != (len(self.shape(x)), 2) or (pads < 0).any():
            raise ValueError(f"paddings must be {len(self.shape(x))} non-negative (before, after) pairs")
        prefix = self._prefix("pad", name)
        y = np.pad(self.calibration(x), [(0, 0)] + [tuple(p) for p in pads[1:]])
        p_idx = self._tensor(f"{prefix}/paddings", pads.shape, "int32", data=pads)
        out = self._activation(f"{prefix}/out", y, self.quant(x))
        self._op("PAD", (x, p_idx), (out,))
        return out

    def mean(self, x: int, axes: Sequence[int] = (1, 2), keep_dims: bool = False,
             name: str | None = None) -> int:
        """MEAN over `axes` (global average pooling by default, as Keras models convert)."""
        axes_arr = np.asarray(axes, dtype=np.int32)
        if not all(0 < a < len(self.shape(x)) for a in axes_arr):
            raise ValueError(f"mean axes must be non-batch axes of {list(self.shape(x))}, got {list(axes)}")
        prefix = self._prefix("mean", name)
        y = self.calibration(x).mean(axis=tuple(int(a) for a in axes), keepdims=keep_dims)
        a_idx = self._tensor(f"{prefix}/axes", axes_arr.shape, "int32", data=axes_arr)
        out = self._activation(f"{prefix}/out", y, _range_quant(y))
        self._op("MEAN", (x, a_idx), (out,), {"keep_dims": keep_dims})
        return out

    def reshape(self, x: int, shape: Sequence[int], name: str | None = None) -> int:
        """RESHAPE to `shape` (batch 1 first); the data and quantization are unchanged."""
        shape_arr = np.asarray(shape, dtype=np.int32)
        xv = self.calibration(x)
        if shape_arr[0] != 1 or int(np.prod(shape_arr)) != self._tensors[x].size:
            raise ValueError(f"cannot reshape {list(self.shape(x))} to {list(shape_arr)}")
        prefix = self._prefix("reshape", name)
        s_idx = self._tensor(f"{prefix}/shape", shape_arr.shape, "int32", data=shape_arr)
        y = xv.reshape((xv.shape[0],) + tuple(int(d) for d in shape_arr[1:]))
        out = self._activation(f"{prefix}/out", y, self.quant(x))
        self._op("RESHAPE", (x, s_idx), (out,))
        return out

    def softmax(self, x: int, beta: float = 1.0, name: str | None = None) -> int:
        """SOFTMAX over the last axis; int8 output has TFLite's fixed quantization (1/256, -128)."""
        prefix = self._prefix("softmax", name)
        z = beta * self.calibration(x)
        e = np.exp(z - z.max(axis=-1, keepdims=True))
        out = self._activation(f"{prefix}/out", e / e.sum(axis=-1, keepdims=True), SOFTMAX_QUANT)
        self._op("SOFTMAX", (x,), (out,), {"beta": _f32(beta)})
        return out

    def inverted_bottleneck(self, x: int, expand_channels: int | None, out_channels: int,
                            kernel: int = 3, strides: Sequence[int] = (1, 1, 1), residual: bool | None = None,
                            name: str | None = None) -> int:
        """1x1 expand (ReLU6) -> kxk depthwise (ReLU6) -> 1x1 project (linear) [+ input].

        `strides` are those of (expand, depthwise, project); `expand_channels=None` omits the expand conv
        (MobileNetV2's t=1 block). The residual defaults to on exactly when it is possible: all strides 1 and
        as many output channels as input channels.
        """
        prefix = self._prefix("bottleneck", name)
        se, sd, sp = strides
        possible = (se, sd, sp) == (1, 1, 1) and self.shape(x)[-1] == out_channels
        if residual and not possible:
            raise ValueError(f"{prefix}: a residual needs strides (1, 1, 1) and equal input/output channels")
        if expand_channels is None and se != 1:
            raise ValueError(f"{prefix}: an expand stride needs an expand conv")
        h = x
        if expand_channels is not None:
            h = self.conv2d(h, expand_channels, 1, stride=se, name=f"{prefix}/expand")
        h = self.depthwise_conv2d(h, kernel, stride=sd, name=f"{prefix}/depthwise")
        h = self.conv2d(h, out_channels, 1, stride=sp, activation="NONE", name=f"{prefix}/project")
        if residual is None:
            residual = possible
        return self.add(x, h, name=f"{prefix}/add") if residual else h

    def build(self, name: str = "model", outputs: Sequence[int] | None = None) -> Graph:
        """The graph so far; outputs default to the activations that no op reads."""
        if not self._inputs or not self._ops:
            raise ValueError("a graph needs an input and at least one op")
        if outputs is None:
            read = {i for op in self._ops for i in op.inputs}
            outputs = [i for op in self._ops for i in op.outputs if i not in read]
        return Graph(name, tuple(self._tensors), tuple(self._ops), tuple(self._inputs), tuple(outputs))
