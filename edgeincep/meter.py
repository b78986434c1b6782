"""Wall time and peak memory of each pipeline stage, measured in the running process.

Linux keeps a per-process RSS high-water mark (VmHWM) that writing "5" to /proc/self/clear_refs
resets, so each stage's own peak can be read without a process per stage. Where that is not
possible (not Linux, or no permission) the peak is the process's peak so far, and says so.

Some stages work in child processes (ModelOpt, the TFLite converter and calibration workers)
while this one waits or works beside them; what the machine needs is their sum. A sampler thread
adds up the proportional set size (PSS) of this process and all its descendants every 100 ms
during a stage (PSS, not RSS: a helper that a library forks shares this process's pages, and
summing RSS counted them twice); the stage's peak is the larger of that sampled total and this
process's exact high-water mark.
"""
from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterator

SAMPLE_SECONDS = 0.1


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


def _mem_kb(pid: int) -> int:
    """A process's proportional set size: pages shared with others (a child forked from this process
    shares all of them until it execs) count once across the tree, not once per process."""
    try:
        with open(f"/proc/{pid}/smaps_rollup", encoding="ascii") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    try:
        with open(f"/proc/{pid}/statm", encoding="ascii") as f:
            return int(f.read().split()[1]) * (os.sysconf("SC_PAGE_SIZE") // 1024)
    except (OSError, ValueError, IndexError):
        return 0


def _descendants(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        try:
            tasks = os.listdir(f"/proc/{p}/task")
        except OSError:
            continue
        for t in tasks:
            try:
                with open(f"/proc/{p}/task/{t}/children", encoding="ascii") as f:
                    kids = [int(c) for c in f.read().split()]
            except OSError:
                continue
            out.extend(kids)
            todo.extend(kids)
    return out


class _TreeSampler:
    def __init__(self):
        self.peak_mb = 0.0
        self.children_mb = 0.0  # the most the descendants held at one sample
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="edgeincep-meter", daemon=True)

    def _run(self) -> None:
        me = os.getpid()
        while not self._stop.is_set():
            own = _mem_kb(me) / 1024
            kids = sum(_mem_kb(p) for p in _descendants(me)) / 1024
            self.peak_mb = max(self.peak_mb, own + kids)
            self.children_mb = max(self.children_mb, kids)
            self._stop.wait(SAMPLE_SECONDS)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


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
            with _TreeSampler() as tree:
                yield
        finally:
            own = status_mb("VmHWM")
            self.stages[name] = {"seconds": round(time.perf_counter() - t0, 2), "start_rss_mb": start_mb,
                                 "peak_rss_mb": max(own or 0.0, tree.peak_mb) if own is not None else None,
                                 "own_peak_rss_mb": own, "children_peak_rss_mb": round(tree.children_mb, 1),
                                 "peak_is": "this stage" if own_peak else "process so far"}

    def seconds(self) -> dict[str, float]:
        return {k: v["seconds"] for k, v in self.stages.items()}
