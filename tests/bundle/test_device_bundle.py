"""Raspberry Pi, Coral and Intel bundles: contents and checksums, and a standalone run.py whose logits equal
the host validate path's on the same image files (a real subprocess, importing only numpy, Pillow, a runtime)."""
from __future__ import annotations

import ast
import json
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest

from edgeincep.bundle.samples import CHECK, SAMPLES
from edgeincep.bundle.writer import verify_bundle
from edgeincep.core.artifact import Artifact
from edgeincep.data.folders import ImageSet, iter_batches, select_images
from edgeincep.device.pins import REQUIREMENTS
from edgeincep.export.onnx import preprocess_from_metadata
from edgeincep.fsutil import sha256_file
from edgeincep.pipeline.bundle_stage import write_artifact_bundle
from edgeincep.pipeline.validate_stage import validate
from edgeincep.recipes import Recipe
from edgeincep.registry import get_backend

pytestmark = pytest.mark.skipif(get_backend("tflite").unavailable_reason() is not None,
                                reason=get_backend("tflite").unavailable_reason() or "")
MODEL_FILES = {"rpi": ["model.int8.tflite"], "coral": ["model.int8.tflite"],
               "intel": ["model.int8.bin", "model.int8.xml"]}


@pytest.fixture(scope="module")
def host_record(reference_fp32, tflite_int8, labelled_dir_module):
    """What `edgeincep run` hands the bundle hook: the validate record with a passed gate and latency."""
    record = validate(reference_fp32, [tflite_int8], select_images(labelled_dir_module, None), threads=2)
    entry = record["artifacts"][0] | {"gate": {"budget": {}, "violations": []},
                                      "latency": {"p50_ms": 1.25, "p90_ms": 1.5}}
    record["reference"]["latency"] = {"p50_ms": 2.5, "p90_ms": 3.0}
    return record, entry


@pytest.fixture(scope="module")
def labelled_dir_module(tmp_path_factory) -> Path:
    from edgeincep.paths import DEFAULT_CALIBRATION

    root = tmp_path_factory.mktemp("val")
    for cls in sorted(p for p in DEFAULT_CALIBRATION.iterdir() if p.is_dir()):
        (root / cls.name).mkdir()
        for f in sorted(cls.glob("*.png"))[-4:]:
            shutil.copy(f, root / cls.name / f.name)
    return root


@pytest.fixture(scope="module")
def bundles(request, tmp_path_factory, host_record, tflite_int8, edgetpu_int8) -> dict:
    """device -> (BundleResult, artifact); rpi as the pipeline writes it, coral and intel as `edgeincep bundle` does."""
    record, entry = host_record
    out = tmp_path_factory.mktemp("bundles")
    got = {"rpi": (write_artifact_bundle(tflite_int8, "rpi", entry, Recipe(), out, reference=record["reference"],
                         images=record["images"]), tflite_int8),
           "coral": (write_artifact_bundle(edgetpu_int8, "coral", {}, Recipe(), out), edgetpu_int8)}
    if get_backend("openvino").unavailable_reason() is None:
        art = request.getfixturevalue("openvino_int8")
        got["intel"] = (write_artifact_bundle(art, "intel", {}, Recipe(), out), art)
    return got


def _device(bundles, device):
    if device not in bundles:
        pytest.skip(f"{device}: runtime not installed here")
    return bundles[device]


def host_logits(art: Artifact, paths: list[Path]) -> np.ndarray:
    """The validate path: iter_batches (edgeincep's preprocessing) into the target's own predictor."""
    pred = get_backend(art.target).load(art, 0)
    pre = preprocess_from_metadata(get_backend(art.target).metadata(art))
    images = ImageSet(paths[0].parent, list(paths), None, [])
    return np.concatenate([pred.predict(x) for x, _, _ in iter_batches(images, pre, 8)])


