"""The backend registry: names to backends, each imported only when it is used.

A built-in backend is a folder `edgeincep/backends/<name>/` whose `backend.py` defines the Backend class
named `<name>`: found by its folder, with nothing to list anywhere else. Other packages add theirs through
the `edgeincep.backends` entry-point group, `<name> = "package.module:BackendClass"`. A backend's recipe
section is its class's `settings`.
"""
from __future__ import annotations

import importlib
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

from edgeincep.core.errors import UserError

if TYPE_CHECKING:
    from edgeincep.backends.base import Backend

GROUP = "edgeincep.backends"
BACKENDS_DIR = Path(__file__).resolve().parent / "backends"


@cache
def entries() -> dict[str, str]:
    """Every backend by name -> where it is: the built-in folders, then those other packages declare (a built-in
    name wins)."""
    found = {p.name: f"edgeincep.backends.{p.name}.backend" for p in sorted(BACKENDS_DIR.iterdir())
             if (p / "backend.py").is_file()}
    for ep in metadata.entry_points(group=GROUP):
        found.setdefault(ep.name, ep.value)
    return dict(sorted(found.items()))


def list_backends() -> list[str]:
    return list(entries())


def _backend_class(name: str, where: str) -> type:
    module_name, _, attr = where.partition(":")
    module = importlib.import_module(module_name)
    if attr:
        return getattr(module, attr)
    found = [v for v in vars(module).values()
             if isinstance(v, type) and v.__module__ == module_name and getattr(v, "name", None) == name]
    if len(found) != 1:
        raise RuntimeError(f"{module_name} must define one backend class named '{name}', found {len(found)}")
    return found[0]


@cache
def get_backend(name: str) -> Backend:
    known = entries()
    if name not in known:
        raise UserError(f"unknown target '{name}'; known targets: {', '.join(known)}")
    try:
        backend = _backend_class(name, known[name])()
    except Exception as e:
        if ":" not in known[name]:
            raise  # a built-in backend's failure is edgeincep's bug: the traceback is wanted
        # Another package's broken backend: its fault, said in one line.
        raise UserError(f"backend '{name}' ({known[name]}) cannot be loaded: {type(e).__name__}: "
                        f"{' '.join(str(e).split())[:200]}") from None
    if backend.name != name:
        raise UserError(f"backend '{name}' ({known[name]}) calls itself '{backend.name}'")
    return backend


def settings_sections() -> dict[str, type]:
    """Recipe section name -> its settings class, for every backend that has one (in name order)."""
    sections = {name: get_backend(name).settings for name in entries()}
    return {name: cls for name, cls in sections.items() if cls is not None}
