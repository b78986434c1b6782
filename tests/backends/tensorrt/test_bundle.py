"""The Jetson bundle: the validated Q/DQ ONNX, labels, preprocessing, the exact trtexec command, a standalone
runner whose preprocessing and results equal the host's, expected drift, and a README naming its JetPack."""
from __future__ import annotations

import ast
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgeincep.backends.tensorrt.bundle import ENGINE, ONNX
from edgeincep.backends.tensorrt.engine import EngineSettings, trtexec_command
from edgeincep.backends.tensorrt.engine import unavailable_reason as engine_unavailable
from edgeincep.bundle.samples import CHECK
from edgeincep.bundle.writer import verify_bundle
from edgeincep.data.folders import select_images
from edgeincep.data.images import load_and_preprocess
from edgeincep.export.onnx import preprocess_from_metadata, read_metadata
from edgeincep.fsutil import sha256_file
from edgeincep.paths import DEFAULT_CALIBRATION
from edgeincep.pipeline.bundle_stage import write_artifact_bundle
from edgeincep.pipeline.export_stage import run_export
from edgeincep.pipeline.validate_stage import validate
from edgeincep.quantize.calibration import load_calibration
from edgeincep.recipes import Recipe
from edgeincep.registry import get_backend

TRT = get_backend("tensorrt")
pytestmark = pytest.mark.skipif(TRT.unavailable_reason() is not None, reason=TRT.unavailable_reason() or "")
QUICK = Recipe.model_validate({"tensorrt": {"calibration_method": "max", "keep_fp32_twin": False}})


@pytest.fixture(scope="module")
def jetson(tmp_path_factory, fmnist_val):
    out = tmp_path_factory.mktemp("jetson")
    fp32 = run_export("inception_resnet_v1", weights="reference", out_dir=out).path
    calib = load_calibration(DEFAULT_CALIBRATION, preprocess_from_metadata(read_metadata(fp32)), count=40, seed=2)
    art = TRT.build(fp32, calib, QUICK, out)
    record = validate(fp32, [art], select_images(fmnist_val, 100), threads=2)
    entry = record["artifacts"][0] | {"gate": {"budget": {}, "violations": []}}
    res = write_artifact_bundle(art, "jetson", entry, QUICK, out, reference=record["reference"], images=record["images"])
    return {"art": art, "entry": entry, "bundle": res, "fp32": fp32}


def _runner(folder: Path, name: str = "run.py"):
    spec = importlib.util.spec_from_file_location("bundled_" + name.removesuffix(".py"), folder / name)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_bundle_holds_the_validated_model_labels_preprocessing_and_checksums(jetson):
    folder, art = jetson["bundle"].folder, jetson["art"]
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        ["README.md", "build_engine.sh", "edgeincep_common.py", "expected.json", "expected_drift.json", "labels.json",
         "manifest.json", ONNX, "preprocess.json", "requirements.txt", "run.py", "samples"])
    assert verify_bundle(folder) == []
    assert sha256_file(folder / ONNX) == sha256_file(art.path)  # exactly the file validation measured
    meta = read_metadata(art.path)
    assert json.loads((folder / "labels.json").read_text()) == json.loads(meta["edgeincep.labels"])
    assert json.loads((folder / "preprocess.json").read_text()) == json.loads(meta["edgeincep.preprocess"])
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["checkpoint_sha256"] == meta["edgeincep.checkpoint_sha256"] != ""
    assert manifest["written_for"] == {"jetpack": "6.2", "tensorrt": "10.3"}
    assert manifest["recipe"]["tensorrt"]["calibration_method"] == "max"
    assert manifest["runner"] == {"onnx": ONNX, "engine": ENGINE, "input": "input"}
    assert manifest["check"] == CHECK
    assert jetson["bundle"].archive.is_file() and jetson["bundle"].archive.name == "inception_resnet_v1.tensorrt.jetson.tar.gz"


def test_expected_drift_and_readme_state_the_host_measurements_and_versions(jetson):
    folder, entry = jetson["bundle"].folder, jetson["entry"]
    drift = json.loads((folder / "expected_drift.json").read_text())
    assert drift["top1_agreement"] == entry["drift"]["top1_agreement"] and drift["int8_top1"] == entry["top1"]
    assert drift["images"]["count"] == 100 and drift["fp32_top1"] > 0.8
    readme = (folder / "README.md").read_text()
    assert "JetPack 6.2" in readme and "TensorRT 10.3" in readme
    assert f"| top1_agreement | {entry['drift']['top1_agreement']:.4g} |" in readme
    assert "--int8" in readme and "--fp16" in readme and "onnxruntime" in (folder / "requirements.txt").read_text()


