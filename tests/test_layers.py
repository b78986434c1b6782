"""The layer rules of docs/architecture.md are enforced by import-linter (`make lint`): here, that they pass on
the package as it is, and that the contracts really catch the imports they forbid."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LINT = Path(sys.executable).with_name("lint-imports")


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
