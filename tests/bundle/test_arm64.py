"""The Raspberry Pi bundle's run.py inside an emulated arm64 Debian userland gives exactly the host's logits.

ci/arm64-sysroot.sh builds the userland (Debian's arm64 python3 and the bundle's pinned aarch64 wheels,
plus Raspberry Pi /proc/cpuinfo and /sys cpu files); qemu-aarch64-static runs it as a Pi 4 (Cortex-A72)
and a Pi 5 (Cortex-A76, whose dot-product instructions select other XNNPACK int8 kernels). The
reference model keeps each emulated run to seconds.

Bit-identical is the requirement, not a tolerance: the device's LiteRT and the host's are the same release
and XNNPACK's int8 requantization is specified to round identically on every architecture, so any
difference is a real divergence (a preprocessing change, a different wheel, a kernel bug).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from edgeincep.bundle.devices import write
from edgeincep.data.folders import ImageSet, iter_batches
from edgeincep.export.onnx import preprocess_from_metadata
from edgeincep.paths import PROJECT_ROOT
from edgeincep.recipes import Recipe
from edgeincep.targets.base import get_target

CACHE = Path(os.environ.get("EDGEINCEP_ARM64_CACHE", PROJECT_ROOT / ".cache" / "arm64"))
BOARDS = {"pi4": ("sysroot", "cortex-a72"), "pi5": ("sysroot-pi5", "cortex-a76")}


def _missing() -> str | None:
    if shutil.which("qemu-aarch64-static") is None:
        return "qemu-aarch64-static is not installed (apt-get install qemu-user-static)"
    if not (CACHE / "sysroot" / ".stamp").is_file() or not (CACHE / "sysroot-pi5" / ".python").is_file():
        return f"no arm64 sysroot under {CACHE} (bash ci/arm64-sysroot.sh)"
    return get_target("tflite").unavailable_reason()


@pytest.fixture(scope="session")  # session: decided before the session-scoped model builds, so a skip is instant
def emulator() -> str:
    reason = _missing()
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the arm64 proof: {reason}")  # a skip in CI would hide a failure
        pytest.skip(reason)
    return shutil.which("qemu-aarch64-static")


@pytest.fixture(scope="module")
def rpi_bundle(tflite_int8, tmp_path_factory):
    return write("rpi", tflite_int8, {}, Recipe(), tmp_path_factory.mktemp("rpi")).folder


def _emulated(emulator: str, board: str, args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    root, cpu = BOARDS[board]
    sysroot = CACHE / root
    python = sysroot / "usr" / "bin" / (sysroot / ".python").read_text().strip()
    # Only what the device would have: no host PYTHONPATH or virtualenv leaking x86 packages into the guest.
    env = {"PATH": "/usr/bin:/bin", "QEMU_CPU": cpu, "PYTHONNOUSERSITE": "1", "LC_ALL": "C.UTF-8"}
    return subprocess.run([emulator, "-L", str(sysroot), str(python), "-I", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("board", sorted(BOARDS))
def test_rpi_runner_under_arm64_emulation_equals_the_host(emulator, board, rpi_bundle, tflite_int8, mixed_images,
                                                          tmp_path):
    out = tmp_path / "arm64.json"
    done = _emulated(emulator, board, [str(rpi_bundle / "run.py"), "--json", str(out), *map(str, mixed_images)],
                     tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    # Without the sysroot's cpuinfo files LiteRT crashes or silently runs without XNNPACK: require it ran.
    assert "Created TensorFlow Lite XNNPACK delegate for CPU" in done.stderr
    got = json.loads(out.read_text())
    assert got["versions"]["machine"] == "aarch64" and got["backend"] == "litert-cpu"
    assert got["versions"]["ai-edge-litert"] == "2.3.0"
    arm64 = np.asarray([r["logits"] for r in got["results"]], np.float32)

    pred = get_target("tflite").load(tflite_int8, 0)
    pre = preprocess_from_metadata(get_target("tflite").metadata(tflite_int8))
    images = ImageSet(mixed_images[0].parent, list(mixed_images), None, [])
    host = np.concatenate([pred.predict(x) for x, _, _ in iter_batches(images, pre, 8)])
    np.testing.assert_array_equal(arm64, host)


def test_rpi_check_passes_under_arm64_emulation(emulator, rpi_bundle):
    done = _emulated(emulator, "pi4", ["run.py", "--check"], rpi_bundle)  # the command deploy runs, minus --json
    assert done.returncode == 0, done.stdout + done.stderr
    assert "samples match the host" in done.stdout and "bit-identical" in done.stdout
