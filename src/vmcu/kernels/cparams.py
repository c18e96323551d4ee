"""The C ABI of the kernel library: params dataclass -> C function, struct layout and field values.

`vmcu_kernels.h` mirrors the dataclasses of `vmcu.ir.params`; this module is the one place that knows how
(rank-generic shapes right-aligned to MAX_DIMS, per-channel tuples as int32 tables, dtype strings choosing the
function). The code generator formats `KernelBinding.values` as a C initializer; the tests build ctypes
structures from the same `STRUCTS` layouts, so a layout mismatch fails the bit-exact tests.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

from vmcu.errors import UnsupportedOpError
from vmcu.ir import params as P
from vmcu.kernels.scratch import inplace_depthwise_scratch_bytes, scratch_bytes

MAX_DIMS = 6  # VMCU_MAX_DIMS

CValue = int | float | tuple[int, ...] | tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class Field:
    """One struct member. kind: "int" (int32_t), "double", "array" (int32_t[length]), "table"
    (const int32_t *, a per-channel or per-input table), "pairs" (int32_t[length][2])."""

    name: str
    kind: str
    length: int = 0


@dataclass(frozen=True)
class KernelBinding:
    """How to call one op's kernel. `args` names the pointers after the params struct, in order:
    "inputN" is the op's N-th input tensor (NULL when absent), "inputs" an array of all input pointers,
    "output" the op's output tensor and "scratch" `scratch_bytes` of working memory."""

    symbol: str
    struct: str
    args: tuple[str, ...]
    values: dict[str, CValue]
    scratch_bytes: int


def _ints(*names: str) -> tuple[Field, ...]:
    return tuple(Field(n, "int") for n in names)


def _arrays(length: int, *names: str) -> tuple[Field, ...]:
    return tuple(Field(n, "array", length) for n in names)


_SPATIAL = (*_ints("stride_h", "stride_w", "dilation_h", "dilation_w", "pad_top", "pad_left", "pad_bottom",
                   "pad_right"),)
_REQUANT = (Field("output_multiplier", "table"), Field("output_shift", "table"),
            *_ints("activation_min", "activation_max", "has_bias"))

STRUCTS: dict[str, tuple[Field, ...]] = {
    "vmcu_conv_2d_params_t": (*_arrays(4, "input_shape", "filter_shape", "output_shape"), *_SPATIAL,
                              *_ints("input_offset", "output_offset"), *_REQUANT),
    "vmcu_depthwise_conv_2d_params_t": (*_arrays(4, "input_shape", "filter_shape", "output_shape"), *_SPATIAL,
                                        *_ints("depth_multiplier", "input_offset", "output_offset"), *_REQUANT),
    "vmcu_fully_connected_params_t": (*_ints("batches", "accum_depth", "output_depth", "input_offset",
                                             "weights_offset", "output_offset", "per_channel"), *_REQUANT),
    "vmcu_add_params_t": (*_arrays(MAX_DIMS, "input1_shape", "input2_shape", "output_shape"),
                          *_ints("requires_broadcast", "left_shift", "input1_offset", "input2_offset",
                                 "output_offset", "input1_multiplier", "input1_shift", "input2_multiplier",
                                 "input2_shift", "output_multiplier", "output_shift", "activation_min",
                                 "activation_max")),
    "vmcu_mul_params_t": (*_arrays(MAX_DIMS, "input1_shape", "input2_shape", "output_shape"),
                          *_ints("requires_broadcast", "input1_offset", "input2_offset", "output_offset",
                                 "output_multiplier", "output_shift", "activation_min", "activation_max")),
    "vmcu_pool_2d_params_t": (*_arrays(4, "input_shape", "output_shape"),
                              *_ints("filter_h", "filter_w", "stride_h", "stride_w", "pad_top", "pad_left",
                                     "pad_bottom", "pad_right", "activation_min", "activation_max")),
    "vmcu_mean_params_t": (*_arrays(MAX_DIMS, "input_shape", "output_shape", "axes"),
                           *_ints("num_axes", "keep_dims", "num_elements", "input_zero_point",
                                  "output_zero_point", "multiplier", "shift")),
    "vmcu_softmax_params_t": _ints("outer_size", "depth", "input_multiplier", "input_left_shift", "diff_min"),
    "vmcu_logistic_params_t": _ints("size", "input_zero_point", "input_range_radius", "input_multiplier",
                                    "input_left_shift"),
    "vmcu_quantize_params_t": (Field("size", "int"), Field("output_scale", "double"),
                               *_ints("output_zero_point", "input_zero_point", "requantize_multiplier",
                                      "requantize_shift")),
    "vmcu_dequantize_params_t": (*_ints("size", "depth"), Field("scale", "double"), Field("zero_point", "int")),
    "vmcu_pad_params_t": (*_arrays(MAX_DIMS, "input_shape", "output_shape"), Field("paddings", "pairs", MAX_DIMS),
                          Field("pad_value", "int")),
    "vmcu_reshape_params_t": _ints("nbytes"),
    "vmcu_transpose_params_t": _arrays(MAX_DIMS, "input_shape", "output_shape", "perm"),
    "vmcu_concatenation_params_t": (Field("num_inputs", "int"), Field("input_shapes", "table"),
                                    Field("output_shape", "array", MAX_DIMS), Field("axis", "int")),
}

