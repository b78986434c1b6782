"""Read a .tflite flatbuffer: operators with their versions and options, tensors, metadata.

Uses the schema module that ships with the LiteRT runtime, so it works on a device without
TensorFlow. Pure reading; nothing here runs the model.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import numpy as np

from edgeincep.core.errors import UserError

METADATA_NAME = "edgeincep"


@dataclass
class Tensor:
    index: int
    name: str
    shape: list[int]
    signature: list[int]        # -1 marks a dynamic dimension
    dtype: str                  # FLOAT32, INT8, UINT8, INT32, FLOAT16, ...
    constant: bool
    scales: int                 # number of quantization scales (1: per-tensor, >1: per-axis, 0: none)


@dataclass
class Op:
    index: int
    name: str                   # builtin operator name, e.g. CONV_2D, or the custom code
    version: int
    inputs: list[int]
    outputs: list[int]
    options: dict = field(default_factory=dict)


@dataclass
class Graph:
    ops: list[Op]
    tensors: list[Tensor]
    inputs: list[int]
    outputs: list[int]
    subgraphs: int
    buffers: list                # constant data by tensor index (numpy arrays), for option checks

    def constant(self, tensor_index: int) -> np.ndarray | None:
        return self.buffers[tensor_index]


@cache
def _names(enum_cls) -> dict[int, str]:
    return {v: k for k, v in vars(enum_cls).items() if not k.startswith("_") and isinstance(v, int)}


def _schema():
    from ai_edge_litert import schema_py_generated as schema

    return schema


def _load(path: Path | bytes):
    schema = _schema()
    data = path if isinstance(path, bytes) else Path(path).read_bytes()
    path = "<flatbuffer>" if isinstance(path, bytes) else path
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise UserError("not a TFLite flatbuffer (no TFL3 identifier)", path)
    try:
        return schema.ModelT.InitFromPackedBuf(bytearray(data), 0), schema
    except Exception as e:  # noqa: BLE001 - a damaged flatbuffer fails with whatever the accessor hit
        raise UserError(f"damaged TFLite flatbuffer ({type(e).__name__})", path) from None


def _options(obj) -> dict:
    if obj is None:
        return {}
    out = {}
    for k, v in vars(obj).items():
        if isinstance(v, (int, float, bool, str)) or v is None:
            out[k] = v
        elif isinstance(v, (list, np.ndarray)):
            out[k] = [int(x) for x in v]
    return out


def builtin_code(op_code) -> int:
    """An OperatorCode's builtin operator: codes above 127 live only in the newer `builtinCode` field."""
    return max(int(op_code.builtinCode or 0), int(op_code.deprecatedBuiltinCode or 0))


def read_graph(path: Path | bytes) -> Graph:
    model, schema = _load(path)
    op_names, type_names = _names(schema.BuiltinOperator), _names(schema.TensorType)
    sub = model.subgraphs[0]
    buffers = model.buffers or []
    codes = []
    for oc in model.operatorCodes:
        code = builtin_code(oc)
        name = op_names.get(code, f"BUILTIN_{code}")
        if name == "CUSTOM":
            name = f"CUSTOM:{(oc.customCode or b'').decode() if isinstance(oc.customCode, bytes) else oc.customCode}"
        codes.append((name, int(oc.version or 1)))
    tensors, consts = [], []
    for i, t in enumerate(sub.tensors):
        buf = buffers[t.buffer] if t.buffer is not None and t.buffer < len(buffers) else None
        data = getattr(buf, "data", None) if buf is not None else None
        const = data is not None and len(data) > 0
        shape = [int(d) for d in (t.shape if t.shape is not None else [])]
        sig = [int(d) for d in t.shapeSignature] if t.shapeSignature is not None else shape
        q = t.quantization
        scales = len(q.scale) if q is not None and q.scale is not None else 0
        dtype = type_names.get(int(t.type), str(t.type))
        name = t.name.decode() if isinstance(t.name, bytes) else str(t.name)
        tensors.append(Tensor(i, name, shape, sig, dtype, const, scales))
        consts.append(_as_array(data, dtype, shape) if const else None)
    ops = []
    for i, o in enumerate(sub.operators):
        name, version = codes[o.opcodeIndex]
        ops.append(Op(i, name, version, [int(x) for x in o.inputs], [int(x) for x in o.outputs],
                      _options(o.builtinOptions)))
    return Graph(ops, tensors, [int(x) for x in sub.inputs], [int(x) for x in sub.outputs],
                 len(model.subgraphs), consts)


_NP = {"INT32": np.int32, "INT64": np.int64, "INT8": np.int8, "UINT8": np.uint8, "FLOAT32": np.float32,
       "FLOAT16": np.float16, "INT16": np.int16}


def _as_array(data, dtype: str, shape: list[int]) -> np.ndarray | None:
    np_type = _NP.get(dtype)
    if np_type is None:
        return None
    arr = np.frombuffer(np.asarray(data, dtype=np.uint8).tobytes(), dtype=np_type)
    return arr.reshape(shape) if shape and arr.size == int(np.prod(shape)) else arr


def read_metadata(path: Path) -> dict[str, str]:
    """The edgeincep.* facts written at conversion time ({} for a .tflite made elsewhere)."""
    model, _ = _load(path)
    for m in model.metadata or []:
        name = m.name.decode() if isinstance(m.name, bytes) else m.name
        if name == METADATA_NAME:
            raw = bytes(np.asarray(model.buffers[m.buffer].data, dtype=np.uint8))
            try:
                return {str(k): str(v) for k, v in json.loads(raw).items()}
            except ValueError:
                return {}
    return {}


def stored_precision(graph: Graph) -> str:
    """int8 when convolution weights are 8-bit, fp16 when float weights are stored as float16, else fp32."""
    weights = [graph.tensors[o.inputs[1]] for o in graph.ops
               if o.name in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED") and len(o.inputs) > 1]
    dtypes = {w.dtype for w in weights if w.constant}
    if dtypes & {"INT8", "UINT8"}:
        return "int8"
    if "FLOAT16" in {t.dtype for t in graph.tensors if t.constant}:
        return "fp16"
    return "fp32"
