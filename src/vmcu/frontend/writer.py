"""Serialise the graph IR to a .tflite flatbuffer, the inverse of `vmcu.frontend.tflite.decode_tflite`.

Built models must run in TFLite Micro (the bit-exact reference) and in every tool that reads .tflite files,
so the writer emits the same layout the TFLite converter does: one subgraph, buffer 0 empty, one buffer per
constant with its data 16-byte aligned, builtin options for every op whose options the IR carries.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import flatbuffers
import numpy as np
from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema

from vmcu.errors import UnsupportedOpError
from vmcu.ir.graph import Graph, Op, Tensor

TENSOR_TYPE_CODES: dict[str, int] = {
    "float32": 0, "float16": 1, "int32": 2, "uint8": 3, "int64": 4, "bool": 6, "int16": 7, "complex64": 8,
    "int8": 9, "float64": 10,
}
ACTIVATION_CODES = {"NONE": 0, "RELU": 1, "RELU_N1_TO_1": 2, "RELU6": 3, "TANH": 4, "SIGN_BIT": 5}
PADDING_CODES = {"SAME": 0, "VALID": 1}
SCHEMA_VERSION = 3
BUFFER_ALIGNMENT = 16
PLACEHOLDER_FOR_GREATER_OP_CODES = 127

# Ops that take no builtin options (or whose options the IR does not carry and the kernels do not need).
OPTIONLESS_OPS = frozenset({
    "PAD", "PADV2", "RESHAPE", "QUANTIZE", "DEQUANTIZE", "LOGISTIC", "TANH", "RELU", "RELU6", "HARD_SWISH",
    "MAXIMUM", "MINIMUM", "TRANSPOSE",
})


def _activation(o: dict[str, Any]) -> int:
    return ACTIVATION_CODES[o.get("activation", "NONE")]


def _conv(o: dict[str, Any]) -> Any:
    t = schema.Conv2DOptionsT()
    t.padding = PADDING_CODES[o.get("padding", "SAME")]
    t.strideH, t.strideW = o.get("stride_h", 1), o.get("stride_w", 1)
    t.dilationHFactor, t.dilationWFactor = o.get("dilation_h", 1), o.get("dilation_w", 1)
    t.fusedActivationFunction = _activation(o)
    return t


def _depthwise(o: dict[str, Any]) -> Any:
    t = schema.DepthwiseConv2DOptionsT()
    t.padding = PADDING_CODES[o.get("padding", "SAME")]
    t.strideH, t.strideW = o.get("stride_h", 1), o.get("stride_w", 1)
    t.dilationHFactor, t.dilationWFactor = o.get("dilation_h", 1), o.get("dilation_w", 1)
    t.depthMultiplier = o.get("depth_multiplier", 1)
    t.fusedActivationFunction = _activation(o)
    return t


def _pool(o: dict[str, Any]) -> Any:
    t = schema.Pool2DOptionsT()
    t.padding = PADDING_CODES[o.get("padding", "SAME")]
    t.strideH, t.strideW = o.get("stride_h", 1), o.get("stride_w", 1)
    t.filterHeight, t.filterWidth = o["filter_h"], o["filter_w"]
    t.fusedActivationFunction = _activation(o)
    return t


def _fully_connected(o: dict[str, Any]) -> Any:
    t = schema.FullyConnectedOptionsT()
    t.fusedActivationFunction = _activation(o)
    t.weightsFormat = o.get("weights_format", 0)
    t.keepNumDims = bool(o.get("keep_num_dims", False))
    return t


def _add(o: dict[str, Any]) -> Any:
    t = schema.AddOptionsT()
    t.fusedActivationFunction = _activation(o)
    return t


def _mul(o: dict[str, Any]) -> Any:
    t = schema.MulOptionsT()
    t.fusedActivationFunction = _activation(o)
    return t


def _concat(o: dict[str, Any]) -> Any:
    t = schema.ConcatenationOptionsT()
    t.axis = o.get("axis", 0)
    t.fusedActivationFunction = _activation(o)
    return t


def _reducer(o: dict[str, Any]) -> Any:
    t = schema.ReducerOptionsT()
    t.keepDims = bool(o.get("keep_dims", False))
    return t


def _softmax(o: dict[str, Any]) -> Any:
    t = schema.SoftmaxOptionsT()
    t.beta = o.get("beta", 1.0)
    return t


# One table: op type -> (BuiltinOptions union type, encoder of the IR's option dict).
OPTION_ENCODERS: dict[str, tuple[int, Callable[[dict[str, Any]], Any]]] = {
    "CONV_2D": (schema.BuiltinOptions.Conv2DOptions, _conv),
    "DEPTHWISE_CONV_2D": (schema.BuiltinOptions.DepthwiseConv2DOptions, _depthwise),
    "AVERAGE_POOL_2D": (schema.BuiltinOptions.Pool2DOptions, _pool),
    "MAX_POOL_2D": (schema.BuiltinOptions.Pool2DOptions, _pool),
    "FULLY_CONNECTED": (schema.BuiltinOptions.FullyConnectedOptions, _fully_connected),
    "ADD": (schema.BuiltinOptions.AddOptions, _add),
    "MUL": (schema.BuiltinOptions.MulOptions, _mul),
    "CONCATENATION": (schema.BuiltinOptions.ConcatenationOptions, _concat),
    "MEAN": (schema.BuiltinOptions.ReducerOptions, _reducer),
    "SOFTMAX": (schema.BuiltinOptions.SoftmaxOptions, _softmax),
}


class _AlignedBufferT(schema.BufferT):
    """A buffer whose data starts on a 16-byte boundary, as the converter writes them (kernels read int32
    biases and may use SIMD loads on weights in place)."""

    def Pack(self, builder: flatbuffers.Builder) -> int:
        data = None
        if self.data is not None:
            payload = self.data.tobytes()
            builder.StartVector(1, len(payload), BUFFER_ALIGNMENT)
            builder.head -= len(payload)
            builder.Bytes[builder.head:builder.head + len(payload)] = payload
            builder.vectorNumElems = len(payload)
            data = builder.EndVector()
        schema.BufferStart(builder)
        if data is not None:
            schema.BufferAddData(builder, data)
        return schema.BufferEnd(builder)


def write_tflite(graph: Graph) -> bytes:
    """Serialise `graph` to .tflite bytes that TFLite Micro loads and `decode_tflite` reads back unchanged."""
    opcode_index: dict[str, int] = {}
    opcodes: list[Any] = []
    for op in graph.ops:
        if op.type not in opcode_index:
            opcode_index[op.type] = len(opcodes)
            opcodes.append(_opcode(op.type))
    buffers: list[Any] = [schema.BufferT()]
    tensors = [_tensor(t, buffers) for t in graph.tensors]

    sub = schema.SubGraphT()
    sub.name = graph.name
    sub.tensors = tensors
    sub.inputs = np.asarray(graph.inputs, dtype=np.int32)
    sub.outputs = np.asarray(graph.outputs, dtype=np.int32)
    sub.operators = [_operator(op, opcode_index[op.type]) for op in graph.ops]

    model = schema.ModelT()
    model.version = SCHEMA_VERSION
    model.description = "vmcu"
    model.operatorCodes = opcodes
    model.subgraphs = [sub]
    model.buffers = buffers
    size_hint = 1024 + sum(t.nbytes + BUFFER_ALIGNMENT for t in graph.tensors if t.is_const)
    builder = flatbuffers.Builder(size_hint)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def write_tflite_file(graph: Graph, path: str | Path) -> Path:
    """Write `graph` as a .tflite file at `path` (see write_tflite) and return the path."""
    path = Path(path)
    path.write_bytes(write_tflite(graph))
    return path


def _opcode(op_type: str) -> Any:
    if op_type.startswith("CUSTOM:"):
        raise UnsupportedOpError(f"cannot write custom operator {op_type[7:]!r}: the IR lacks its options")
    code = getattr(schema.BuiltinOperator, op_type, None)
    if code is None:
        raise UnsupportedOpError(f"cannot write operator {op_type}: not a TFLite builtin")
    oc = schema.OperatorCodeT()
    oc.builtinCode = code
    oc.deprecatedBuiltinCode = min(code, PLACEHOLDER_FOR_GREATER_OP_CODES)
    oc.version = 1
    return oc


def _tensor(t: Tensor, buffers: list[Any]) -> Any:
    tt = schema.TensorT()
    tt.name = t.name
    tt.shape = np.asarray(t.shape, dtype=np.int32)
    tt.type = TENSOR_TYPE_CODES[t.dtype]
    tt.isVariable = t.is_variable
    if t.quant is not None:
        q = schema.QuantizationParametersT()
        q.scale = np.asarray(t.quant.scale, dtype=np.float32)
        q.zeroPoint = np.asarray(t.quant.zero_point, dtype=np.int64)
        q.quantizedDimension = t.quant.axis
        tt.quantization = q
    if t.data is not None:
        b = _AlignedBufferT()
        b.data = np.ascontiguousarray(t.data, dtype=t.data.dtype.newbyteorder("<"))
        tt.buffer = len(buffers)
        buffers.append(b)
    return tt


def _operator(op: Op, opcode_index: int) -> Any:
    o = schema.OperatorT()
    o.opcodeIndex = opcode_index
    o.inputs = np.asarray(op.inputs, dtype=np.int32)
    o.outputs = np.asarray(op.outputs, dtype=np.int32)
    if op.type in OPTION_ENCODERS:
        o.builtinOptionsType, encode = OPTION_ENCODERS[op.type]
        o.builtinOptions = encode(op.options)
    elif op.type not in OPTIONLESS_OPS:
        raise UnsupportedOpError(f"cannot write op {op.index} {op.type}: the IR does not carry its options")
    return o
