"""The backend contract, written once and run for every registered backend (in the spirit of NNCF's
cross-framework test templates): what the pipeline, validation, bench and bundles rely on from any backend.

Each backend builds the reference Inception-ResNet-v1 once per session (the root `build_int8` fixture);
a backend whose tools are not installed here is skipped with its own reason.
"""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from edgeincep.backends.base import Backend
from edgeincep.bundle.writer import verify_bundle
from edgeincep.core.artifact import Artifact
from edgeincep.data.folders import select_images
from edgeincep.export.metadata import read_metadata
from edgeincep.pipeline.bundle_stage import write_artifact_bundle
from edgeincep.pipeline.validate_stage import validate
from edgeincep.recipes import Recipe
from edgeincep.registry import get_backend, list_backends

# Per-backend settings that only make the tests faster (NNCF's full bias correction, ModelOpt's fp32 twin).
QUICK = {"openvino": {"openvino": {"fast_bias_correction": True}},
         "tensorrt": {"tensorrt": {"keep_fp32_twin": False}}}
BACKENDS = list_backends()


@pytest.fixture(params=BACKENDS)
def backend(request) -> Backend:
    return get_backend(request.param)


@pytest.fixture()
def int8(backend, build_int8) -> Artifact:
    return build_int8(backend.name, **QUICK.get(backend.name, {}))


def test_the_registry_hands_out_one_instance_per_name_and_refuses_an_unknown_one():
    from edgeincep.core.errors import UserError

    assert {"onnxruntime", "openvino", "tflite", "edgetpu", "tensorrt", "executorch"} <= set(BACKENDS)
    assert all(get_backend(n) is get_backend(n) and get_backend(n).name == n for n in BACKENDS)
    with pytest.raises(UserError, match=f"unknown target 'nope'; known targets: {', '.join(sorted(BACKENDS))}"):
        get_backend("nope")


def test_build_writes_an_int8_artifact_with_a_record_that_a_second_build_reuses(backend, int8, reference_fp32,
                                                                               reference_calib):
    assert int8.target == backend.name and int8.precision == "int8" and int8.path.is_file()
    assert int8.size_bytes() > 0 and int8.sidecar().is_file()
    record = json.loads(int8.sidecar().read_text())
    assert record["cache_key"] == int8.meta["cache_key"] and set(record["sha256"]) == {p.name for p in int8.files()}
    again = backend.build(reference_fp32, reference_calib, Recipe.model_validate(QUICK.get(backend.name, {})),
                          int8.path.parent)
    assert again.meta.get("cached") is True and again.path == int8.path and again.fmt == int8.fmt


def test_load_gives_a_predictor_of_logits_for_a_batch(backend, int8, reference_calib):
    pred = backend.load(int8)
    out = pred.predict(reference_calib.x[:3])
    assert out.shape == (3, 10) and out.dtype == np.float32 and np.isfinite(out).all()
    assert pred.name == int8.name and "int8" in pred.executed_precision


def test_metadata_carries_the_fp32_models_preprocessing_and_labels(backend, int8, reference_fp32):
    meta, source = backend.metadata(int8), read_metadata(reference_fp32)
    for key in ("edgeincep.model", "edgeincep.preprocess", "edgeincep.labels", "edgeincep.checkpoint_sha256"):
        assert meta[key] == source[key], key


def test_validation_records_accuracy_and_drift_against_the_fp32_reference(int8, reference_fp32, labelled_dir):
    record = validate(reference_fp32, [int8], select_images(labelled_dir, None), threads=2)
    (entry,) = record["artifacts"]
    assert entry["target"] == int8.target and record["images"]["count"] == 30
    drift = entry["drift"]
    assert 0.9 <= drift["top1_agreement"] <= 1.0 and drift["sqnr_db"] > 10
    assert entry["executed_precision"] and entry["size_bytes"] == int8.size_bytes()


def test_a_bundle_verifies_and_its_run_py_reproduces_the_hosts_samples(backend, int8, tmp_path):
    if not backend.bundle_devices:
        assert backend.bundle_spec(int8, "any", Recipe()) is None
        return
    device = backend.bundle_devices[0]
    res = write_artifact_bundle(int8, device, {}, Recipe(), tmp_path)
    assert res.folder.name.endswith(f".{backend.name}.{device}") and verify_bundle(res.folder) == []
    manifest = json.loads((res.folder / "manifest.json").read_text())
    assert manifest["device"] == device and manifest["target"] == backend.name
    done = subprocess.run([sys.executable, "run.py", "--check", "--json", str(tmp_path / "check.json")],
                          cwd=res.folder, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    float_ref = Artifact(int8.path, backend.name, "fp32", int8.fmt)
    assert backend.bundle_spec(float_ref, device, Recipe()) is None  # float references get no bundle


def test_a_damaged_artifact_is_one_line_naming_the_file(backend, int8, reference_fp32, labelled_dir, tmp_path, cli):
    broken = tmp_path / int8.path.name
    broken.write_bytes(int8.path.read_bytes()[:200])
    for extra in int8.files()[1:]:  # an IR's .bin: the damage is in the graph file
        (tmp_path / extra.name).write_bytes(extra.read_bytes())
    res = cli("validate", reference_fp32, broken, "--images", labelled_dir)
    assert res.exit_code != 0 and "Traceback" not in res.output
    line = res.output.strip().splitlines()[-1]
    assert line.startswith("error:") and broken.name in line
