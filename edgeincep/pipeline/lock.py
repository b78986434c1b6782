"""One run per output directory: a second run on the same folder would overwrite artifacts the first
is still validating. The lock is an flock on a file in the folder, so the kernel drops it when the
holder exits in any way (kill -9 included): a stale lock can never block a later run."""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from edgeincep.core.errors import OutputError

LOCK_NAME = ".edgeincep.lock"


@contextlib.contextmanager
def output_lock(out_dir: Path) -> Iterator[None]:
    path = Path(out_dir) / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise OutputError(f"cannot create the run lock ({e.strerror or e})", out_dir) from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise OutputError(f"another edgeincep run holds this output directory ({_holder(fd)}); "
                              f"wait for it or use another --out", out_dir) from None
        holder = {"pid": os.getpid(), "host": socket.gethostname(),
                  "started": time.strftime("%Y-%m-%d %H:%M:%S"), "command": " ".join(sys.argv[:6])}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(holder).encode(), 0)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the flock


def _holder(fd: int) -> str:
    try:
        h = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
    except (OSError, ValueError):
        return "holder unknown"
    return f"pid {h.get('pid')} on {h.get('host')} since {h.get('started')}: {h.get('command')}"
