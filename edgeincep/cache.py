"""Stage caching: a stage's outputs are reused when the hash of everything it read is unchanged.

The key covers inputs (checkpoint bytes, recipe, calibration files) and the library versions
that shape the output, so upgrading onnxruntime or changing one calibration image reruns
exactly the stages that depend on it.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

from edgeincep import __version__
from edgeincep.core.artifact import Artifact, sidecar_path
from edgeincep.fsutil import sha256_file, write_text_atomic

_LIBS = ("torch", "onnx", "onnxruntime", "numpy", "pillow")


def library_versions(extra: tuple[str, ...] = ()) -> dict[str, str]:
    out = {"edgeincep": __version__}
    for lib in _LIBS + extra:
        try:
            out[lib] = metadata.version(lib)
        except metadata.PackageNotFoundError:
            out[lib] = "absent"
    return out


def files_digest(paths) -> str:
    h = hashlib.sha256()
    for p in paths:
        h.update(str(Path(p).name).encode())
        h.update(hashlib.sha256(Path(p).read_bytes()).digest())
    return h.hexdigest()


def stage_key(**parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def outputs_digest(outputs: list[Path]) -> dict[str, str]:
    """sha256 of each output file, by name: what a later lookup checks before trusting the files."""
    return {Path(p).name: sha256_file(Path(p)) for p in outputs if Path(p).is_file()}


def lookup(record_path: Path, key: str, outputs: list[Path]) -> dict | None:
    """The stage's saved record if its key matches and every output still exists with the bytes it
    was written with (a file changed by hand or by another tool is rebuilt, never reused)."""
    try:
        record = json.loads(Path(record_path).read_text())
    except (OSError, ValueError):
        return None
    if record.get("cache_key") != key or not all(Path(p).is_file() for p in outputs):
        return None
    written = record.get("sha256")
    if not isinstance(written, dict) or outputs_digest(outputs) != {Path(p).name: written.get(Path(p).name)
                                                                    for p in outputs}:
        return None
    return record


def save_record(art: Artifact, cache_key: str | None) -> None:
    """The artifact's record beside it, with its key and its files' sha256 (what `lookup` trusts)."""
    record = art.to_dict() | {"cache_key": cache_key, "sha256": outputs_digest(art.files())}
    write_text_atomic(sidecar_path(art.path), json.dumps(record, indent=2))


def recorded_artifact(out: Path, key: str, outputs: list[Path] | None = None) -> Artifact | None:
    """The artifact at `out` as its record describes it, when the key and the bytes of `outputs` (default: `out`
    alone) still match; else None."""
    hit = lookup(sidecar_path(out), key, outputs or [out])
    if hit is None:
        return None
    return Artifact(out, hit["target"], hit["precision"], hit["fmt"], meta=hit["meta"] | {"cached": True})


def cached_artifact(out: Path, key: str, build: Callable[[], Artifact], outputs: list[Path] | None = None) -> Artifact:
    """The recorded artifact at `out` (recorded_artifact), else `build()` recorded with the key."""
    hit = recorded_artifact(out, key, outputs)
    if hit is not None:
        return hit
    art = build()
    art.meta["cache_key"] = key
    save_record(art, key)
    return art
