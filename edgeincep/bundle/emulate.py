"""A device bundle's own runner as arm64 code under qemu-user, as a Raspberry Pi 4 and a Pi 5: what the
board computes, measured against the host on the same images (device drift).

The userland is Debian's arm64 python3 with the Raspberry Pi bundle's pinned aarch64 wheels, built by
ci/arm64-sysroot.sh under `.cache/arm64` (EDGEINCEP_ARM64_CACHE overrides). Each board view carries a
Raspberry Pi /proc/cpuinfo and /sys cpu files (LiteRT's CPU detection reads them; the host's x86 ones
make it crash or run without XNNPACK) and a qemu CPU model: Cortex-A72 for the Pi 4, Cortex-A76 (with
dot-product instructions, so XNNPACK picks other int8 kernels) for the Pi 5.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeincep.device.common import output_codes
from edgeincep.device.kinds import emulated_kinds
from edgeincep.fsutil import link_by_index
from edgeincep.paths import PROJECT_ROOT

# Bundles whose runner runs on an arm64 Linux CPU (the Coral bundle's CPU model when no Edge TPU is attached).
EMULATED_DEVICES = emulated_kinds()


@dataclass(frozen=True)
class Board:
    name: str
    title: str
    sysroot: str  # folder under the cache
    cpu: str      # QEMU_CPU


BOARDS = {"pi4": Board("pi4", "Raspberry Pi 4 (Cortex-A72)", "sysroot", "cortex-a72"),
          "pi5": Board("pi5", "Raspberry Pi 5 (Cortex-A76)", "sysroot-pi5", "cortex-a76")}


def cache_dir() -> Path:
    return Path(os.environ.get("EDGEINCEP_ARM64_CACHE", PROJECT_ROOT / ".cache" / "arm64"))


def unavailable_reason() -> str | None:
    if shutil.which("qemu-aarch64-static") is None:
        return "qemu-aarch64-static is not installed (Debian's qemu-user-static)"
    cache = cache_dir()
    if not all((cache / b.sysroot / ".python").is_file() for b in BOARDS.values()):
        return f"no arm64 sysroot under {cache} (bash ci/arm64-sysroot.sh)"
    return None


def run_emulated(board: Board, args: list[str], cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    """`python3 -I ARGS` in the board's userland; only what the device would have in the environment (no
    host PYTHONPATH or virtualenv leaking x86 packages into the guest)."""
    sysroot = cache_dir() / board.sysroot
    python = sysroot / "usr" / "bin" / (sysroot / ".python").read_text().strip()
    env = {"PATH": "/usr/bin:/bin", "QEMU_CPU": board.cpu, "PYTHONNOUSERSITE": "1", "LC_ALL": "C.UTF-8"}
    return subprocess.run([shutil.which("qemu-aarch64-static") or "qemu-aarch64-static", "-L", str(sysroot),
                           str(python), "-I", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)


def board_python(board: Board, folder: Path, *, bare: bool = False, offline: bool = False) -> Path:
    """An executable `python3` that is the board's: the emulated Debian python, under qemu, for whoever runs it.

    Usable where a device's interpreter is asked for (`edgeincep deploy --remote-python`), with the subprocesses
    a device runs working too: qemu's -0 gives the guest the wrapper's own path as argv[0], so sys.executable,
    and the interpreter of a virtual environment made from it, is this wrapper again (qemu-user alone cannot
    exec an arm64 program from an emulated one). `bare`: a fresh userland, none of the bundle's wheels
    installed (a view of the sysroot without /usr/local). `offline`: no network (a new network namespace with
    only a downed loopback; needs CAP_SYS_ADMIN).
    """
    sysroot = cache_dir() / board.sysroot
    version = (sysroot / ".python").read_text().strip()
    folder = Path(folder)
    root = sysroot
    if bare:
        root = folder / "sysroot"
        (root / "usr").mkdir(parents=True, exist_ok=True)
        for entry in sysroot.iterdir():
            if entry.name != "usr" and not (root / entry.name).exists():
                (root / entry.name).symlink_to(entry.resolve())
        for entry in (sysroot / "usr").iterdir():
            if entry.name != "local" and not (root / "usr" / entry.name).exists():
                (root / "usr" / entry.name).symlink_to(entry.resolve())
        # Empty, not absent: qemu falls back to the host's path for what the view lacks.
        (root / "usr" / "local" / "lib" / version / "dist-packages").mkdir(parents=True, exist_ok=True)
    qemu = shutil.which("qemu-aarch64-static") or "qemu-aarch64-static"
    wrapper = folder / "bin" / "python3"
    wrapper.parent.mkdir(parents=True, exist_ok=True)
    wrapper.write_text(f"""#!/bin/sh