def test_build_engine_script_runs_exactly_the_trtexec_command(jetson, tmp_path):
    folder = jetson["bundle"].folder
    script = folder / "build_engine.sh"
    assert os.access(script, os.X_OK)
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    # A stand-in trtexec binary that records its arguments: what the device's trtexec would receive.
    record = tmp_path / "args.txt"
    fake = tmp_path / "trtexec"
    fake.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > {record}\n')
    fake.chmod(0o755)
    done = subprocess.run([str(script), "--verbose"], env={**os.environ, "TRTEXEC": str(fake)},
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    expected = trtexec_command(ONNX, ENGINE, input_name="input", input_size=75, s=EngineSettings())[1:]
    assert record.read_text().splitlines() == [*expected, "--verbose"]
    assert {"--int8", "--fp16", "--memPoolSize=workspace:1024M", "--timingCacheFile=timing.cache"} <= set(expected)


def test_runner_imports_nothing_but_numpy_pillow_and_the_runtimes(jetson):
    roots = set()
    for name in ("run.py", "edgeincep_common.py"):
        for node in ast.walk(ast.parse((jetson["bundle"].folder / name).read_text())):
            if isinstance(node, ast.Import):
                roots |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and not node.level:
                roots.add(node.module.split(".")[0])
    third_party = roots - set(sys.stdlib_module_names) - {"edgeincep_common"}  # the bundle's own module
    assert third_party == {"numpy", "PIL", "tensorrt", "onnxruntime"}


def test_check_on_the_cpu_passes_and_a_changed_host_result_fails(jetson, tmp_path):
    """`run.py --check` (what `edgeincep deploy --check` runs) reproduces the host's samples on ONNX Runtime's
    CPU; an expected.json that disagrees with the model makes it exit 1 naming the sample."""
    folder = tmp_path / "b"
    shutil.copytree(jetson["bundle"].folder, folder)
    spec = json.loads((folder / "manifest.json").read_text())["check"]
    out = tmp_path / "check.json"
    argv = [a.replace("{python}", sys.executable).replace("{output}", str(out)) for a in spec["command"]]
    done = subprocess.run(argv, cwd=folder, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "6/6 samples match the host" in done.stdout and "checking with ONNX Runtime" in done.stderr
    assert json.loads(out.read_text())["backend"] == "onnxruntime"
    expected = json.loads((folder / "expected.json").read_text())
    assert expected["tolerance"]["tensorrt"] is None and expected["tolerance"]["onnxruntime"] > 0
    first = expected["results"][0]
    first["top1"] = (first["top1"] + 1) % len(first["logits"])
    (folder / "expected.json").write_text(json.dumps(expected))
    bad = subprocess.run(argv, cwd=folder, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1 and f"MISMATCH {first['image']}: top-1" in bad.stderr


def test_runner_on_the_cpu_reproduces_the_host_results(jetson, fmnist_val, tmp_path):
    folder = jetson["bundle"].folder
    images = sorted(fmnist_val.rglob("*.png"))[::25]  # 20 images across the classes
    out = tmp_path / "res.json"
    done = subprocess.run([sys.executable, str(folder / "run.py"), "--backend", "onnxruntime", "--threads", "2",
                           "--json", str(out), *map(str, images)], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    res = json.loads(out.read_text())
    assert res["backend"] == "onnxruntime" and len(res["results"]) == len(images)
    pre = preprocess_from_metadata(read_metadata(jetson["art"].path))
    host = TRT.load(jetson["art"]).predict(np.stack([load_and_preprocess(p, pre) for p in images]))
    device = np.asarray([r["logits"] for r in res["results"]], np.float32)
    np.testing.assert_allclose(device, host, atol=1e-5)
    assert [r["top1"] for r in res["results"]] == host.argmax(1).tolist()
    labels = json.loads((folder / "labels.json").read_text())
    # one line per image, as every bundle's runner prints it: path, timing, then the ranked classes
    assert done.stdout.splitlines()[0].split("\t")[2].startswith(labels[res["results"][0]["top1"]] + " ")


def _odd_images(root: Path) -> list[Path]:
    """Modes and layouts the host handles specially: alpha, palette transparency, 16-bit, EXIF rotation, wide."""
    root.mkdir()
    rng = np.random.default_rng(0)
    rgba = Image.fromarray(rng.integers(0, 255, (40, 90, 4), dtype=np.uint8), "RGBA")
    rgba.save(root / "alpha_wide.png")
    pal = Image.fromarray(rng.integers(0, 255, (64, 48, 3), dtype=np.uint8)).convert("P")
    pal.info["transparency"] = 0
    pal.save(root / "palette.png", transparency=0)
    Image.fromarray(rng.integers(0, 65535, (50, 50), dtype=np.uint16)).save(root / "deep16.png")
    jpg = Image.fromarray(rng.integers(0, 255, (30, 70, 3), dtype=np.uint8))
    exif = jpg.getexif()
    exif[0x0112] = 6  # rotate 90 on display
    jpg.save(root / "rotated.jpg", exif=exif.tobytes())
    Image.fromarray(rng.integers(0, 255, (28, 28), dtype=np.uint8), "L").save(root / "gray.bmp")
    return sorted(root.iterdir())


def test_runner_preprocessing_is_bit_identical_to_the_host(jetson, tmp_path):
    runner = _runner(jetson["bundle"].folder, "edgeincep_common.py")  # what run.py preprocesses with
    cfg = json.loads((jetson["bundle"].folder / "preprocess.json").read_text())
    pre = preprocess_from_metadata(read_metadata(jetson["art"].path))
    for p in _odd_images(tmp_path / "odd"):
        mine = runner.preprocess(runner.load_image(p), cfg)
        assert mine.dtype == np.float32 and np.array_equal(mine, load_and_preprocess(p, pre)), p.name
    for interp in ("bilinear", "nearest", "lanczos"):  # every resampling the host knows
        p = tmp_path / "odd" / "alpha_wide.png"
        other = pre.__class__(**{**pre.to_dict(), "interpolation": interp, "mean": tuple(pre.mean), "std": tuple(pre.std)})
        assert np.array_equal(runner.preprocess(runner.load_image(p), cfg | {"interpolation": interp}),
                              load_and_preprocess(p, other))


def test_runner_asked_for_tensorrt_where_it_cannot_run_says_why(jetson, tmp_path):
    reason = engine_unavailable()
    if reason is None:
        pytest.skip("TensorRT and a GPU are present here")
    img = next(iter(sorted(DEFAULT_CALIBRATION.rglob("*.png"))))
    folder = jetson["bundle"].folder
    strict = subprocess.run([sys.executable, str(folder / "run.py"), "--backend", "tensorrt", str(img)],
                            capture_output=True, text=True)
    assert strict.returncode != 0 and "cannot run the TensorRT engine: " in strict.stderr
    auto = subprocess.run([sys.executable, str(folder / "run.py"), str(img)], capture_output=True, text=True)
    assert auto.returncode == 0 and "checking with ONNX Runtime on the CPU instead" in auto.stderr


@pytest.mark.skipif(engine_unavailable() is not None, reason=engine_unavailable() or "")
def test_engine_built_from_the_bundle_runs_in_the_bundled_runner(jetson, tmp_path):
    from edgeincep.backends.tensorrt.engine import build_engine

    folder = jetson["bundle"].folder
    build_engine(folder / ONNX, folder / ENGINE, input_name="input", input_size=75, s=EngineSettings(),
                 timing_cache=folder / "timing.cache")
    img = [str(p) for p in sorted(DEFAULT_CALIBRATION.rglob("*.png"))[:16]]
    out = tmp_path / "trt.json"
    done = subprocess.run([sys.executable, str(folder / "run.py"), "--backend", "tensorrt", "--json", str(out), *img],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert json.loads(out.read_text())["backend"] == "tensorrt"


def test_pipeline_writes_no_bundle_for_an_artifact_over_its_budget(jetson, tmp_path):
    from edgeincep.pipeline.bundle_stage import write_bundles

    failing = jetson["entry"] | {"gate": {"budget": {}, "violations": ["top-1 dropped 3.00 points (budget 0.5)"]}}
    record = {"artifacts": [failing], "reference": {}, "images": {}}
    write_bundles([jetson["art"]], record, {"tensorrt": QUICK.model_dump()}, tmp_path)
    assert failing["bundle"] == {"skipped": "over its drift budget: no device bundle"}
    assert not list(tmp_path.iterdir())
