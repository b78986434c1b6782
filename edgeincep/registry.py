"""The backend registry: names to backends, each imported only when it is used.

Built-in backends are listed here as import paths (nothing is imported until a backend is asked for);
other packages add theirs through the `edgeincep.backends` entry-point group, with
`name = "package.module:BackendClass"`. A backend's recipe section is its settings class: the
built-ins name it here so reading a recipe imports no runtime code; an entry-point backend's class
carries it as `settings`.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from functools import cache
from importlib import metadata
from typing import TYPE_CHECKING

from edgeincep.core.errors import UserError

if TYPE_CHECKING:
    from edgeincep.backends.base import Backend

GROUP = "edgeincep.backends"


@dataclass(frozen=True)
class Entry:
    backend: str            # "module:Class"
    settings: str | None    # "module:Class" of its recipe section (built-ins); None: read from the class


BUILTIN: dict[str, Entry] = {
    "edgetpu": Entry("edgeincep.backends.edgetpu.backend:EdgeTpuBackend", None),
    "onnxruntime": Entry("edgeincep.backends.onnxruntime.backend:OnnxRuntimeBackend",
                         "edgeincep.backends.onnxruntime.settings:OrtSettings"),
    "openvino": Entry("edgeincep.backends.openvino.backend:OpenVinoBackend",
                      "edgeincep.backends.openvino.settings:OpenVinoSettings"),
    "tensorrt": Entry("edgeincep.backends.tensorrt.backend:TensorRtBackend",
                      "edgeincep.backends.tensorrt.settings:TensorRtSettings"),
    "tflite": Entry("edgeincep.backends.tflite.backend:TfliteBackend", "edgeincep.litert.settings:TfliteSettings"),
}
BUILTIN_SETTINGS_FREE = frozenset({"edgetpu"})  # built-ins without a recipe section of their own


@cache
def entries() -> dict[str, Entry]:
    """Every backend by name: the built-ins, then those other packages declare (a built-in name wins)."""
    found = dict(BUILTIN)
    for ep in metadata.entry_points(group=GROUP):
        found.setdefault(ep.name, Entry(ep.value, None))
    return dict(sorted(found.items()))


def list_backends() -> list[str]:
    return list(entries())


def _resolve(path: str):
    module, _, attr = path.partition(":")
    return getattr(importlib.import_module(module), attr)


@cache
def get_backend(name: str) -> Backend:
    known = entries()
    if name not in known:
        raise UserError(f"unknown target '{name}'; known targets: {', '.join(known)}")
    try:
        backend = _resolve(known[name].backend)()
    except Exception as e:
        if name in BUILTIN:
            raise  # edgeincep's own bug: the traceback is wanted
        # Another package's broken backend: its fault, said in one line.
        raise UserError(f"backend '{name}' ({known[name].backend}) cannot be loaded: {type(e).__name__}: "
                        f"{' '.join(str(e).split())[:200]}") from None
    if backend.name != name:
        raise UserError(f"backend '{name}' ({known[name].backend}) calls itself '{backend.name}'")
    return backend


def settings_sections() -> dict[str, type]:
    """Recipe section name -> its settings class, for every backend that has one (in name order)."""
    out = {}
    for name, entry in entries().items():
        if entry.settings is not None:
            out[name] = _resolve(entry.settings)
        elif name not in BUILTIN_SETTINGS_FREE:
            cls = get_backend(name).settings
            if cls is not None:
                out[name] = cls
    return out


def clear() -> None:
    """Forget what was found (a package installed or removed while the process runs)."""
    entries.cache_clear()
    get_backend.cache_clear()
