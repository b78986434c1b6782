"""Helpers for the catalogue rows that need a real `python -m edgeincep` process: signals, mounts, full disks.

Imported by the test modules beside it (a plain module, so pytest does not collect it).
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from edgeincep.paths import DEFAULT_CALIBRATION

ROOT = Path(__file__).resolve().parents[2]
TINY_EXPORT = ["export", "--model", "inception_resnet_v1_cls", "--width", "0.125", "--num-classes", "10",
               "--input-size", "75"]
# A run that finishes in seconds: the committed 0.125-width reference model, 10 calibration images, a
# budget any INT8 build passes (these rows test plumbing, not accuracy).
FAST_RECIPE = ("calibration: {count: 10}\nescalation: {rungs: [ptq]}\n"
               "openvino: {accuracy_control: false, fast_bias_correction: true}\n"
               "budget: {max_top1_drop: 100.0, min_agreement: 0.0}\n")


def _default_sigint() -> None:
    # A script that starts pytest in the background without job control makes it ignore SIGINT, and Python
    # keeps an ignored SIGINT ignored: the CLI must get Ctrl-C as it would from a terminal.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class Proc:
    """`python -m edgeincep ARGS` in the background, output to files (a full pipe would stall it)."""

    def __init__(self, args: list, work: Path, name: str, env: dict | None = None, prefix: list[str] | None = None):
        self.out_path, self.err_path = work / f"{name}.stdout", work / f"{name}.stderr"
        self.tmpdir = work / "tmp"
        self.tmpdir.mkdir(exist_ok=True)
        env = {**os.environ, "TMPDIR": str(self.tmpdir), "PYTHONUNBUFFERED": "1", **(env or {})}
        with open(self.out_path, "w") as out, open(self.err_path, "w") as err:
            self.p = subprocess.Popen([*(prefix or []), sys.executable, "-m", "edgeincep", *map(str, args)],
                                      stdout=out, stderr=err, cwd=ROOT, env=env, preexec_fn=_default_sigint)

    @property
    def stdout(self) -> str:
        return self.out_path.read_text(errors="replace")

    @property
    def stderr(self) -> str:
        return self.err_path.read_text(errors="replace")

    def wait_for(self, what: str, cond: Callable[[], bool], timeout: float = 180) -> None:
        """Poll every 10 ms; fail (never pass vacuously) if the process ends or time runs out first."""
        end = time.monotonic() + timeout
        while not cond():
            if self.p.poll() is not None:
                pytest.fail(f"exited {self.p.returncode} before {what}:\n{self.stderr[-2000:]}")
            if time.monotonic() > end:
                self.p.kill()
                pytest.fail(f"timed out waiting for {what}:\n{self.stderr[-2000:]}")
            time.sleep(0.01)

    def wait(self, timeout: float = 300) -> int:
        try:
            return self.p.wait(timeout)
        except subprocess.TimeoutExpired:
            self.p.kill()
            raise


def run_cli(args: list, work: Path, name: str, timeout: float = 300, prefix: list[str] | None = None) -> Proc:
    proc = Proc(args, work, name, prefix=prefix)
    proc.wait(timeout)
    return proc


def assert_one_error_line(proc: Proc, code: int, pattern: str) -> None:
    import re

    text = proc.stdout + proc.stderr
    assert "Traceback" not in text, text[-3000:]
    assert proc.p.returncode == code, f"exit {proc.p.returncode}, expected {code}:\n{proc.stderr[-2000:]}"
    errors = [line for line in proc.stderr.splitlines() if line.startswith(("error:", "interrupted"))]
    assert len(errors) == 1 and re.search(pattern, errors[0]), proc.stderr[-2000:]


def check_artifacts(out: Path) -> list[str]:
    """Every file that looks like an artifact is whole: ONNX passes the checker, IRs load, JSON parses.

    Returns the names of hidden temp files found (never counted as artifacts)."""
    import onnx

    for p in out.iterdir():
        if p.name.startswith("."):
            continue
        if p.suffix == ".onnx":
            onnx.checker.check_model(str(p), full_check=True)
        elif p.suffix == ".json":
            json.loads(p.read_text())
        elif p.suffix == ".xml":
            import openvino as ov

            assert p.with_suffix(".bin").is_file(), f"{p} has no .bin"
            ov.Core().read_model(str(p))
        elif p.suffix == ".bin":
            assert p.with_suffix(".xml").is_file(), f"orphan {p}"
    return sorted(p.name for p in out.iterdir() if p.name.startswith(".") and p.name != ".edgeincep.lock")


def make_split_images(root: Path) -> tuple[Path, Path]:
    """Disjoint calibration (6 per class) and validation (2 per class) folders from the shipped set."""
    for cls in sorted(p for p in DEFAULT_CALIBRATION.iterdir() if p.is_dir()):
        files = sorted(cls.glob("*.png"))
        for sub, chosen in (("calib", files[:6]), ("val", files[-2:])):
            (root / sub / cls.name).mkdir(parents=True)
            for f in chosen:
                shutil.copy(f, root / sub / cls.name / f.name)
    (root / "recipe.yaml").write_text(FAST_RECIPE)
    return root / "calib", root / "val"


def run_args(target: str, split_images, out: Path) -> list:
    calib, val = split_images
    return ["run", "--model", "inception_resnet_v1", "--target", target, "--val", val, "--calib", calib,
            "--recipe", calib.parent / "recipe.yaml", "--out", out]


def mount_prefix(dir_: Path, options: str, snapshot: Path) -> list[str]:
    """Run the CLI in a private mount namespace with a tmpfs (`options`) on `dir_`, copying what it left
    there to `snapshot` afterwards (the mount, private to the namespace, dies with the process).

    `unshare -rm` needs no root where user namespaces are allowed. Skipped, with the reason, where the
    kernel refuses both."""
    if shutil.which("unshare") is None:
        pytest.skip("needs util-linux unshare to mount a tmpfs for this row")
    dir_.mkdir(parents=True, exist_ok=True)
    snapshot.mkdir(parents=True, exist_ok=True)
    probe = subprocess.run(["unshare", "-rm", "sh", "-c", f"mount -t tmpfs -o {options} tmpfs {dir_}"],
                           capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs in a private namespace here: {probe.stderr.strip()}")
    script = f'mount -t tmpfs -o {options} tmpfs {dir_} || exit 99; "$@"; rc=$?; cp -a {dir_}/. {snapshot}/; exit $rc'
    return ["unshare", "-rm", "sh", "-c", script, "sh"]
