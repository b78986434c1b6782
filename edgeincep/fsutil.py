"""Atomic file output: write beside the destination, then rename, so no reader ever sees half a file."""
from __future__ import annotations

import contextlib
import glob
import hashlib
import os
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

from edgeincep.core.errors import OutputError


def ensure_writable_dir(path: str | Path) -> Path:
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"cannot create output directory ({e.strerror or e})", path) from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise OutputError("output directory is not writable", path)
    return path


@contextlib.contextmanager
def atomic_path(final: str | Path) -> Iterator[Path]:
    """Yield a temp path in the destination's directory; rename it over `final` only on success."""
    final = Path(final)
    ensure_writable_dir(final.parent)
    sweep_stale_parts(final)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.{_owner()}.", suffix=".part", dir=final.parent)
    except OSError as e:
        raise OutputError(f"could not write ({e.strerror or e})", final) from None
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600; finished files get normal modes
        os.replace(tmp_path, final)
    except OSError as e:
        tmp_path.unlink(missing_ok=True)
        raise OutputError(f"could not write ({e.strerror or e})", final) from None
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def _owner() -> str:
    # host and pid in the temp name let a later run tell a dead writer's leftover from a live one's file
    return f"{socket.gethostname().replace('.', '_')}-{os.getpid()}"


def sweep_stale_parts(final: str | Path) -> list[Path]:
    """Delete temp files for `final` left by a writer on this host that no longer runs (kill -9, power loss).

    They never count as artifacts (hidden, `.part`), but each can be as large as the model; a live
    writer's file, or one from another host sharing the folder, is left alone.
    """
    final = Path(final)
    host = socket.gethostname().replace(".", "_")
    removed = []
    for part in final.parent.glob(f".{glob.escape(final.name)}.*.part"):
        owner = part.name[len(final.name) + 2:].split(".", 1)[0]
        owner_host, _, pid = owner.rpartition("-")
        if owner_host != host or not pid.isdigit() or _alive(int(pid)):
            continue
        with contextlib.suppress(OSError):
            part.unlink()
            removed.append(part)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text_atomic(final: str | Path, text: str) -> Path:
    with atomic_path(final) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(final)


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def link_by_index(paths: list[Path], folder: Path) -> Path:
    """`folder` filled with links to `paths` named by position (0000000.png, ...): a short command line for a
    runner that reads a folder in name order, and results that name their index."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for i, p in enumerate(paths):
        (folder / f"{i:07d}{Path(p).suffix.lower()}").symlink_to(Path(p).resolve())
    return folder
