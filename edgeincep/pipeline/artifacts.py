"""Find the Artifact record for a file: its sidecar JSON if edgeincep wrote one, else by suffix and content."""
from __future__ import annotations

from pathlib import Path

from edgeincep.core.artifact import Artifact, sidecar_path
from edgeincep.core.errors import UserError
from edgeincep.registry import get_backend, list_backends


def artifact_for_file(path: Path) -> Artifact:
    path = Path(path)
    if not path.is_file():
        raise UserError("artifact not found", path)
    sidecar = sidecar_path(path)
    if sidecar.is_file():
        art = Artifact.from_sidecar(sidecar)
        art.path = path
        return art
    by_suffix = {}
    for name in list_backends():
        for suffix in get_backend(name).suffixes:
            by_suffix.setdefault(suffix, name)
    if path.suffix not in by_suffix:
        raise UserError(f"unknown artifact type '{path.suffix}' (known: {', '.join(by_suffix)})", path)
    backend = get_backend(by_suffix[path.suffix])
    return Artifact(path, backend.name, backend.stored_precision(path), backend.file_format)
