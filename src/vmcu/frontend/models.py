"""The papers' layers and networks, rebuilt as int8 graphs: vMCU's single layers and modules, MobileNetV2.

The papers publish architectures, not files, so these builders are the shared source of every experiment
that reproduces their figures; the case tables below are copied from the papers (see REFERENCE.md, section 4).
"""

from __future__ import annotations

from collections.abc import Sequence

from vmcu.frontend.builder import GraphBuilder
from vmcu.ir.graph import Graph

# MobileNetV2 inverted-residual settings: expansion t, output channels c, repeats n, first stride s.
MOBILENET_V2_BLOCKS: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1),
)

# vMCU Fig. 7 pointwise layers: (H = W, C_in, C_out).
VMCU_POINTWISE_CASES: tuple[tuple[int, int, int], ...] = (
    (80, 16, 16), (56, 32, 32), (28, 64, 64), (80, 16, 8), (40, 32, 16), (20, 48, 24), (24, 16, 32),
    (12, 32, 64), (6, 64, 128),
)

# vMCU Table 2 inverted-bottleneck modules: name -> (H = W, C_in, C_mid, C_out, kernel, strides).
VMCU_BOTTLENECK_MODULES: dict[str, tuple[int, int, int, int, int, tuple[int, int, int]]] = {
    "S1": (20, 16, 48, 16, 3, (1, 1, 1)), "S2": (20, 16, 48, 16, 3, (1, 1, 1)),
    "S3": (10, 24, 144, 16, 3, (1, 1, 1)), "S4": (10, 24, 120, 24, 3, (1, 1, 1)),
    "S5": (5, 40, 240, 40, 3, (1, 1, 1)), "S6": (5, 48, 192, 48, 3, (1, 1, 1)),
    "S7": (3, 96, 480, 96, 3, (1, 1, 1)), "S8": (3, 96, 384, 96, 3, (1, 1, 1)),
    "B1": (176, 3, 16, 8, 3, (2, 1, 1)), "B2": (88, 8, 24, 16, 7, (1, 2, 1)),
    "B3": (44, 16, 80, 16, 3, (1, 1, 1)), "B4": (44, 16, 80, 16, 7, (1, 1, 1)),
    "B5": (44, 16, 64, 24, 5, (1, 1, 1)), "B6": (44, 16, 80, 24, 5, (1, 2, 1)),
    "B7": (22, 24, 120, 24, 5, (1, 1, 1)), "B8": (22, 24, 120, 24, 5, (1, 1, 1)),
    "B9": (22, 24, 120, 40, 3, (1, 2, 1)), "B10": (11, 40, 240, 40, 7, (1, 1, 1)),
    "B11": (11, 40, 160, 40, 5, (1, 1, 1)), "B12": (11, 40, 200, 48, 7, (1, 2, 1)),
    "B13": (11, 48, 240, 48, 7, (1, 1, 1)), "B14": (11, 48, 240, 48, 3, (1, 1, 1)),
    "B15": (11, 48, 288, 96, 3, (1, 2, 1)), "B16": (6, 96, 480, 96, 7, (1, 1, 1)),
    "B17": (6, 96, 384, 96, 3, (1, 1, 1)),
}

IMAGE_SCALE = 1.0 / 128.0  # images normalised to [-1, 1), as MobileNet preprocessing does
FEATURE_SCALE = 1.0 / 32.0  # a mid-network activation of about +-4


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round a channel count to a multiple of `divisor`, never below 90% of `value` (the reference
    implementation's rule, so width-scaled models have the published channel counts)."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


def mobilenet_v2(width: float = 1.0, resolution: int = 224, num_classes: int = 1000, seed: int = 0) -> Graph:
    """MobileNetV2 (Sandler et al. 2018): conv 3x3/2, 17 inverted bottlenecks, conv 1x1, mean, FC, softmax."""
    b = GraphBuilder(seed)
    x = b.input((1, resolution, resolution, 3), IMAGE_SCALE, 0)
    x = b.conv2d(x, make_divisible(32 * width), 3, stride=2, name="stem")
    for t, c, n, s in MOBILENET_V2_BLOCKS:
        out = make_divisible(c * width)
        for i in range(n):
            c_in = b.shape(x)[-1]
            x = b.inverted_bottleneck(x, None if t == 1 else c_in * t, out, 3, (1, s if i == 0 else 1, 1))
    x = b.conv2d(x, make_divisible(1280 * max(1.0, width)), 1, name="head")
    x = b.mean(x, (1, 2))
    x = b.fully_connected(x, num_classes, name="classifier")
    x = b.softmax(x)
    return b.build(f"mobilenet_v2_{width}_{resolution}")


def inverted_bottleneck_module(hw: int, c_in: int, c_mid: int, c_out: int, kernel: int,
                               strides: Sequence[int] = (1, 1, 1), seed: int = 0) -> Graph:
    """An inverted-bottleneck module on an hw x hw x c_in input, residual when shapes allow (vMCU Table 2)."""
    b = GraphBuilder(seed)
    x = b.input((1, hw, hw, c_in), FEATURE_SCALE, 0)
    b.inverted_bottleneck(x, c_mid, c_out, kernel, tuple(strides))
    se, sd, sp = strides
    return b.build(f"bottleneck_{hw}_{c_in}_{c_mid}_{c_out}_k{kernel}_s{se}{sd}{sp}")


def pointwise_layer(hw: int, c_in: int, c_out: int, activation: str = "RELU6", seed: int = 0) -> Graph:
    """A single 1x1 convolution on an hw x hw x c_in input (vMCU Fig. 7)."""
    b = GraphBuilder(seed)
    x = b.input((1, hw, hw, c_in), FEATURE_SCALE, 0)
    b.conv2d(x, c_out, 1, activation=activation)
    return b.build(f"pointwise_{hw}_{c_in}_{c_out}")
