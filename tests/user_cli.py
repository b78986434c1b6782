"""The installed CLI run as a user runs it: a fresh process, its exit code and what it printed."""
from __future__ import annotations

import os
import subprocess
import sys


def cli(*args: object, timeout: float = 60) -> subprocess.CompletedProcess:
    """`python -m edgeincep ARGS` in a fresh process: what a user sees, exit code and all."""
    return subprocess.run([sys.executable, "-m", "edgeincep", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "COLUMNS": "200"})


def one_error_line(proc: subprocess.CompletedProcess) -> str:
    """The single `error: ...` line a refused command printed (and no traceback anywhere)."""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    return lines[0]


def final_error_line(proc: subprocess.CompletedProcess) -> str:
    """The one `error: ...` line a command printed last, after whatever progress it showed (no traceback)."""
    lines = proc.stderr.strip().splitlines()
    errors = [ln for ln in lines if ln.startswith("error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    return errors[0]