@pytest.mark.parametrize("device", ["rpi", "coral", "intel"])
def test_bundle_holds_the_validated_model_and_what_runs_it_with_checksums(bundles, device):
    res, art = _device(bundles, device)
    folder = res.folder
    top = sorted(p.name for p in folder.iterdir())
    expected = ["README.md", "edgeincep_common.py", "expected.json", "labels.json", "manifest.json", *MODEL_FILES[device],
                "preprocess.json",
                "requirements.txt", "run.py", "samples"] + (["edgetpu_compat.json"] if device == "coral" else [])
    assert top == sorted(expected)
    assert verify_bundle(folder) == []
    assert sha256_file(folder / MODEL_FILES[device][-1]) == sha256_file(art.path)  # the validated bytes
    meta = get_backend(art.target).metadata(art)
    assert json.loads((folder / "labels.json").read_text()) == json.loads(meta["edgeincep.labels"])
    assert json.loads((folder / "preprocess.json").read_text()) == json.loads(meta["edgeincep.preprocess"])
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["device"] == device and manifest["precision"] == "int8" and manifest["target"] == art.target
    assert manifest["checkpoint_sha256"] == meta["edgeincep.checkpoint_sha256"] != ""
    assert manifest["source"]["sha256"] == sha256_file(art.path)
    assert manifest["check"] == CHECK and manifest["edgeincep_version"]
    assert manifest["recipe"] == Recipe().model_dump()
    reqs = (folder / "requirements.txt").read_text()
    assert [line for line in reqs.splitlines() if not line.startswith("#")] == REQUIREMENTS[device]
    assert all("==" in r for r in REQUIREMENTS[device])
    samples = json.loads((folder / "expected.json").read_text())["results"]
    assert len(samples) == SAMPLES == len(list((folder / "samples").iterdir()))
    with tarfile.open(res.archive) as tar:
        names = {m.name for m in tar.getmembers() if m.isfile()}
    assert names == {f"{folder.name}/{p.relative_to(folder).as_posix()}" for p in folder.rglob("*") if p.is_file()}


def test_rpi_manifest_and_readme_carry_the_host_drift_and_latency(bundles, host_record):
    _, entry = host_record
    folder = _device(bundles, "rpi")[0].folder
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["drift"]["top1_agreement"] == entry["drift"]["top1_agreement"]
    assert manifest["drift"]["int8_top1"] == entry["top1"] and manifest["drift"]["images"]["count"] == 40
    assert manifest["bench"] == {"latency": entry["latency"], "reference_latency": {"p50_ms": 2.5, "p90_ms": 3.0}}
    readme = (folder / "README.md").read_text()
    assert f"| top1_agreement | {entry['drift']['top1_agreement']:.4g} |" in readme
    assert "| this INT8 model | 1.25 | 1.50 |" in readme and "ai-edge-litert==2.3.0" in readme
    # Without a validation record (edgeincep bundle on a bare file) the README says so instead of inventing numbers.
    assert "Not measured" in (_device(bundles, "coral")[0].folder / "README.md").read_text()


def test_coral_bundle_states_the_edge_tpu_situation(bundles):
    folder = _device(bundles, "coral")[0].folder
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["runner"]["runtime"] == "edgetpu"
    compiled = "edgetpu_model" in manifest["runner"]
    assert (folder / "model.int8_edgetpu.tflite").is_file() == compiled
    readme = (folder / "README.md").read_text()
    assert "libedgetpu1-std" in readme and "all 183 ops can map to the Edge TPU" in readme
    assert json.loads((folder / "edgetpu_compat.json").read_text())["compatible"] is True


@pytest.mark.parametrize("device", ["rpi", "coral", "intel"])
def test_runner_output_equals_the_host_validate_path(bundles, device, mixed_images, tmp_path):
    res, art = _device(bundles, device)
    out = tmp_path / "res.json"
    done = subprocess.run([sys.executable, "-I", str(res.folder / "run.py"), "--json", str(out), *map(str, mixed_images)],
                          capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert done.returncode == 0, done.stderr
    got = json.loads(out.read_text())
    assert got["backend"] == {"intel": "openvino-cpu"}.get(device, "litert-cpu")
    if device == "coral":
        assert "running the INT8 model on the CPU" in done.stderr  # it says which ran
    device_logits = np.asarray([r["logits"] for r in got["results"]], np.float32)
    host = host_logits(art, mixed_images)
    np.testing.assert_array_equal(device_logits, host)  # same runtime, same bytes in: bit-identical
    labels = json.loads((res.folder / "labels.json").read_text())
    first = done.stdout.splitlines()[0].split("\t")
    assert first[0] == str(mixed_images[0]) and first[1].endswith("ms preprocessing)")
    assert first[2].split()[0] == labels[int(host[0].argmax())] and len(first[2].split()) == 10  # top-5 names + scores


def test_runner_imports_nothing_but_numpy_pillow_and_the_device_runtimes():
    from edgeincep.device import COMMON_SOURCE, RUNNER_SOURCE

    roots = set()
    for source in (RUNNER_SOURCE, COMMON_SOURCE):  # run.py and the edgeincep_common.py beside it
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.Import):
                roots |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and not node.level:
                roots.add(node.module.split(".")[0])
    third_party = roots - set(sys.stdlib_module_names) - {"edgeincep_common"}
    assert third_party == {"numpy", "PIL", "ai_edge_litert", "tflite_runtime", "openvino"}


