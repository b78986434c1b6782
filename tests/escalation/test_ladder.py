"""The escalation ladder on a real backend: it stops where the budget is met, and otherwise climbs every rung,
reporting each one, before the run ends with the gate's exit code."""
from __future__ import annotations

import contextlib
import json

import pytest

from edgeincep.core.errors import DataError, GateError
from edgeincep.pipeline.run import run_pipeline

RUNGS = ["ptq", "calibration", "fallback", "activations16", "qat"]


def _recipe(tmp_path, text: str):
    path = tmp_path / "recipe.yaml"
    path.write_text(text)
    return path


def test_a_budget_plain_int8_meets_stops_the_ladder_there_and_says_why_the_rest_was_not_needed(
        tmp_path, fmnist_val, probe_dir, train_dir):
    # Plain U8S8 agrees with FP32 on 99.0% of these probe images on a VNNI CPU and on 95.0% where 8-bit dot
    # products saturate (quantize/saturation.py): a budget both meet, so the test holds on either CPU.
    recipe = _recipe(tmp_path, "budget: {max_top1_drop: 10.0, min_agreement: 0.9}\n"
                               "validation: {attribution_images: 0}\n")
    report = run_pipeline("inception_resnet_v2", weights="reference", target="onnxruntime", val_dir=fmnist_val,
                          calib_dir=None, out_dir=tmp_path / "out", limit=100, probe_dir=probe_dir, train_dir=train_dir,
                          recipe_path=recipe)
    ladder = report["validation"]["artifacts"][0]["escalation"]
    assert ladder["met_by"] == "ptq" and [r["rung"] for r in ladder["rungs"]] == RUNGS
    assert [r["status"] for r in ladder["rungs"]] == ["met"] + ["not needed"] * 4
    assert ladder["probe"]["source"] == str(probe_dir) and ladder["probe"]["images"] == 300
    assert not (tmp_path / "out" / "escalation").exists()  # nothing past rung 1 was built


def test_a_spent_time_budget_stops_the_climb_and_every_rung_left_says_so(tmp_path, fmnist_val, probe_dir):
    recipe = _recipe(tmp_path, "budget: {max_top1_drop: 0.0, min_agreement: 1.0, confidence: 0.99}\n"
                               "validation: {attribution_images: 0}\n"
                               "escalation: {time_budget_s: 0.001}\ncalibration: {count: 32}\n")
    with pytest.raises(GateError) as e:
        run_pipeline("inception_resnet_v2", weights="reference", target="onnxruntime", val_dir=fmnist_val,
                     calib_dir=None, out_dir=tmp_path / "out", limit=100, probe_dir=probe_dir, recipe_path=recipe)
    assert e.value.exit_code == 10
    ladder = json.loads((tmp_path / "out" / "report.json").read_text())["validation"]["artifacts"][0]["escalation"]
    assert ladder["rungs"][0]["status"] == "missed"
    assert all(r["status"] == "not tried" and "time budget is spent" in r["reason"] for r in ladder["rungs"][1:])


def test_a_missing_or_unlabelled_training_folder_is_refused_before_any_work(tmp_path, fmnist_val, labelled_dir):
    out = tmp_path / "out"
    with pytest.raises(DataError, match="image folder not found"):
        run_pipeline("inception_resnet_v2", weights="reference", target="onnxruntime", val_dir=fmnist_val,
                     calib_dir=None, out_dir=out, train_dir=tmp_path / "nowhere")
    flat = tmp_path / "flat"
    flat.mkdir()
    for f in list(labelled_dir.glob("*/*.png"))[:5]:
        (flat / f.name).write_bytes(f.read_bytes())
    with pytest.raises(DataError, match="needs labelled images"):
        run_pipeline("inception_resnet_v2", weights="reference", target="onnxruntime", val_dir=fmnist_val,
                     calib_dir=None, out_dir=out, train_dir=flat)
    assert not out.exists()


