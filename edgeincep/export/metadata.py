"""The edgeincep.* facts an ONNX file carries, read without torch (device runners and probes use it)."""
from __future__ import annotations

from pathlib import Path


def read_metadata(path: str | Path) -> dict[str, str]:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return {p.key: p.value for p in model.metadata_props}
