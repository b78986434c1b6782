"""Find the Artifact record for a file: its sidecar JSON if edgeincep wrote one, else by suffix."""
from __future__ import annotations

from pathlib import Path

from ..errors import UserError
from ..targets.base import Artifact

_BY_SUFFIX = {".onnx": ("onnxruntime", "onnx"), ".xml": ("openvino", "openvino-ir")}


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
    return Artifact(path, target, "unknown", fmt)
