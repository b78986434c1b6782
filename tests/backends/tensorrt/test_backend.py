"""TensorRT target: the shipped fp16 Q/DQ ONNX is what validation runs (on CPU here), builds are cached, fallback
can keep layers float, the pipeline passes the drift gate and writes the Jetson bundle; the engine path runs
where TensorRT and a GPU exist and otherwise says why not."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from edgeincep.backends.tensorrt.engine import EngineSettings, trtexec_command
from edgeincep.backends.tensorrt.engine import unavailable_reason as engine_unavailable
from edgeincep.core.errors import UserError
from edgeincep.export.onnx import preprocess_from_metadata, read_metadata
from edgeincep.paths import DEFAULT_CALIBRATION
from edgeincep.pipeline.export_stage import run_export
from edgeincep.pipeline.run import run_pipeline
from edgeincep.quantize.calibration import load_calibration
from edgeincep.recipes import Recipe
from edgeincep.registry import get_backend, list_backends
from edgeincep.validate.ort import OrtPredictor

TRT = get_backend("tensorrt")
REASON = TRT.unavailable_reason()
needs_modelopt = pytest.mark.skipif(REASON is not None, reason=REASON or "")
ENGINE_REASON = engine_unavailable()
needs_engine = pytest.mark.skipif(ENGINE_REASON is not None, reason=ENGINE_REASON or "")
# Max calibration is the quicker of the two; the default (entropy) runs in the pipeline test below.
WITH_TWIN = Recipe.model_validate({"tensorrt": {"calibration_method": "max"}})
QUICK = Recipe.model_validate({"tensorrt": {"calibration_method": "max", "keep_fp32_twin": False}})


@pytest.fixture(scope="module")
def fp32(tmp_path_factory) -> Path:
    return run_export("inception_resnet_v1", weights="reference", out_dir=tmp_path_factory.mktemp("trt")).path


@pytest.fixture(scope="module")
def calib(fp32):
    return load_calibration(DEFAULT_CALIBRATION, preprocess_from_metadata(read_metadata(fp32)), count=60, seed=1)


@pytest.fixture(scope="module")
def built(fp32, calib, tmp_path_factory):
    return TRT.build(fp32, calib, WITH_TWIN, tmp_path_factory.mktemp("built"))


def test_target_is_registered_and_needs_only_modelopt_to_build():
    assert "tensorrt" in list_backends()
    if importlib.util.find_spec("modelopt") is None:
        assert "nvidia-modelopt" in REASON
    else:
        assert REASON is None  # the Q/DQ build and its CPU check run without TensorRT or a GPU


@needs_modelopt
def test_artifact_is_the_fp16_qdq_file_with_its_fp32_twin_beside_it(built, fp32):
    assert built.target == "tensorrt" and built.precision == "int8" and built.fmt == "onnx-qdq-trt"
    assert built.path.name == "inception_resnet_v1.75px.tensorrt.int8.onnx"
    assert "fp16 high precision" in read_metadata(built.path)["edgeincep.quantization"]
    twin = built.meta["fp32_twin"]
    assert Path(twin["path"]).is_file() and Path(twin["path"]).name.endswith(".int8.fp32hp.onnx")
    # fp16 weights and scales move no prediction of the fp32-precision twin on the calibration images
    assert twin["top1_agreement"] >= 0.98 and twin["images"] == 60 and built.meta["method"] == "max"
    assert built.size_bytes() < 0.8 * fp32.stat().st_size
    assert built.meta["engine"] == {"fp16": True, "workspace_mb": 1024, "timing_cache": True, "opt_batch": 1,
                                    "max_batch": 8}
    assert built.meta["int8_convs"] > 0.8 * built.meta["convs"]


@needs_modelopt
def test_a_second_build_is_served_from_the_cache(built, fp32, calib):
    again = TRT.build(fp32, calib, WITH_TWIN, built.path.parent)
    assert not built.meta.get("cached") and again.meta.get("cached") is True and again.path == built.path


@needs_modelopt
def test_load_runs_the_shipped_file_and_says_what_executed(built, fp32, calib):
    pred = TRT.load(built)
    ref = OrtPredictor(fp32).predict(calib.x)
    out = pred.predict(calib.x)
    assert out.shape == ref.shape and np.isfinite(out).all()
    assert (out.argmax(1) == ref.argmax(1)).mean() >= 0.95
    if ENGINE_REASON is None:
        assert pred.executed_precision.startswith("int8 (TensorRT engine")
    else:
        assert pred.executed_precision.startswith("int8 Q/DQ on ONNX Runtime CPU") and "fp16" in pred.executed_precision


@needs_modelopt
def test_fallback_nodes_reach_modelopt_as_float_layers(built, fp32, calib, tmp_path):
    keep = ["/repeat_2/repeat_2.0/branch0/conv/Conv", "/block8/conv2d/Conv"]
    kept = TRT.build_keeping_float(fp32, calib, QUICK, tmp_path, keep)
    assert kept.meta["int8_convs"] == built.meta["int8_convs"] - 2 and "fp32_twin" not in kept.meta
    assert kept.meta["float_nodes"] == keep and read_metadata(kept.path)["edgeincep.float_nodes"] == ",".join(keep)


def test_trtexec_command_sets_int8_fp16_timing_cache_and_workspace():
    cmd = trtexec_command("m.onnx", "m.engine", input_name="input", input_size=75,
                          s=EngineSettings(workspace_mb=512, max_batch=4))
    assert cmd == ["trtexec", "--onnx=m.onnx", "--saveEngine=m.engine", "--int8", "--fp16",
                   "--minShapes=input:1x3x75x75", "--optShapes=input:1x3x75x75", "--maxShapes=input:4x3x75x75",
                   "--memPoolSize=workspace:512M", "--timingCacheFile=timing.cache"]
    no_fp16 = trtexec_command("m.onnx", "m.engine", input_name="input", input_size=75,
                              s=EngineSettings(fp16=False, timing_cache=False))
    assert "--fp16" not in no_fp16 and not any(c.startswith("--timingCacheFile") for c in no_fp16)


def test_engine_unavailability_is_one_line_naming_the_cause():
    if ENGINE_REASON is None:
        pytest.skip("TensorRT and a GPU are present here")
    assert "\n" not in ENGINE_REASON
    if importlib.util.find_spec("tensorrt") is None:
        assert ENGINE_REASON.startswith("tensorrt is not importable: ")
    else:
        assert ENGINE_REASON.startswith("no CUDA GPU")
    from edgeincep.backends.tensorrt.engine import build_engine

    with pytest.raises(UserError, match="cannot build a TensorRT engine here: "):
        build_engine(Path("m.onnx"), Path("m.engine"), input_name="input", input_size=75, s=EngineSettings())


@needs_modelopt
@needs_engine
def test_engine_build_is_cached_and_its_runner_agrees_with_onnx_runtime(built, calib):
    from edgeincep.backends.tensorrt.engine import TensorRtPredictor, ensure_engine

    engine, info = ensure_engine(built.path, input_name="input", input_size=75, s=EngineSettings())
    assert engine.is_file() and info["int8"] and info["fp16"]
    assert (built.path.parent / "timing.cache").is_file()
    again, info2 = ensure_engine(built.path, input_name="input", input_size=75, s=EngineSettings())
    assert again == engine and info2.get("cached") is True
    gpu = TensorRtPredictor(engine, "trt", fp16=True).predict(calib.x)  # 60 images: split into batches of 8
    cpu = OrtPredictor(built.path).predict(calib.x)
    assert gpu.shape == cpu.shape and (gpu.argmax(1) == cpu.argmax(1)).mean() >= 0.95


@needs_modelopt
def test_pipeline_passes_the_drift_gate_and_writes_the_jetson_bundle(tmp_path, fmnist_val):
    recipe = tmp_path / "trt.yaml"
    # No fallback here (it rebuilds several times): the budget is the default 0.5 point of top-1, and agreement
    # >= 98% on these 500 images (6 flips of 500 is 98.8%). The full runs keep the default 99% with fallback.
    recipe.write_text("tensorrt: {keep_fp32_twin: false}\nescalation: {rungs: [ptq]}\n"
                      "budget: {max_top1_drop: 0.5, min_agreement: 0.98}\n")
    report = run_pipeline("inception_resnet_v1", weights="reference", target="tensorrt", val_dir=fmnist_val,
                          calib_dir=None, out_dir=tmp_path / "out", limit=500, recipe_path=recipe)
    (art,) = report["validation"]["artifacts"]
    assert report["passed"] and art["fmt"] == "onnx-qdq-trt" and art["gate"]["violations"] == []
    assert art["drift"]["top1_drop_points"] <= 0.5 and art["drift"]["top1_agreement"] >= 0.98
    assert art["drift"]["sqnr_db"] > 25  # the file's own numerics, not ONNX Runtime's fp16 graph rewrites
    bundle = art["bundle"]
    assert Path(bundle["folder"]).is_dir() and Path(bundle["archive"]).is_file()
    saved = json.loads((tmp_path / "out" / "report.json").read_text())
    assert saved["validation"]["artifacts"][0]["bundle"] == bundle and "bundle" in saved["stages"]
    manifest = json.loads((Path(bundle["folder"]) / "manifest.json").read_text())
    assert manifest["drift"]["top1_agreement"] == art["drift"]["top1_agreement"]


@pytest.mark.slow
@needs_modelopt
@pytest.mark.parametrize("model", ["inception_resnet_v1", "inception_resnet_v2", "inception_v4"])
def test_reference_models_pass_the_drift_budget_on_the_full_validation_set(tmp_path, model, fmnist_val_full):
    report = run_pipeline(model, weights="reference", target="tensorrt", val_dir=fmnist_val_full, calib_dir=None,
                          out_dir=tmp_path / "out", threads=2)
    (art,) = report["validation"]["artifacts"]
    assert report["validation"]["images"]["count"] == 10_000
    assert report["passed"] and art["drift"]["top1_drop_points"] <= 0.5