_WEIGHTED = ("input0", "input1", "input2", "output", "scratch")
_UNARY = ("input0", "output")
_STAGED = ("input0", "output", "scratch")
_BINARY = ("input0", "input1", "output")

# op type -> (C function, params struct, pointer arguments) for the int8 cases.
_KERNELS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "CONV_2D": ("vmcu_conv_2d_s8", "vmcu_conv_2d_params_t", _WEIGHTED),
    "DEPTHWISE_CONV_2D": ("vmcu_depthwise_conv_2d_s8", "vmcu_depthwise_conv_2d_params_t", _WEIGHTED),
    "FULLY_CONNECTED": ("vmcu_fully_connected_s8", "vmcu_fully_connected_params_t", _WEIGHTED),
    "ADD": ("vmcu_add_s8", "vmcu_add_params_t", _BINARY),
    "MUL": ("vmcu_mul_s8", "vmcu_mul_params_t", _BINARY),
    "AVERAGE_POOL_2D": ("vmcu_average_pool_2d_s8", "vmcu_pool_2d_params_t", _STAGED),
    "MAX_POOL_2D": ("vmcu_max_pool_2d_s8", "vmcu_pool_2d_params_t", _STAGED),
    "MEAN": ("vmcu_mean_s8", "vmcu_mean_params_t", _STAGED),
    "SOFTMAX": ("vmcu_softmax_s8", "vmcu_softmax_params_t", _UNARY),
    "LOGISTIC": ("vmcu_logistic_s8", "vmcu_logistic_params_t", _UNARY),
    "QUANTIZE": ("vmcu_quantize_s8", "vmcu_quantize_params_t", _UNARY),
    "DEQUANTIZE": ("vmcu_dequantize_s8", "vmcu_dequantize_params_t", _STAGED),
    "PAD": ("vmcu_pad_s8", "vmcu_pad_params_t", _UNARY),
    "PADV2": ("vmcu_pad_s8", "vmcu_pad_params_t", _UNARY),
    "RESHAPE": ("vmcu_reshape_s8", "vmcu_reshape_params_t", _UNARY),
    "SQUEEZE": ("vmcu_reshape_s8", "vmcu_reshape_params_t", _UNARY),
    "EXPAND_DIMS": ("vmcu_reshape_s8", "vmcu_reshape_params_t", _UNARY),
    "TRANSPOSE": ("vmcu_transpose_s8", "vmcu_transpose_params_t", _UNARY),
    "CONCATENATION": ("vmcu_concatenation_s8", "vmcu_concatenation_params_t", ("inputs", "output")),
}


def kernel_binding(op_type: str, params: P.OpParams, variant: str = "ref") -> KernelBinding:
    """The C call for one op: function, struct, argument roles, field values and scratch size."""
    if op_type not in _KERNELS:
        raise UnsupportedOpError(f"operator {op_type} has no C kernel")
    symbol, struct, args = _KERNELS[op_type]
    symbol = _symbol_for_dtypes(op_type, params, symbol)
    if symbol == "vmcu_softmax_s8_s16":
        args = _STAGED
    values = _values(params)
    missing = [f.name for f in STRUCTS[struct] if f.name not in values]
    if missing:
        raise AssertionError(f"{struct}: no value for {missing}")
    return KernelBinding(symbol=symbol, struct=struct, args=args,
                         values={f.name: values[f.name] for f in STRUCTS[struct]},
                         scratch_bytes=scratch_bytes(op_type, params, variant))


def inplace_depthwise_binding(params: P.DepthwiseConv2DParams, variant: str = "ref") -> KernelBinding:
    """The call of a depthwise conv whose output overwrites its input (a plan alias): one data pointer,
    the same params struct, a scratch plane (of one channel, or for the arm kernel of four) and the arm
    kernel's workspace."""
    binding = kernel_binding("DEPTHWISE_CONV_2D", params, variant)
    return KernelBinding(symbol="vmcu_depthwise_conv_2d_inplace_s8", struct=binding.struct,
                         args=("output", "input1", "input2", "scratch"), values=binding.values,
                         scratch_bytes=inplace_depthwise_scratch_bytes(params, variant))


