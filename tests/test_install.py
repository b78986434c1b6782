"""The pinned set installs together: every pin in constraints.txt is what is installed."""
from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import edgeincep

CONSTRAINTS = Path(__file__).resolve().parents[1] / "constraints.txt"


def _pins() -> dict[str, str]:
    pins = {}
    for line in CONSTRAINTS.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, _, version = line.partition("==")
            pins[name] = version
    return pins


def test_every_pinned_package_is_installed_at_its_pin():
    wrong = {}
    for name, version in _pins().items():
        try:
            got = metadata.version(name)
        except metadata.PackageNotFoundError:
            wrong[name] = "missing"
            continue
        if got.split("+")[0] != version:
            wrong[name] = got
    assert not wrong, f"installed versions differ from constraints.txt: {wrong}"


def test_torch_is_the_cpu_build_2_13_0():
    import torch

    assert torch.__version__.startswith("2.13.0")


def test_every_module_imports():
    for mod in pkgutil.walk_packages(edgeincep.__path__, "edgeincep."):
        if mod.name != "edgeincep.__main__":
            importlib.import_module(mod.name)


def test_python_dash_m_runs_the_cli():
    res = subprocess.run([sys.executable, "-m", "edgeincep", "--version"], capture_output=True, text=True, check=True)
    assert res.stdout.startswith("edgeincep, version")


SYSTEM_PACKAGES = Path(__file__).resolve().parents[1] / "ci" / "system-packages.sh"


def test_with_every_system_package_present_the_setup_does_and_says_nothing():
    import prerequisites

    listed = ["dataset-fashion-mnist", "openssh-server", "openssh-client", "qemu-user-static"]
    status = [subprocess.run(["dpkg-query", "-W", "-f=${Status}", p], capture_output=True, text=True).stdout
              for p in listed]
    absent = [p for p, st in zip(listed, status, strict=True) if st != "install ok installed"]
    if absent:  # as root the script would install them: a test must not
        prerequisites.missing(f"Debian packages {', '.join(absent)} are not installed")
    done = subprocess.run(["bash", str(SYSTEM_PACKAGES), "--tests"], capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")


def test_without_root_or_sudo_a_missing_package_stops_the_setup_with_the_command_to_run():
    """dpkg-query is replaced by one that finds nothing installed, and the script runs as nobody."""
    import os
    import tempfile

    import pytest

    if os.geteuid() != 0:
        pytest.skip("needs root to run the script as another user (nobody)")
    with tempfile.TemporaryDirectory() as tmp:  # not pytest's tmp_path, whose parents nobody cannot enter
        stub = Path(tmp)
        stub.chmod(0o755)
        (stub / "dpkg-query").write_text("#!/bin/sh\nexit 1\n")
        (stub / "dpkg-query").chmod(0o755)
        script = stub / SYSTEM_PACKAGES.name  # a copy: the checkout may lie where nobody cannot read
        script.write_text(SYSTEM_PACKAGES.read_text())
        done = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "bash",
                               str(script)], capture_output=True, text=True, timeout=60,
                              env={"PATH": f"{stub}:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": tmp})
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr == ("error: edgeincep needs dataset-fashion-mnist g++-aarch64-linux-gnu g++ (Debian); run: "
                           "sudo apt-get update && sudo apt-get install -y dataset-fashion-mnist g++-aarch64-linux-gnu g++\n")
