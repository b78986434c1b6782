"""Find the Artifact record for a file: its sidecar JSON if edgeincep wrote one, else the backend's reading of it."""
from __future__ import annotations

from pathlib import Path

from edgeincep.core.artifact import Artifact, sidecar_path
from edgeincep.core.errors import UserError
from edgeincep.registry import get_backend, list_backends


def artifact_for_file(path: Path, device: str | None = None) -> Artifact:
    """The record its build wrote beside the file (a damaged one is ignored), else `Backend.recognise`: by the
    backend that makes `device` bundles of such files, or without a device by the backend claiming its suffix."""
    path = Path(path)
    if not path.is_file():
        raise UserError("artifact not found", path)
    sidecar = sidecar_path(path)
    if sidecar.is_file():
        try:
            art = Artifact.from_sidecar(sidecar)
        except (ValueError, KeyError, TypeError):
            pass  # a damaged record: read the file, as for one copied without it
        else:
            art.path = path
            return art
    if device is not None:
        return get_backend(device_target(device, path)).recognise(path, device)
    by_suffix = {}
    for name in list_backends():
        for suffix in get_backend(name).suffixes:
            by_suffix.setdefault(suffix, name)
    if path.suffix not in by_suffix:
        raise UserError(f"unknown artifact type '{path.suffix}' (known: {', '.join(by_suffix)})", path)
    return get_backend(by_suffix[path.suffix]).recognise(path)


def device_targets(device: str) -> list[str]:
    """The backends whose bundles are made for this device first (rpi: executorch, tflite; coral: edgetpu, ...)."""
    found = [name for name in list_backends() if get_backend(name).bundle_devices[:1] == (device,)]
    if not found:
        raise UserError(f"no backend writes {device} bundles")
    return found


def device_target(device: str, path: Path) -> str:
    """The backend that makes `device` bundles of a file like `path` (told apart by the file's suffix)."""
    names = device_targets(device)
    return next((n for n in names if path.suffix in get_backend(n).suffixes), names[0])
