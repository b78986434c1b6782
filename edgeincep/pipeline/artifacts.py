"""Find the Artifact record for a file: its sidecar JSON if edgeincep wrote one, else by suffix and content."""
from __future__ import annotations

from pathlib import Path

from edgeincep.errors import UserError
from edgeincep.targets.base import Artifact

_BY_SUFFIX = {".onnx": ("onnxruntime", "onnx"), ".xml": ("openvino", "openvino-ir"), ".tflite": ("tflite", "tflite")}
_INT8_ONNX_OPS = {"QuantizeLinear", "DequantizeLinear", "QLinearConv", "QLinearMatMul", "ConvInteger", "MatMulInteger"}


def artifact_for_file(path: Path) -> Artifact:
    path = Path(path)
    if not path.is_file():
        raise UserError("artifact not found", path)
    sidecar = path.with_name(path.name + ".json")
    if sidecar.is_file():
        art = Artifact.from_sidecar(sidecar)
        art.path = path
        return art
    if path.suffix not in _BY_SUFFIX:
        raise UserError(f"unknown artifact type '{path.suffix}' (known: {', '.join(_BY_SUFFIX)})", path)
    target, fmt = _BY_SUFFIX[path.suffix]
    return Artifact(path, target, _stored_precision(path), fmt)


def _stored_precision(path: Path) -> str:
    """int8 when the graph holds quantized operations, else fp32 (read from the file, not its name)."""
    if path.suffix == ".tflite":
        from edgeincep.targets.tflite_graph import read_graph, stored_precision

        return stored_precision(read_graph(path))
    if path.suffix == ".xml":
        text = path.read_text(encoding="utf-8", errors="replace")
        return "int8" if 'type="FakeQuantize"' in text else "fp32"
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # noqa: BLE001 - onnx raises several unrelated types for a bad file
        raise UserError(f"not a readable ONNX model ({type(e).__name__})", path) from None
    return "int8" if any(n.op_type in _INT8_ONNX_OPS for n in model.graph.node) else "fp32"
