"""Load time and peak memory of one artifact, measured in a fresh process of its own.

Peak RSS is a high-water mark of a whole process, so artifacts benchmarked together in one
process cannot be told apart: each is loaded here in a new interpreter that imports its
runtime, loads the artifact, runs a few batches and reports. `runtime_mb` is the process after
importing the runtime and before the load; `peak_mb - runtime_mb` is what the model costs.
"""
from __future__ import annotations

import json
import resource
import subprocess
import sys
import time

import numpy as np

from edgeincep.core.artifact import Artifact
from edgeincep.core.errors import UserError
from edgeincep.meter import status_mb


def _maxrss_mb() -> float:
    """This process image's peak RSS. Not getrusage's ru_maxrss: Linux carries that across
    fork + exec, so a child would report its (torch-laden) parent's size."""
    hwm = status_mb("VmHWM")
    if hwm is not None:
        return hwm
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb / 1024 if sys.platform != "darwin" else kb / 2**20


def measure(artifact: Artifact, *, threads: int, shape: tuple[int, ...], runs: int = 3,
            timeout: float = 900) -> dict:
    """Run the probe on `artifact` in a child interpreter; returns load_s, runtime_mb, peak_mb."""
    job = {"artifact": artifact.to_dict(), "threads": threads, "shape": list(shape), "runs": runs}
    try:
        proc = subprocess.run([sys.executable, "-m", "edgeincep.bench.probe"], input=json.dumps(job),
                              capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise UserError(f"loading and running it took over {timeout:.0f} s in the memory probe", artifact.path) from None
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no message"])[-1]
        raise UserError(f"the memory probe failed to run it: {last}", artifact.path)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _main() -> None:
    job = json.loads(sys.stdin.read())
    art = Artifact.from_dict(job["artifact"])
    from edgeincep.registry import get_backend

    target = get_backend(art.target)
    target.import_runtime()
    runtime_mb = _maxrss_mb()
    t0 = time.perf_counter()
    pred = target.load(art, job["threads"])
    load_s = time.perf_counter() - t0
    x = np.random.default_rng(0).standard_normal(job["shape"], dtype=np.float32)
    t0 = time.perf_counter()
    pred.predict(x)
    first_s = time.perf_counter() - t0
    for _ in range(job["runs"]):
        pred.predict(x)
    # A device runs the artifact without torch; its import alone would dwarf a small model's memory.
    print(json.dumps({"load_s": load_s, "first_run_s": first_s, "runtime_mb": runtime_mb, "peak_mb": _maxrss_mb(),
                      "torch_imported": "torch" in sys.modules}))


if __name__ == "__main__":
    _main()
