"""Decode a .tflite flatbuffer into the graph IR (decode only: no planning, no execution).

The flatbuffer reader trusts offsets, so a corrupt file can raise anything or yield nonsense; every
access is guarded and the decoded graph is validated (indices in range, constant buffers of the right
size, sane shapes) so that bad input becomes one ModelError line instead of a traceback.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import tflite

from vmcu.errors import ModelError, UnsupportedOpError
from vmcu.ir.graph import DTYPE_BYTES, NO_TENSOR, Graph, Op, Quant, Tensor

TENSOR_TYPES: dict[int, str] = {
    0: "float32", 1: "float16", 2: "int32", 3: "uint8", 4: "int64", 6: "bool", 7: "int16", 8: "complex64",
    9: "int8", 10: "float64",
}
NUMPY_DTYPES: dict[str, Any] = {
    "float32": np.float32, "float16": np.float16, "int32": np.int32, "uint8": np.uint8, "int64": np.int64,
    "bool": np.bool_, "int16": np.int16, "int8": np.int8, "float64": np.float64, "complex64": np.complex64,
}
ACTIVATIONS = {0: "NONE", 1: "RELU", 2: "RELU_N1_TO_1", 3: "RELU6", 4: "TANH", 5: "SIGN_BIT"}
PADDINGS = {0: "SAME", 1: "VALID"}
BUILTIN_NAMES: dict[int, str] = {
    v: k for k, v in vars(tflite.BuiltinOperator).items() if not k.startswith("_") and isinstance(v, int)
}
MAX_ELEMENTS = 1 << 28  # no MCU model has a tensor near 256 Mi elements; larger means a corrupt file

# One table: op type -> function decoding its builtin options into the IR's option dict.


def _conv(o: Any) -> dict[str, Any]:
    return {"padding": PADDINGS[o.Padding()], "stride_w": o.StrideW(), "stride_h": o.StrideH(),
            "dilation_w": o.DilationWFactor(), "dilation_h": o.DilationHFactor(),
            "activation": ACTIVATIONS[o.FusedActivationFunction()]}


def _depthwise(o: Any) -> dict[str, Any]:
    return {**_conv(o), "depth_multiplier": o.DepthMultiplier()}


def _pool(o: Any) -> dict[str, Any]:
    return {"padding": PADDINGS[o.Padding()], "stride_w": o.StrideW(), "stride_h": o.StrideH(),
            "filter_w": o.FilterWidth(), "filter_h": o.FilterHeight(),
            "activation": ACTIVATIONS[o.FusedActivationFunction()]}


def _fully_connected(o: Any) -> dict[str, Any]:
    return {"activation": ACTIVATIONS[o.FusedActivationFunction()], "weights_format": o.WeightsFormat(),
            "keep_num_dims": bool(o.KeepNumDims())}


def _activation_only(o: Any) -> dict[str, Any]:
    return {"activation": ACTIVATIONS[o.FusedActivationFunction()]}


def _concat(o: Any) -> dict[str, Any]:
    return {"axis": o.Axis(), "activation": ACTIVATIONS[o.FusedActivationFunction()]}


def _reducer(o: Any) -> dict[str, Any]:
    return {"keep_dims": bool(o.KeepDims())}


def _softmax(o: Any) -> dict[str, Any]:
    return {"beta": float(o.Beta())}


OPTION_DECODERS: dict[str, tuple[type, Any]] = {
    "CONV_2D": (tflite.Conv2DOptions, _conv),
    "DEPTHWISE_CONV_2D": (tflite.DepthwiseConv2DOptions, _depthwise),
    "AVERAGE_POOL_2D": (tflite.Pool2DOptions, _pool),
    "MAX_POOL_2D": (tflite.Pool2DOptions, _pool),
    "FULLY_CONNECTED": (tflite.FullyConnectedOptions, _fully_connected),
    "ADD": (tflite.AddOptions, _activation_only),
    "MUL": (tflite.MulOptions, _activation_only),
    "CONCATENATION": (tflite.ConcatenationOptions, _concat),
    "MEAN": (tflite.ReducerOptions, _reducer),
    "SOFTMAX": (tflite.SoftmaxOptions, _softmax),
}

# Defaults for options a converter may omit (a missing table means all-default fields).
OPTION_DEFAULTS: dict[str, dict[str, Any]] = {
    "CONV_2D": {"padding": "SAME", "stride_w": 1, "stride_h": 1, "dilation_w": 1, "dilation_h": 1,
                "activation": "NONE"},
    "FULLY_CONNECTED": {"activation": "NONE", "weights_format": 0, "keep_num_dims": False},
    "ADD": {"activation": "NONE"},
    "MUL": {"activation": "NONE"},
    "MEAN": {"keep_dims": False},
    "SOFTMAX": {"beta": 1.0},
    "CONCATENATION": {"axis": 0, "activation": "NONE"},
}
OPTION_DEFAULTS["DEPTHWISE_CONV_2D"] = {**OPTION_DEFAULTS["CONV_2D"], "depth_multiplier": 1}


def read_tflite(path: str | Path) -> Graph:
    """Read a .tflite file into a Graph; ModelError on anything that is not a well-formed TFLite model."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ModelError(f"{path}: cannot read model file ({e.strerror or e})") from None
    return decode_tflite(data, name=path.stem)