# {board.title}: Debian's arm64 {version} under qemu-user (edgeincep.bundle.emulate.board_python)
exec {"unshare --net " if offline else ""}env QEMU_CPU={board.cpu} QEMU_LD_PREFIX='{root}' {qemu} -0 "$0" \
  '{root}/usr/bin/{version}' "$@"
""")
    wrapper.chmod(0o755)
    return wrapper


def classify_on_board(bundle: Path, images: list[Path], board: Board, timeout: float = 3600,
                      threads: int = 0) -> np.ndarray:
    """The logits the bundle's run.py gives for `images` on the emulated board (one row per image);
    `threads`: run.py's --threads (0: LiteRT's own choice, as on a board)."""
    with tempfile.TemporaryDirectory(prefix="edgeincep-arm64-") as tmp:
        listing = link_by_index(images, Path(tmp) / "images")
        out = Path(tmp) / "out.json"
        done = run_emulated(board, [str(bundle / "run.py"), "--json", str(out), *(["--threads", str(threads)]
                                                                                   if threads else []), str(listing)],
                            Path(tmp), timeout)
        if done.returncode != 0 or not out.is_file():
            tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
            raise RuntimeError(f"{board.name}: run.py exited {done.returncode}: {tail[0]}")
        results = json.loads(out.read_text())["results"]
    if len(results) != len(images) or any("logits" not in r for r in results):
        raise RuntimeError(f"{board.name}: run.py returned {len(results)} results for {len(images)} images")
    return np.asarray([r["logits"] for r in results], np.float32)


def device_drift(bundle: Path, images: list[Path], host: np.ndarray, fp32: np.ndarray, labels: np.ndarray | None,
                 boards: list[Board] | None = None, workers: int = 1) -> dict:
    """Per board: agreement of the board's top-1 with the host's INT8 and with FP32, how many output codes
    differ from the host's and by how many quantization steps, the board's top-1 accuracy, and the images
    where board and host disagree.

    `workers` > 1 emulates that many boards at once, each run.py on one thread: qemu-user runs a guest's
    threads on one host core at a time in practice, so two boards on two cores take the time of one.
    Integer kernels give the same codes whatever the thread count (a chunk's result does not depend on
    which thread computes it), so what is measured does not change."""
    expected = json.loads((bundle / "expected.json").read_text())
    # The runner backend a board's CPU runs (a Coral bundle's litert-cpu, not its Edge TPU): the one whose
    # tolerance compares integer output codes.
    cpu, tol = next(((k, t) for k, t in expected["tolerance"].items() if isinstance(t, dict)), (None, None))
    record = {"images": len(images), "runner": f"run.py ({cpu or 'top-1 only'})", "emulator": "qemu-aarch64-static",
              "tolerance": tol, "boards": {}}
    boards = boards or list(BOARDS.values())

    def emulate(board: Board) -> tuple[np.ndarray, float]:
        t0 = time.perf_counter()
        got = classify_on_board(bundle, images, board, threads=1 if workers > 1 else 0)
        return got, time.perf_counter() - t0

    with ThreadPoolExecutor(max(1, min(workers, len(boards)))) as pool:
        runs = list(pool.map(emulate, boards))
    for board, (got, seconds) in zip(boards, runs, strict=True):
        entry = {"title": board.title, "qemu_cpu": board.cpu, "seconds": round(seconds, 1),
                 "top1_agreement_host_int8": float(np.mean(got.argmax(1) == host.argmax(1))),
                 "top1_agreement_fp32": float(np.mean(got.argmax(1) == fp32.argmax(1))),
                 "host_top1_agreement_fp32": float(np.mean(host.argmax(1) == fp32.argmax(1))),
                 "identical_logits": float(np.mean(np.all(got == host, axis=1)))}
        if isinstance(tol, dict):
            steps = np.abs(output_codes(got, tol["scale"], tol["zero_point"])
                           - output_codes(host, tol["scale"], tol["zero_point"])).max(axis=1)
            entry["max_output_steps"] = int(steps.max(initial=0))
            entry["output_steps_histogram"] = {str(int(k)): int(v) for k, v in zip(*np.unique(steps, return_counts=True),
                                                                                   strict=True)}
        if labels is not None:
            entry["top1"] = float(np.mean(got.argmax(1) == labels))
            entry["host_top1"] = float(np.mean(host.argmax(1) == labels))
        flips = np.flatnonzero(got.argmax(1) != host.argmax(1))
        entry["disagreements"] = [{"image": str(images[i]), "host": int(host[i].argmax()), "device": int(got[i].argmax())}
                                  for i in flips[:20]]
        record["boards"][board.name] = entry
    return record