def _symbol_for_dtypes(op_type: str, params: P.OpParams, symbol: str) -> str:
    if isinstance(params, P.SoftmaxParams) and params.output_dtype == "int16":
        return "vmcu_softmax_s8_s16"
    if isinstance(params, P.QuantizeParams):
        if params.output_dtype != "int8" or params.input_dtype not in ("float32", "int8"):
            raise UnsupportedOpError(f"{op_type} {params.input_dtype} -> {params.output_dtype} has no C kernel")
        return "vmcu_quantize_f32_s8" if params.input_dtype == "float32" else symbol
    if isinstance(params, P.DequantizeParams) and params.input_dtype != "int8":
        raise UnsupportedOpError(f"{op_type} from {params.input_dtype} has no C kernel")
    return symbol


def _aligned(shape: tuple[int, ...]) -> tuple[int, ...]:
    """A shape right-aligned to MAX_DIMS with leading 1s."""
    if len(shape) > MAX_DIMS:
        raise UnsupportedOpError(f"rank {len(shape)} exceeds the kernels' {MAX_DIMS} dimensions")
    return (1,) * (MAX_DIMS - len(shape)) + tuple(shape)


def _values(p: P.OpParams) -> dict[str, CValue]:
    """Field values: the dataclass's own where the types agree, then the derived and renumbered ones."""
    v: dict[str, CValue] = {}
    for f in fields(p):
        x = getattr(p, f.name)
        if isinstance(x, bool):
            v[f.name] = int(x)
        elif isinstance(x, int | float) or (isinstance(x, tuple) and all(isinstance(e, int) for e in x)):
            v[f.name] = x
    if isinstance(p, P.AddParams | P.MulParams):
        for name in ("input1_shape", "input2_shape", "output_shape"):
            v[name] = _aligned(getattr(p, name))
    elif isinstance(p, P.MeanParams):
        lead = MAX_DIMS - len(p.input_shape)
        axes = tuple(a + lead for a in p.axes)
        v |= {"input_shape": _aligned(p.input_shape), "output_shape": _aligned(p.output_shape),
              "axes": axes + (0,) * (MAX_DIMS - len(axes)), "num_axes": len(axes)}
    elif isinstance(p, P.SoftmaxParams | P.LogisticParams):
        v["size"] = math.prod(p.input_shape)
    elif isinstance(p, P.QuantizeParams | P.DequantizeParams):
        v |= {"size": math.prod(p.shape), "depth": p.shape[-1] if p.shape else 1}
    elif isinstance(p, P.PadParams):
        lead = MAX_DIMS - len(p.input_shape)
        v |= {"input_shape": _aligned(p.input_shape), "output_shape": _aligned(p.output_shape),
              "paddings": ((0, 0),) * lead + tuple((int(b), int(a)) for b, a in p.paddings)}
    elif isinstance(p, P.TransposeParams):
        lead = MAX_DIMS - len(p.input_shape)
        v |= {"input_shape": _aligned(p.input_shape), "output_shape": _aligned(p.output_shape),
              "perm": tuple(range(lead)) + tuple(a + lead for a in p.perm)}
    elif isinstance(p, P.ConcatenationParams):
        lead = MAX_DIMS - len(p.output_shape)
        v |= {"num_inputs": len(p.input_shapes), "output_shape": _aligned(p.output_shape),
              "input_shapes": tuple(d for s in p.input_shapes for d in _aligned(s)), "axis": p.axis + lead}
    return v


def _c_int(v: int) -> str:
    """An int32 literal (INT32_MIN has none in C)."""
    return "(-2147483647 - 1)" if v == -2**31 else str(int(v))


def c_definition(binding: KernelBinding, name: str) -> str:
    """C source defining `static const <struct> name` (and its tables, named `name_<field>`) for a
    binding: what generated code passes as the kernel's first argument, `&name`."""
    tables, members = [], []
    for f in STRUCTS[binding.struct]:
        v = binding.values[f.name]
        if f.kind == "table":
            tables.append(f"static const int32_t {name}_{f.name}[{max(len(v), 1)}] = "
                          f"{{{', '.join(map(_c_int, v)) or '0'}}};\n")
            text = f"{name}_{f.name}"
        elif f.kind == "array":
            text = "{" + ", ".join(map(_c_int, v)) + "}"
        elif f.kind == "pairs":
            text = "{" + ", ".join(f"{{{_c_int(b)}, {_c_int(a)}}}" for b, a in v) + "}"
        elif f.kind == "double":
            text = repr(float(v))
        else:
            text = _c_int(v)
        members.append(f"    .{f.name} = {text},\n")
    return "".join(tables) + f"static const {binding.struct} {name} = {{\n" + "".join(members) + "};\n"
