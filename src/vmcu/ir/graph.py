"""The graph IR every stage reads: tensors, ops and a graph, as immutable value objects.

Tensors are referred to by their index in `Graph.tensors`; an absent optional input is -1 (as in TFLite).
The IR imports nothing else from vmcu, so every stage can depend on it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

DTYPE_BYTES: dict[str, int] = {
    "int8": 1, "uint8": 1, "bool": 1, "int16": 2, "float16": 2,
    "int32": 4, "float32": 4, "int64": 8, "float64": 8, "complex64": 8,
}

NO_TENSOR = -1


@dataclass(frozen=True)
class Quant:
    """Affine quantization: real = scale * (q - zero_point); per-channel along `axis` when len(scale) > 1.

    Scales are the float32 values of the file, held as Python floats (exactly representable), because
    TFLite computes its multipliers in double from those float32 values and bit-exactness depends on it.
    """

    scale: tuple[float, ...]
    zero_point: tuple[int, ...]
    axis: int = 0

    @property
    def per_channel(self) -> bool:
        return len(self.scale) > 1


@dataclass(frozen=True, eq=False)
class Tensor:
    """A tensor of the graph. `data` is set for constants (weights, biases, shape operands), else None."""

    index: int
    name: str
    shape: tuple[int, ...]
    dtype: str
    quant: Quant | None = None
    data: np.ndarray | None = field(default=None, repr=False)
    is_variable: bool = False

    @property
    def is_const(self) -> bool:
        return self.data is not None

    @property
    def size(self) -> int:
        """Number of elements."""
        n = 1
        for d in self.shape:
            n *= d
        return n

    @property
    def nbytes(self) -> int:
        return self.size * DTYPE_BYTES[self.dtype]


@dataclass(frozen=True)
class Op:
    """One operator: `type` is the TFLite builtin name (e.g. "CONV_2D"); `options` its decoded options.

    Option keys (only those that apply): stride_h, stride_w, dilation_h, dilation_w, padding ("SAME",
    "VALID" or "EXPLICIT" with pad_top, pad_bottom, pad_left, pad_right: see vmcu.ir.transform),
    activation ("NONE", "RELU", "RELU6", "RELU_N1_TO_1", "TANH"), depth_multiplier, filter_h, filter_w,
    keep_dims, keep_num_dims, axis, beta, weights_format.
    """

    index: int
    type: str
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    options: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)


@dataclass(frozen=True, eq=False)
class Graph:
    """A single-subgraph model: the ops are in execution order."""

    name: str
    tensors: tuple[Tensor, ...]
    ops: tuple[Op, ...]
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]

    def tensor(self, index: int) -> Tensor:
        return self.tensors[index]

    def op_inputs(self, op: Op) -> list[Tensor | None]:
        """The op's input tensors, None for an absent optional input."""
        return [None if i == NO_TENSOR else self.tensors[i] for i in op.inputs]

    def activation_tensors(self) -> list[Tensor]:
        """Tensors that need SRAM: everything that is neither a constant nor absent."""
        return [t for t in self.tensors if not t.is_const]

    def producers(self) -> dict[int, int]:
        """Map tensor index -> index of the op that writes it."""
        return {t: op.index for op in self.ops for t in op.outputs}

    def consumers(self) -> dict[int, list[int]]:
        """Map tensor index -> indices of the ops that read it, in execution order."""
        out: dict[int, list[int]] = {}
        for op in self.ops:
            for t in op.inputs:
                if t != NO_TENSOR:
                    out.setdefault(t, []).append(op.index)
        return out