def decode_tflite(data: bytes, name: str = "model") -> Graph:
    """Decode flatbuffer bytes into a Graph (see read_tflite)."""
    if len(data) == 0:
        raise ModelError(f"{name}: model file is empty")
    if len(data) < 16 or data[4:8] != b"TFL3":
        raise ModelError(f"{name}: not a TFLite model (missing the 'TFL3' flatbuffer identifier)")
    try:
        graph = _decode(data, name)
    except (ModelError, UnsupportedOpError):
        raise
    except Exception as e:  # the flatbuffer reader raises arbitrary errors on corrupt offsets
        raise ModelError(f"{name}: corrupt or truncated TFLite file ({type(e).__name__}: {e})") from None
    _validate(graph)
    return graph


def _decode(data: bytes, name: str) -> Graph:
    model = tflite.Model.GetRootAsModel(data, 0)
    if model.SubgraphsLength() < 1:
        raise ModelError(f"{name}: the model has no subgraph")
    sub = model.Subgraphs(0)
    buffers = [model.Buffers(i) for i in range(model.BuffersLength())]
    tensors = tuple(_decode_tensor(sub.Tensors(i), i, buffers, data, name) for i in range(sub.TensorsLength()))
    opcodes = []
    for i in range(model.OperatorCodesLength()):
        oc = model.OperatorCodes(i)
        code = max(oc.BuiltinCode(), oc.DeprecatedBuiltinCode())
        opcodes.append("CUSTOM:" + oc.CustomCode().decode() if code == 32 else
                       BUILTIN_NAMES.get(code, f"BUILTIN_{code}"))
    ops = []
    for i in range(sub.OperatorsLength()):
        o = sub.Operators(i)
        idx = o.OpcodeIndex()
        if idx >= len(opcodes):
            raise ModelError(f"{name}: op {i} refers to operator code {idx}, the model has {len(opcodes)}")
        op_type = opcodes[idx]
        inputs = tuple(int(x) for x in o.InputsAsNumpy()) if o.InputsLength() else ()
        outputs = tuple(int(x) for x in o.OutputsAsNumpy()) if o.OutputsLength() else ()
        ops.append(Op(i, op_type, inputs, outputs, _decode_options(o, op_type)))
    graph_inputs = tuple(int(x) for x in sub.InputsAsNumpy()) if sub.InputsLength() else ()
    graph_outputs = tuple(int(x) for x in sub.OutputsAsNumpy()) if sub.OutputsLength() else ()
    return Graph(name, tensors, tuple(ops), graph_inputs, graph_outputs)


