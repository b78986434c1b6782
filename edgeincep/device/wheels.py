"""The wheels a device installs, downloaded on the host for the device's platform: what a bundle carries so that
`edgeincep deploy --setup` needs no network on the device.

pip resolves the bundle's requirements.txt for the device (its machine, CPython X.Y and every manylinux tag up to
its glibc, as the device's own pip would) and downloads the whole dependency closure, plus the pip wheel that
installs them there (pip runs from its own wheel file, so the device needs no pip). One download per
(requirements, platform, Python) is kept under the user cache and reused; a wheel set appears whole or not at all.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from edgeincep.core.bundle import DevicePlatform
from edgeincep.core.errors import UserError
from edgeincep.device import pins

PYTHON_VERSION = re.compile(r"^3\.(\d{1,2})$")
RECORD = "wheels.json"


def cache_root() -> Path:
    base = os.environ.get("EDGEINCEP_CACHE") or os.path.join(os.environ.get("XDG_CACHE_HOME") or
                                                              os.path.expanduser("~/.cache"), "edgeincep")
    return Path(base)


def manylinux_platforms(machine: str, glibc: str) -> list[str]:
    """Every manylinux tag a pip on glibc `glibc` accepts. An explicit --platform matches only the tags named
    (ai-edge-litert's aarch64 wheels carry manylinux_2_27 alone: name too few and pip silently takes an older
    release), so all of them are named."""
    minor = int(glibc.split(".")[1])
    return ["manylinux2014_" + machine, *(f"manylinux_2_{m}_{machine}" for m in range(17, minor + 1))]


def pip_download(requirements: list[str], dest: Path, *, machine: str, glibc: str, python: str,
                 deps: bool = True) -> list[Path]:
    """`pip download` of binary wheels for the device into `dest`; a failure is one line naming what pip lacked."""
    tag = "cp" + python.replace(".", "")
    cmd = [sys.executable, "-m", "pip", "download", "-q", "--disable-pip-version-check", "--only-binary=:all:",
           *(a for p in manylinux_platforms(machine, glibc) for a in ("--platform", p)), "--python-version", python,
           "--implementation", "cp", "--abi", tag, "-d", str(dest), *([] if deps else ["--no-deps"]), *requirements]
    done = subprocess.run(cmd, capture_output=True, text=True)
    found = sorted(dest.glob("*.whl"))
    if done.returncode != 0 or not found:
        errors = [ln.removeprefix("ERROR: ") for ln in done.stderr.splitlines() if ln.startswith("ERROR:")]
        why = (errors or done.stderr.strip().splitlines()[-1:] or ["pip found no wheel"])[0]
        raise UserError(f"cannot download the device's wheels ({machine}, CPython {python}) from the package index: "
                        f"{why}")
    return found


def needed_glibc(wheel: str) -> tuple[int, int]:
    """The oldest glibc a wheel's platform tags admit: (2, 17) for manylinux2014, (2, N) for manylinux_2_N, (0, 0)
    for a pure-Python or abi3-any wheel."""
    tags = wheel.removesuffix(".whl").split("-")[-1].split(".")
    found = [(2, 17) if t.startswith("manylinux2014") else (2, int(t.split("_")[2]))
             for t in tags if t.startswith(("manylinux_2_", "manylinux2014"))]
    return min(found, default=(0, 0))


@dataclass(frozen=True)
class DeviceWheels:
    """A downloaded wheel set: the closure of a bundle's requirements for one device platform and Python."""
    folder: Path
    machine: str
    python: str
    glibc: str
    files: tuple[Path, ...]
    installer: Path  # the pip wheel that installs the others on the device
    provided: tuple[str, ...] = ()
    system_site_packages: bool = False

    def manifest(self, prefix: str) -> dict:
        """The bundle manifest's `wheels` entry (each file's sha256 is in the manifest's file list)."""
        glibc = max(needed_glibc(p.name) for p in self.files)
        return {"dir": prefix, "machine": self.machine, "python": self.python,
                "glibc": f"{glibc[0]}.{glibc[1]}" if glibc > (0, 0) else None, "resolved_for_glibc": self.glibc,
                "installer": f"{prefix}/{self.installer.name}", "files": [f"{prefix}/{p.name}" for p in self.files],
                "bytes": sum(p.stat().st_size for p in self.files), "provided_by_device": list(self.provided),
                "system_site_packages": self.system_site_packages}


def requirement_lines(requirements_txt: str) -> list[str]:
    return [ln.split("#", 1)[0].strip() for ln in requirements_txt.splitlines() if ln.split("#", 1)[0].strip()]


def device_wheels(requirements_txt: str, platform: DevicePlatform, python: str | None = None) -> DeviceWheels:
    """The wheels `requirements_txt` needs on `platform` with CPython `python` (default: the platform's usual)."""
    python = python or platform.python
    m = PYTHON_VERSION.match(python)
    if not m or not 8 <= int(m[1]) <= 20:
        raise UserError(f"device Python {python!r}: expected a CPython version like 3.11 (3.8 or newer)")
    reqs = requirement_lines(requirements_txt)
    key = hashlib.sha256(json.dumps([reqs, pins.PIP, platform.machine, platform.glibc, python]).encode()).hexdigest()
    final = cache_root() / "wheels" / f"{platform.machine}-cp{python.replace('.', '')}-{key[:16]}"
    record = final / RECORD
    if not record.is_file():
        final.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=f".{final.name}-", dir=final.parent) as tmp:
            work = Path(tmp) / "wheels"
            work.mkdir()
            pip_download(reqs, work, machine=platform.machine, glibc=platform.glibc, python=python)
            # pip itself: its own wheel runs on the device as `python pip.whl/pip install ...`
            pip_download([pins.PIP], work, machine=platform.machine, glibc=platform.glibc, python=python, deps=False)
            (work / RECORD).write_text(json.dumps({"requirements": reqs, "pip": pins.PIP, "files": {
                p.name: p.stat().st_size for p in sorted(work.glob("*.whl"))}}, indent=1))
            shutil.rmtree(final, ignore_errors=True)
            os.replace(work, final)
    listed = json.loads(record.read_text())["files"]
    files = [final / name for name in sorted(listed)]
    if any(not p.is_file() or p.stat().st_size != listed[p.name] for p in files):
        shutil.rmtree(final, ignore_errors=True)  # damaged since: download again
        return device_wheels(requirements_txt, platform, python)
    pip_name = pins.PIP.split("==")[0]
    installer = next(p for p in files if p.name.split("-")[0].lower() == pip_name)
    return DeviceWheels(final, platform.machine, python, platform.glibc, tuple(files), installer, platform.provided,
                        platform.system_site_packages)
