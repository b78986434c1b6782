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
