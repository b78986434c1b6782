"""Device bundles, written the same way for every device: a folder, its manifest, and a .tar.gz.

A bundle is what a person copies to a device: the model file, labels, preprocessing, a runner
and a README. The manifest lists every file's sha256 and size (so the device can check its copy),
the edgeincep version, the recipe, the source checkpoint and the drift measured on the host.

Both outputs appear whole or not at all: the folder is filled under a temporary name and renamed
into place (an older bundle of the same name is swapped out, then removed), and the archive is
written to a temporary file and renamed. Device specifics live in the per-device modules
(jetson.py, ...), never here.
"""
from __future__ import annotations

import json
import os
import shutil
import stat
import tarfile
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from edgeincep import __version__
from edgeincep.core.errors import OutputError, UserError
from edgeincep.fsutil import atomic_path, ensure_writable_dir, sha256_file

SCHEMA = "edgeincep.bundle/1"
MANIFEST = "manifest.json"


@dataclass
class BundleResult:
    folder: Path
    archive: Path
    manifest: dict

    def to_dict(self) -> dict:
        wheels = (self.manifest.get("runtime") or {}).get("wheels") or {}
        return {"folder": str(self.folder), "archive": str(self.archive),
                "files": sorted(self.manifest["files"]), "archive_bytes": self.archive.stat().st_size,
                "wheels_bytes": wheels.get("bytes", 0)}


def _safe_name(name: str) -> str:
    p = Path(name)
    if p.is_absolute() or ".." in p.parts or not p.parts or name == MANIFEST:
        raise UserError(f"bundle file name '{name}' is not a plain relative path (or is reserved)")
    return p.as_posix()


def write_bundle(folder: Path, files: Mapping[str, bytes | str | Path], *, manifest: Mapping | None = None,
                 executable: frozenset[str] | set[str] = frozenset()) -> BundleResult:
    """Write `files` (name -> bytes, text, or a file to copy) into `folder` with a manifest, and `folder`.tar.gz.

    `manifest` adds facts to manifest.json (recipe, checkpoint, drift, how to run); the file list and
    checksums are always computed here, from the bytes actually written.
    """
    folder = Path(folder)
    parent = ensure_writable_dir(folder.parent)
    names = {_safe_name(n): src for n, src in files.items()}
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".part", dir=parent))
    except OSError as e:
        raise OutputError(f"cannot create the bundle folder ({e.strerror or e})", folder) from None
    try:
        for name, src in names.items():
            dst = tmp / name
            dst.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(src, Path):
                shutil.copyfile(src, dst)
            elif isinstance(src, bytes):
                dst.write_bytes(src)
            else:
                dst.write_text(src, encoding="utf-8")
            mode = 0o755 if name in executable else 0o644
            os.chmod(dst, mode)
        entries = {name: {"sha256": sha256_file(tmp / name), "size": (tmp / name).stat().st_size,
                          **({"executable": True} if name in executable else {})} for name in sorted(names)}
        record = {"schema": SCHEMA, "edgeincep_version": __version__, **dict(manifest or {}), "files": entries}
        (tmp / MANIFEST).write_text(json.dumps(record, indent=2, default=str), encoding="utf-8")
        os.chmod(tmp, 0o755)
        _swap_in(tmp, folder)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise OutputError(f"could not write the bundle ({e.strerror or e})", folder) from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    archive = folder.with_name(folder.name + ".tar.gz")
    with atomic_path(archive) as tmp_tar, tarfile.open(tmp_tar, "w:gz") as tar:
        for path in sorted(folder.rglob("*")):
            tar.add(path, arcname=f"{folder.name}/{path.relative_to(folder).as_posix()}", recursive=False)
    return BundleResult(folder, archive, record)


def _swap_in(tmp: Path, folder: Path) -> None:
    """Rename the finished folder into place; an older bundle there is moved aside first, then removed."""
    old = None
    if folder.exists() or folder.is_symlink():
        if not folder.is_dir() or folder.is_symlink():
            raise OutputError("exists and is not a bundle folder", folder)
        old = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".old", dir=folder.parent))
        os.replace(folder, old / folder.name)
    os.replace(tmp, folder)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def verify_bundle(folder: Path) -> list[str]:
    """Problems with a bundle folder against its manifest (empty when every file matches)."""
    folder = Path(folder)
    try:
        record = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError) as e:
        return [f"{MANIFEST}: unreadable ({e})"]
    problems = []
    for name, want in record.get("files", {}).items():
        path = folder / name
        if not path.is_file():
            problems.append(f"{name}: missing")
        elif path.stat().st_size != want["size"] or sha256_file(path) != want["sha256"]:
            problems.append(f"{name}: content differs from the manifest")
        elif want.get("executable") and not path.stat().st_mode & stat.S_IXUSR:
            problems.append(f"{name}: not executable")
    listed = set(record.get("files", {})) | {MANIFEST}
    problems += [f"{p.relative_to(folder).as_posix()}: not in the manifest" for p in folder.rglob("*")
                 if p.is_file() and p.relative_to(folder).as_posix() not in listed]
    return problems