def _decode_tensor(t: Any, index: int, buffers: list[Any], data: bytes, name: str) -> Tensor:
    tname = t.Name().decode("utf-8", errors="replace") if t.Name() else f"tensor_{index}"
    ttype = t.Type()
    if ttype not in TENSOR_TYPES:
        raise ModelError(f"{name}: tensor {index} '{tname}' has unknown type code {ttype}")
    dtype = TENSOR_TYPES[ttype]
    shape = tuple(int(d) for d in t.ShapeAsNumpy()) if t.ShapeLength() else ()
    if any(d < 0 for d in shape):
        shape_sig = tuple(int(d) for d in t.ShapeSignatureAsNumpy()) if t.ShapeSignatureLength() else ()
        if shape_sig and shape_sig[0] == -1 and all(d >= 0 for d in shape[1:]):
            shape = (1,) + shape[1:]
        else:
            raise ModelError(f"{name}: tensor {index} '{tname}' has a dynamic shape {shape}")
    quant = None
    q = t.Quantization()
    if q is not None and q.ScaleLength() > 0:
        scales = tuple(float(s) for s in q.ScaleAsNumpy())
        zps = tuple(int(z) for z in q.ZeroPointAsNumpy()) if q.ZeroPointLength() else (0,) * len(scales)
        quant = Quant(scales, zps, int(q.QuantizedDimension()))
    const = None
    b = t.Buffer()
    if b >= len(buffers):
        raise ModelError(f"{name}: tensor {index} '{tname}' refers to buffer {b}, the model has {len(buffers)}")
    buf = buffers[b] if b > 0 else None
    if buf is not None:
        raw = None
        if buf.DataLength() > 0:
            raw = buf.DataAsNumpy().tobytes()
        elif buf.Offset() > 1:  # large models keep buffers after the flatbuffer
            off, size = int(buf.Offset()), int(buf.Size())
            if off + size > len(data):
                raise ModelError(f"{name}: tensor {index} '{tname}': buffer runs past the end of the file")
            raw = data[off:off + size]
        if raw is not None:
            n = 1
            for d in shape:
                n *= d
            if n > MAX_ELEMENTS or len(raw) != n * DTYPE_BYTES[dtype]:
                raise ModelError(f"{name}: tensor {index} '{tname}' holds {len(raw)} bytes of data, its shape "
                                 f"{list(shape)} of {dtype} needs {n * DTYPE_BYTES[dtype]}")
            const = np.frombuffer(raw, dtype=NUMPY_DTYPES[dtype]).reshape(shape).copy()
            const.setflags(write=False)
    return Tensor(index, tname, shape, dtype, quant, const, bool(t.IsVariable()))


def _decode_options(o: Any, op_type: str) -> dict[str, Any]:
    options = dict(OPTION_DEFAULTS.get(op_type, {}))
    decoder = OPTION_DECODERS.get(op_type)
    table = o.BuiltinOptions()
    if decoder is not None and table is not None:
        cls, fn = decoder
        opt = cls()
        opt.Init(table.Bytes, table.Pos)
        options.update(fn(opt))
    return options


def _validate(graph: Graph) -> None:
    """Reject graphs whose structure is inconsistent (what a flipped byte in an index usually produces)."""
    n = len(graph.tensors)
    for t in graph.tensors:
        if t.size > MAX_ELEMENTS:
            raise ModelError(f"{graph.name}: tensor {t.index} '{t.name}' has implausible shape {list(t.shape)}")
    for label, idxs in (("input", graph.inputs), ("output", graph.outputs)):
        for i in idxs:
            if not 0 <= i < n:
                raise ModelError(f"{graph.name}: graph {label} refers to tensor {i}, the model has {n}")
    if not graph.inputs or not graph.outputs:
        raise ModelError(f"{graph.name}: the model declares no inputs or no outputs")
    written = set(graph.inputs) | {t.index for t in graph.tensors if t.is_const or t.is_variable}
    for op in graph.ops:
        for i in op.inputs + op.outputs:
            if i != NO_TENSOR and not 0 <= i < n:
                raise ModelError(f"{graph.name}: op {op.index} {op.type} refers to tensor {i}, the model has {n}")
        for i in op.inputs:
            if i != NO_TENSOR and i not in written:
                raise ModelError(f"{graph.name}: op {op.index} {op.type} reads tensor {i} "
                                 f"'{graph.tensors[i].name}' before any op writes it")
        for i in op.outputs:
            if i in written:
                raise ModelError(f"{graph.name}: op {op.index} {op.type} writes tensor {i} "
                                 f"'{graph.tensors[i].name}', which is already written or constant")
            written.add(i)
    for i in graph.outputs:
        if i not in written:
            raise ModelError(f"{graph.name}: graph output tensor {i} '{graph.tensors[i].name}' is never written")
