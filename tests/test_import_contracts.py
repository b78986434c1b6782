"""The layer rules of docs/architecture.md are enforced by import-linter (`make lint`): here, that they pass on
the package as it is, and that the contracts really catch the imports they forbid."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from edgeincep.registry import BACKENDS_DIR

ROOT = Path(__file__).resolve().parent.parent
LINT = Path(sys.executable).with_name("lint-imports")


BUILT_IN = sorted(p.name for p in BACKENDS_DIR.iterdir() if (p / "backend.py").is_file())


def _contracts() -> dict[str, dict]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    return {c["name"]: c for c in config["contracts"]}


def _top_level() -> set[str]:
    return {f"edgeincep.{p.stem}" for p in (ROOT / "edgeincep").iterdir()
            if (p.suffix == ".py" or (p / "__init__.py").is_file()) and p.stem not in ("__init__", "__main__")}


def _lint(root: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run([str(LINT), "--no-cache"], cwd=root, env=env, capture_output=True, text=True,
                          timeout=300, check=False)


@pytest.fixture()
def copy(tmp_path) -> Path:
    shutil.copytree(ROOT / "edgeincep", tmp_path / "edgeincep", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    return tmp_path


def test_the_package_keeps_every_contract():
    done = _lint(ROOT)
    assert done.returncode == 0, done.stdout[-3000:]
    assert "0 broken" in done.stdout


@pytest.mark.parametrize(("module", "line", "contract"), [
    ("backends/tflite/backend.py", "import edgeincep.backends.openvino.backend", "independent of one another"),
    ("backends/onnxruntime/backend.py", "from edgeincep.pipeline import run", "Layers"),
    ("bundle/samples.py", "from edgeincep.registry import get_backend", "never looks a backend up"),
    ("core/artifact.py", "import edgeincep.fsutil", "Core is plain types"),
    ("report/summary.py", "from edgeincep.litert import graph", "reached through the registry only"),
])
def test_a_forbidden_import_breaks_its_contract(copy, module, line, contract):
    path = copy / "edgeincep" / module
    text = path.read_text()
    marker = "from __future__ import annotations\n"
    path.write_text(text.replace(marker, f"{marker}\n{line}  # noqa\n", 1))
    done = _lint(copy)
    assert done.returncode != 0
    broken = [row for row in done.stdout.splitlines() if row.rstrip().endswith("BROKEN")]
    assert any(contract in row for row in broken), done.stdout[-3000:]


def test_the_contracts_name_every_backend_folder_the_registry_finds_and_every_module():
    """The lists in pyproject.toml are checked against the package, so a new backend folder or module cannot be
    left out of them (executorch once was, and `make lint` passed)."""
    contracts = _contracts()
    folders = {f"edgeincep.backends.{name}" for name in BUILT_IN}
    assert set(contracts["Backends are independent of one another"]["modules"]) == folders
    assert folders <= set(contracts["Backends are reached through the registry only"]["forbidden_modules"])
    core = contracts["Core is plain types: it imports nothing else of the project"]
    assert set(core["forbidden_modules"]) == _top_level() - {"edgeincep.core"}
    layered = {m.strip() for layer in contracts["Layers: each imports only from the layers below it"]["layers"]
               for m in layer.replace(":", "|").split("|")}
    assert layered == _top_level()


@pytest.mark.parametrize("backend", BUILT_IN)
def test_the_pipeline_importing_any_backend_folder_breaks_the_registry_contract(copy, backend):
    path = copy / "edgeincep" / "pipeline" / "run.py"
    marker = "from __future__ import annotations\n"
    path.write_text(path.read_text().replace(marker, f"{marker}\nimport edgeincep.backends.{backend}.backend  # noqa\n", 1))
    done = _lint(copy)
    broken = [row for row in done.stdout.splitlines() if row.rstrip().endswith("BROKEN")]
    assert done.returncode != 0 and any("reached through the registry only" in row for row in broken), done.stdout[-2000:]
