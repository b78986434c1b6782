"""What every helper child process of edgeincep shares (ModelOpt, TFLite conversion and calibration).

Work that monkeypatches libraries, holds gigabytes only while it runs (TensorFlow's converter), or
must use more cores than one GIL allows runs in `python -m edgeincep.<module>` children; these
are the rules they all follow.
"""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

PARENT_PID = "EDGEINCEP_PARENT_PID"


def child_env() -> dict[str, str]:
    """The environment of a child: it imports this very edgeincep, installed or run from a checkout,
    and TensorFlow's C++ start-up notes stay quiet."""
    env = dict(os.environ)
    env[PARENT_PID] = str(os.getpid())
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    root = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def die_with_parent() -> None:
    """Called first in a child: if its parent is killed (kill -9), the child is killed too, instead of
    computing for nobody and holding its memory. A parent killed before this line ran (while the child's
    Python was starting) sends no signal, so the child then checks that its parent is still the one that
    started it, and leaves at once if not."""
    try:
        import ctypes
        import signal

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG (Linux)
    except (OSError, AttributeError):
        pass
    parent = os.environ.get(PARENT_PID)
    if parent and parent.isdigit() and os.getppid() != int(parent):
        os._exit(137)  # as if the death signal had come


def last_line(proc: subprocess.CompletedProcess | None = None, text: str | None = None) -> str:
    """The line of a failed child's output worth showing: its last error line, else its last line."""
    if text is None:
        text = (proc.stderr or "") if proc is not None else ""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    errors = [ln for ln in lines if "Error" in ln or "error" in ln]
    fallback = f"exit code {proc.returncode}" if proc is not None else "no output"
    return (errors or lines or [fallback])[-1][:400]
