"""The default job end to end on a reference model: artifacts, reports, gates."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgeincep.core.errors import DataError, GateError
from edgeincep.pipeline.run import run_pipeline


def test_default_job_builds_validates_and_reports(tmp_path, fmnist_val):
    report = run_pipeline("inception_resnet_v2", weights="reference", target="onnxruntime", val_dir=fmnist_val,
                          calib_dir=None, out_dir=tmp_path / "out", limit=200)
    assert report["passed"]
    art = report["validation"]["artifacts"][0]
    # Plain U8S8 where it meets the default budget; where 8-bit dot products saturate (a CPU without VNNI,
    # quantize/saturation.py) it does not, and the ladder ships 16-bit activations instead.
    assert art["target"] == "onnxruntime" and art["precision"] == "int8"
    assert art["fmt"] == ("onnx-qdq-a16w8" if art["escalation"]["met_by"] == "activations16" else "onnx-qdq-u8s8")
    assert art["drift"]["top1_agreement"] >= 0.97
    assert report["calibration"]["count"] == 300 and report["validation"]["images"]["count"] == 200
    saved = json.loads((tmp_path / "out" / "report.json").read_text())
    assert saved["schema"] == "edgeincep.run/1"
    # Every stage says what it cost: wall time and its own peak memory.
    assert set(saved["stages"]) == {"export", "build:onnxruntime", "validate", "latency", "attribute"}
    assert all(st["seconds"] > 0 and st["peak_rss_mb"] > 100 for st in saved["stages"].values())
    page = (tmp_path / "out" / "report.html").read_text()
    assert "inception_resnet_v2" in page and "data:image/png;base64," in page
    # Each INT8 artifact attributed layer by layer on calibration images, in PyTorch's module names, with
    # Model Explorer node data beside the report.
    attribution = saved["validation"]["attribution"]
    assert attribution["images"] == 32 and list(attribution["artifacts"]) == ["onnxruntime:int8"]
    layers = attribution["artifacts"]["onnxruntime:int8"]
    assert "conv2d_1a.conv" in layers and "mixed_5b.branch0.conv" in layers and len(layers) > 100
    assert Path(attribution["node_data"]["onnxruntime:int8"]).is_file()
    assert "Where INT8 loses accuracy, by PyTorch module" in page


def test_gate_failure_is_a_distinct_exit_with_the_report_kept(tmp_path, fmnist_val):
    recipe = tmp_path / "harsh.yaml"
    recipe.write_text("calibration: {count: 1, method: percentile, percentile: 90.001, num_bins: 128}\n"
                      "escalation: {rungs: [ptq]}\nbudget: {max_top1_drop: 0.0, min_agreement: 1.0}\n")
    with pytest.raises(GateError, match="drift budget exceeded: onnxruntime:int8") as e:
        run_pipeline("inception_resnet_v2", weights="reference", target="onnxruntime", val_dir=fmnist_val,
                     calib_dir=None, out_dir=tmp_path / "out", limit=100, recipe_path=recipe)
    assert e.value.exit_code == 10
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert not report["passed"] and report["validation"]["artifacts"][0]["gate"]["violations"]


def test_calibration_images_inside_the_validation_set_are_refused(tmp_path, labelled_dir):
    with pytest.raises(DataError, match="also calibration images"):
        run_pipeline("inception_resnet_v2", weights="reference", target="onnxruntime", val_dir=labelled_dir,
                     calib_dir=labelled_dir, out_dir=tmp_path / "out")


def test_a_second_run_on_the_same_output_directory_is_refused_naming_the_holder(tmp_path, fmnist_val):
    from edgeincep.core.errors import OutputError
    from edgeincep.pipeline.lock import output_lock

    out = tmp_path / "out"
    out.mkdir()
    with output_lock(out), pytest.raises(OutputError, match=r"another edgeincep run holds .* \(pid \d+ on "):
        run_pipeline("inception_resnet_v2", weights="reference", target="onnxruntime", val_dir=fmnist_val,
                     calib_dir=None, out_dir=out, limit=10)
    assert not list(out.glob("*.onnx"))  # refused before anything was written


def test_openvino_job_validates_its_own_fp32_ir_beside_the_int8_one(tmp_path, fmnist_val):
    recipe = tmp_path / "ov.yaml"
    recipe.write_text("openvino: {accuracy_control: false, fast_bias_correction: true}\nescalation: {rungs: [ptq]}\n"
                      "budget: {max_top1_drop: 2.0, min_agreement: 0.95}\n")
    report = run_pipeline("inception_resnet_v1", weights="reference", target="openvino", val_dir=fmnist_val,
                          calib_dir=None, out_dir=tmp_path / "out", limit=200, recipe_path=recipe)
    arts = {a["precision"]: a for a in report["validation"]["artifacts"]}
    assert arts["fp32"]["executed_precision"] == "f32" and arts["fp32"]["drift"]["top1_agreement"] == 1.0
    assert arts["int8"]["executed_precision"].startswith("int8 (") and arts["int8"]["fmt"] == "openvino-ir-int8"
    # Weights live in the .bin: int8 there is about a quarter of fp32 (the .xml of a tiny net is mostly
    # FakeQuantize nodes, so whole-IR size would not show it).
    weights = {p: Path(arts[p]["path"]).with_suffix(".bin").stat().st_size for p in ("fp32", "int8")}
    assert weights["int8"] < 0.35 * weights["fp32"]
    assert report["passed"]
