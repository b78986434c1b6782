"""A backend is one folder: a package outside edgeincep registers one through the `edgeincep.backends` entry
point, and `edgeincep run --target` builds, validates, gates and reports it like a built-in one.

The test backend is a real one (ONNX Runtime dynamic quantization of the classifier's weights to INT8, run on
ONNX Runtime), written into a temporary folder with the package metadata pip would install beside it.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from edgeincep.registry import list_backends

BACKEND = '''
"""A backend from another package: INT8 classifier weights by ONNX Runtime's dynamic quantization."""
from pathlib import Path

from pydantic import Field

from edgeincep.backends.base import Backend
from edgeincep.cache import cached_artifact, files_digest, stage_key
from edgeincep.core.artifact import Artifact
from edgeincep.core.settings import Strict
from edgeincep.validate.ort import OrtPredictor


class DynamicSettings(Strict):
    per_channel: bool = Field(False, description="per-channel weight scales")


class DynamicInt8(Backend):
    name = "ortdynamic"
    description = "ONNX Runtime dynamic quantization (weights of MatMul/Gemm to INT8)"
    settings = DynamicSettings

    def build(self, fp32, calib, recipe, out_dir):
        from onnxruntime.quantization import quantize_dynamic

        s = recipe.ortdynamic
        out = Path(out_dir) / Path(fp32).name.replace(".fp32.onnx", ".ortdynamic.int8.onnx")
        key = stage_key(stage="ortdynamic", fp32=files_digest([fp32]), cfg=s.model_dump())

        def build():
            quantize_dynamic(str(fp32), str(out), per_channel=s.per_channel, op_types_to_quantize=["MatMul", "Gemm"])
            return Artifact(out, self.name, "int8", "onnx-dynamic", meta={"per_channel": s.per_channel})

        return cached_artifact(out, key, build)

    def load(self, artifact, threads=0):
        return OrtPredictor(artifact.path, threads, artifact.name, "int8 (dynamic, ONNX Runtime CPU)")

    def import_runtime(self):
        import onnxruntime  # noqa: F401
'''


@pytest.fixture(scope="module")
def plugin_path(tmp_path_factory) -> Path:
    """A folder on PYTHONPATH holding the package and its installed metadata (what `pip install` leaves)."""
    root = tmp_path_factory.mktemp("site")
    (root / "ortdynamic_backend.py").write_text(BACKEND)
    dist = root / "ortdynamic_backend-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: ortdynamic-backend\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[edgeincep.backends]\nortdynamic = ortdynamic_backend:DynamicInt8\n")
    return root


def _edgeincep(plugin_path: Path, *args) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(plugin_path), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "edgeincep", *map(str, args)], env=env, capture_output=True,
                          text=True, timeout=600, check=False)


def test_an_entry_point_backend_runs_the_whole_pipeline_with_its_own_recipe_section(plugin_path, fmnist_val, tmp_path):
    recipe = tmp_path / "dyn.yaml"
    recipe.write_text(textwrap.dedent("""\
        ortdynamic:
          per_channel: true
        budget: {max_top1_drop: 2.0, min_agreement: 0.95}
        validation: {limit: 200}
        """))
    out = tmp_path / "out"
    done = _edgeincep(plugin_path, "run", "--model", "inception_resnet_v1", "--target", "ortdynamic",
                      "--val", fmnist_val, "--out", out, "--recipe", recipe, "--threads", "2")
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    (entry,) = report["validation"]["artifacts"]
    assert entry["target"] == "ortdynamic" and entry["precision"] == "int8" and entry["meta"]["per_channel"] is True
    assert entry["gate"]["violations"] == [] and entry["drift"]["top1_agreement"] >= 0.95
    assert report["recipes"]["ortdynamic"]["ortdynamic"] == {"per_channel": True}
    assert "bundle" not in entry  # the contract's default: no device bundle


def test_an_entry_point_backends_recipe_section_is_validated_like_a_built_in_one(plugin_path, fmnist_val, tmp_path):
    recipe = tmp_path / "bad.yaml"
    recipe.write_text("ortdynamic:\n  per_chanel: true\n")
    done = _edgeincep(plugin_path, "run", "--model", "inception_resnet_v1", "--target", "ortdynamic",
                      "--val", fmnist_val, "--out", tmp_path / "out", "--recipe", recipe)
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert f"error: {recipe}: recipe key 'ortdynamic.per_chanel': Extra inputs are not permitted" in done.stderr


def test_without_the_package_the_target_is_unknown(fmnist_val, tmp_path):
    done = _edgeincep(tmp_path, "run", "--model", "inception_resnet_v1", "--target", "ortdynamic",
                      "--val", fmnist_val, "--out", tmp_path / "out")
    assert done.returncode != 0
    known = done.stderr.split("unknown target 'ortdynamic'; known targets: ")[1].split("\n")[0].split(", ")
    assert "onnxruntime" in known and "ortdynamic" not in known


def test_a_broken_backend_package_is_one_line_naming_it(fmnist_val, tmp_path):
    dist = tmp_path / "broken_backend-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-backend\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[edgeincep.backends]\nbroken = no_such_module:Backend\n")
    done = _edgeincep(tmp_path, "run", "--model", "inception_resnet_v1", "--target", "broken",
                      "--val", fmnist_val, "--out", tmp_path / "out")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert ("error: backend 'broken' (no_such_module:Backend) cannot be loaded: ModuleNotFoundError: "
            "No module named 'no_such_module'") in done.stderr


def test_a_folder_under_backends_is_a_backend_by_its_name_with_nothing_else_to_register(tmp_path):
    """The built-in way: the same module as edgeincep/backends/<name>/backend.py in a copy of the package."""
    root = Path(__file__).resolve().parents[2]
    shutil.copytree(root / "edgeincep", tmp_path / "edgeincep", ignore=shutil.ignore_patterns("__pycache__"))
    folder = tmp_path / "edgeincep" / "backends" / "ortdynamic"
    folder.mkdir()
    (folder / "__init__.py").write_text('"""ONNX Runtime dynamic quantization."""\n')
    (folder / "backend.py").write_text(BACKEND)
    probe = ("from edgeincep.recipes import Recipe; from edgeincep.registry import get_backend, list_backends; "
             "print(list_backends(), get_backend('ortdynamic').description, Recipe().ortdynamic.per_channel)")
    done = subprocess.run([sys.executable, "-c", probe], env={**os.environ, "PYTHONPATH": str(tmp_path)}, cwd=tmp_path,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split("] ")[0] + "]" == str(sorted([*list_backends(), "ortdynamic"]))
    assert done.stdout.strip().endswith("ONNX Runtime dynamic quantization (weights of MatMul/Gemm to INT8) False")