def _run_check(folder: Path, output: Path) -> subprocess.CompletedProcess:
    """The manifest's check command with the placeholders filled in as `edgeincep deploy --check` fills them."""
    spec = json.loads((folder / "manifest.json").read_text())["check"]
    argv = [a.replace("{python}", sys.executable).replace("{output}", str(output)) for a in spec["command"]]
    return subprocess.run(argv, cwd=folder, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("device", ["rpi", "intel"])
def test_check_passes_on_the_bundle_and_fails_when_a_result_differs(bundles, device, tmp_path):
    folder = _device(bundles, device)[0].folder
    done = _run_check(folder, tmp_path / "device.json")
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{SAMPLES}/{SAMPLES} samples match the host" in done.stdout and "bit-identical" in done.stdout
    expected = json.loads((folder / "expected.json").read_text())
    device_json = json.loads((tmp_path / "device.json").read_text())
    # deploy pairs the device's results with the host's by image name.
    assert [(r["image"], r["top1"], r["logits"]) for r in device_json["results"]] == \
        [(r["image"], r["top1"], r["logits"]) for r in expected["results"]]
    assert verify_bundle(folder) == []  # the check left nothing behind in the bundle

    copy = Path(shutil.copytree(folder, tmp_path / folder.name))
    tol = next(iter(expected["tolerance"].values()))
    # beyond the tolerance (integer output steps for LiteRT, a logit difference for OpenVINO), top-1 unchanged
    expected["results"][1]["logits"][3] += (tol["output_steps"] + 1) * tol["scale"] if isinstance(tol, dict) else 3 * tol
    (copy / "expected.json").write_text(json.dumps(expected))
    done = _run_check(copy, tmp_path / "again.json")
    assert done.returncode == 1 and "MISMATCH" in done.stderr and expected["results"][1]["image"] in done.stderr


def test_only_int8_artifacts_get_a_bundle_and_the_result_names_it(tflite_int8, host_record, tmp_path):
    record, entry = host_record
    float_ref = Artifact(tflite_int8.path, "tflite", "fp32", "tflite-fp32")
    assert get_backend("tflite").bundle_spec(float_ref, "rpi", Recipe()) is None
    assert write_artifact_bundle(float_ref, "rpi", entry, Recipe(), tmp_path) is None
    got = write_artifact_bundle(tflite_int8, "rpi", entry, Recipe(), tmp_path, reference=record["reference"],
                                images=record["images"]).to_dict()
    assert Path(got["folder"]).name == "inception_resnet_v1.tflite.rpi" and Path(got["archive"]).is_file()
    assert "run.py" in got["files"]


def test_bundle_command_writes_a_bundle_and_refuses_the_wrong_artifact(cli, tflite_int8, tmp_path):
    res = cli("bundle", "--device", "rpi", tflite_int8.path, "--out", tmp_path)
    assert res.exit_code == 0, res.output
    folder = tmp_path / "inception_resnet_v1.tflite.rpi"
    assert verify_bundle(folder) == [] and (tmp_path / "inception_resnet_v1.tflite.rpi.tar.gz").is_file()
    bad = cli("bundle", "--device", "intel", tflite_int8.path, "--out", tmp_path)
    assert bad.exit_code != 0 and "intel bundles take openvino artifacts" in bad.output
