"""Wall time and peak memory of each pipeline stage, measured in the running process.

Linux keeps a per-process RSS high-water mark (VmHWM) that writing "5" to /proc/self/clear_refs
resets, so each stage's own peak can be read without a process per stage. Where that is not
possible (not Linux, or no permission) the peak is the process's peak so far, and says so.
"""
from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator


def status_mb(field: str) -> float | None:
    """A memory field of /proc/self/status (VmRSS, VmHWM, ...) in MB; None where there is none."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
            f.write("5")
        return True
    except OSError:
        return False


class StageMeter:
    def __init__(self):
        self.stages: dict[str, dict] = {}

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        own_peak = _reset_peak()
        start_mb = status_mb("VmRSS")
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.stages[name] = {"seconds": round(time.perf_counter() - t0, 2), "start_rss_mb": start_mb,
                                 "peak_rss_mb": status_mb("VmHWM"),
                                 "peak_is": "this stage" if own_peak else "process so far"}

    def seconds(self) -> dict[str, float]:
        return {k: v["seconds"] for k, v in self.stages.items()}
