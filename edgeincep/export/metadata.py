"""The edgeincep.* facts an ONNX file carries, read and written without torch (device runners and probes use it)."""
from __future__ import annotations

from pathlib import Path

from edgeincep.core.errors import UserError


def read_metadata(path: str | Path) -> dict[str, str]:
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except FileNotFoundError:
        raise UserError("ONNX model not found", path) from None
    except Exception as e:  # noqa: BLE001 - protobuf's DecodeError, OSError, ValueError: all mean "not an ONNX file"
        detail = " ".join(str(e).split())[:150] or type(e).__name__
        raise UserError(f"not a readable ONNX model ({type(e).__name__}: {detail})", path) from None
    return {p.key: p.value for p in model.metadata_props}


def write_metadata(model, values: dict[str, str], *, keep_existing: bool = True) -> None:
    """Set the model's metadata_props to `values`, over what it already carries unless keep_existing is False."""
    merged = ({p.key: p.value for p in model.metadata_props} if keep_existing else {}) | values
    del model.metadata_props[:]
    for k, v in merged.items():
        model.metadata_props.add(key=k, value=str(v))


_INT8_OPS = {"QuantizeLinear", "DequantizeLinear", "QLinearConv", "QLinearMatMul", "ConvInteger", "MatMulInteger"}


def onnx_stored_precision(path: str | Path) -> str:
    """int8 when the ONNX file holds quantized operations (Q/DQ or integer ops), else fp32: read from the graph."""
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # noqa: BLE001 - onnx raises several unrelated types for a bad file
        raise UserError(f"not a readable ONNX model ({type(e).__name__})", path) from None
    return "int8" if any(n.op_type in _INT8_OPS for n in model.graph.node) else "fp32"