def test_fallback_first_measures_each_sensitive_layer_alone_in_float_and_names_its_module(tmp_path, fmnist_val,
                                                                                          probe_dir):
    from edgeincep.attribution.layers import layers
    from edgeincep.attribution.names import module_path

    recipe = _recipe(tmp_path, "budget: {max_top1_drop: 0.0, min_agreement: 1.0}\ncalibration: {count: 32}\n"
                               "fallback: {max_float_nodes: 1, alone: 3}\nescalation: {rungs: [ptq, fallback]}\n"
                               "validation: {attribution_images: 0}\n")
    with contextlib.suppress(GateError):  # the verdict on 100 validation images is not what this is about
        run_pipeline("inception_resnet_v2", weights="reference", target="onnxruntime", val_dir=fmnist_val,
                     calib_dir=None, out_dir=tmp_path / "out", limit=100, probe_dir=probe_dir, recipe_path=recipe)
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    fallback = report["validation"]["artifacts"][0]["escalation"]["rungs"][1]
    cand = fallback["candidates"][0]
    alone = cand["alone"]["layers"]
    modules = {la.module for la in layers(next((tmp_path / "out").glob("*.fp32.onnx")))}
    assert len(alone) == 3 and cand["alone"]["from"] == "as configured"
    assert all(r["module"] == module_path(r["node"]) and r["module"] in modules for r in alone)
    ptq = report["validation"]["artifacts"][0]["escalation"]["rungs"][0]["candidates"][0]
    assert all(r["agreement_gain"] == pytest.approx(r["top1_agreement"] - ptq["top1_agreement"]) for r in alone)
    # the search keeps first the layer whose float copy alone recovered the most on the probe
    assert cand["float_nodes"] == [max(alone, key=lambda r: r["top1_agreement"])["node"]]
    assert "only this layer float" in (tmp_path / "out" / "report.html").read_text()
    assert alone[0]["module"] in (tmp_path / "out" / "report.md").read_text()


@pytest.mark.slow
def test_a_budget_no_rung_can_meet_climbs_every_rung_then_exits_10_with_the_whole_ladder(tmp_path, fmnist_val,
                                                                                         probe_dir, train_dir):
    recipe = _recipe(tmp_path, "budget: {max_top1_drop: 0.0, min_agreement: 1.0, confidence: 0.99}\n"
                               "calibration: {count: 32}\nfallback: {max_float_nodes: 2}\n"
                               "escalation: {qat: {steps: 3, batch_size: 8, images: 64}}\n"
                               "validation: {attribution_images: 0}\n")
    with pytest.raises(GateError) as e:
        run_pipeline("inception_resnet_v2", weights="reference", target="onnxruntime", val_dir=fmnist_val,
                     calib_dir=None, out_dir=tmp_path / "out", limit=100, probe_dir=probe_dir, train_dir=train_dir,
                     recipe_path=recipe)
    assert e.value.exit_code == 10
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    ladder = report["validation"]["artifacts"][0]["escalation"]
    assert ladder["met_by"] is None and [r["rung"] for r in ladder["rungs"]] == RUNGS
    # every rung tried something: none was skipped
    assert all(r["status"] == "missed" and r["candidates"] for r in ladder["rungs"]), ladder["rungs"]
    by_rung = {r["rung"]: r for r in ladder["rungs"]}
    assert {c["label"] for c in by_rung["calibration"]["candidates"]} >= {"entropy (KL) ranges", "percentile 99.99 ranges"}
    assert len(by_rung["fallback"]["candidates"][0]["float_nodes"]) == 2
    assert by_rung["activations16"]["candidates"][0]["fmt"] == "onnx-qdq-a16w8"
    # ONNX Runtime scores both the recalibrated build of the fine-tuned weights and QAT's Q/DQ file as it is
    assert [c["label"] for c in by_rung["qat"]["candidates"]] == ["QAT weights", "QAT Q/DQ as exported"]
    qat = by_rung["qat"]["candidates"][0]
    assert qat["qat"]["steps"] == 3 and qat["path"].startswith(str(tmp_path / "out" / "escalation" / "onnxruntime" / "qat"))
    assert all("latency_vs_ptq" in c and c["size_bytes"] > 0 for r in ladder["rungs"] for c in r["candidates"])
    # the probe cannot resolve a zero-slack budget, and the run says so
    assert not ladder["probe"]["resolves_budget"] and ladder["probe"]["notes"]
    page = (tmp_path / "out" / "report.html").read_text()
    assert "Escalation ladder" in page and "activations16" in page and "no rung met the budget" in page
    assert "| qat |" in (tmp_path / "out" / "report.md").read_text()


def test_the_cli_refuses_a_training_folder_without_classes_in_one_line(tmp_path, fmnist_val, labelled_dir):
    from user_cli import cli, one_error_line

    flat = tmp_path / "flat"
    flat.mkdir()
    for f in list(labelled_dir.glob("*/*.png"))[:3]:
        (flat / f.name).write_bytes(f.read_bytes())
    proc = cli("run", "--model", "inception_resnet_v2", "--target", "onnxruntime", "--val", fmnist_val,
               "--out", tmp_path / "out", "--train", flat)
    assert proc.returncode != 0
    line = one_error_line(proc)
    assert str(flat) in line and "needs labelled images" in line
    assert not (tmp_path / "out").exists()
