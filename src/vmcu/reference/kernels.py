"""The table of reference kernels: op type -> NumPy function computing the op from its params.

A kernel takes the op's `vmcu.ir.params` dataclass and its input arrays (in the op's input order,
constants included, None for an absent optional input) and returns the output array. The kernels are
the executable specification the generated C code must match bit for bit.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from vmcu.reference import kernels_conv as conv
from vmcu.reference import kernels_misc as misc

Kernel = Callable[[Any, list[np.ndarray | None]], np.ndarray]

REFERENCE_KERNELS: dict[str, Kernel] = {
    "CONV_2D": conv.conv2d,
    "DEPTHWISE_CONV_2D": conv.depthwise_conv2d,
    "FULLY_CONNECTED": conv.fully_connected,
    "AVERAGE_POOL_2D": conv.average_pool2d,
    "MAX_POOL_2D": conv.max_pool2d,
    "MEAN": conv.mean,
    "ADD": misc.add,
    "MUL": misc.mul,
    "SOFTMAX": misc.softmax,
    "LOGISTIC": misc.logistic,
    "QUANTIZE": misc.quantize,
    "DEQUANTIZE": misc.dequantize,
    "PAD": misc.pad,
    "PADV2": misc.pad,
    "RESHAPE": misc.reshape,
    "SQUEEZE": misc.reshape,
    "EXPAND_DIMS": misc.reshape,
    "TRANSPOSE": misc.transpose,
    "CONCATENATION": misc.concatenation,
}
