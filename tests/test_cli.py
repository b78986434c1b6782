"""The command line: results on success, one `error:` line and a distinct exit code otherwise."""
from __future__ import annotations

import json
import os

import onnx
import pytest
from PIL import Image

from edgeincep.export.onnx import read_metadata


def test_models_lists_params_gmacs_and_preprocessing(cli):
    res = cli("models", "--json")
    assert res.exit_code == 0
    rows = {r["name"]: r for r in json.loads(res.stdout)}
    assert rows["inception_v4"]["params"] == 42_679_816 and rows["inception_v4"]["gmacs"] == pytest.approx(12.25, 0.01)
    assert rows["inception_resnet_v2"]["crop_pct"] == 0.8975 and rows["inception_resnet_v2"]["classifier"] == "classif"
    assert rows["inception_resnet_v1"]["input_size"] == 160
    assert "inception_v4" in cli("models").stdout


def test_export_small_model_writes_verified_onnx_and_summary(cli, tmp_path, labelled_dir):
    res = cli("export", "--model", "inception_resnet_v1_cls", "--width", "0.125", "--num-classes", "10",
              "--input-size", "75", "--verify-images", labelled_dir, "--out", tmp_path / "o")
    assert res.exit_code == 0, res.output
    path = tmp_path / "o" / "inception_resnet_v1_cls.75px.fp32.onnx"
    onnx.checker.check_model(str(path), full_check=True)
    summary = json.loads((tmp_path / "o" / "inception_resnet_v1_cls.75px.fp32.export.json").read_text())
    assert summary["max_abs_diff"] <= summary["tolerance"] and summary["n_images"] == 16
    assert read_metadata(path)["edgeincep.weights"] == "synthetic"


@pytest.mark.parametrize("args,code,message", [
    (["--model", "inceptionv4"], 2, "unknown model 'inceptionv4'; did you mean inception_v4"),
    (["--model", "inception_v4", "--input-size", "64"], 2, "input size 64 px is too small"),
    (["--model", "inception_v4", "--weights", "missing.pt"], 3, "missing.pt: checkpoint file not found"),
    (["--model", "inception_v4", "--weights", "hf-hub:timm/inception_v4.tf_in1k"], 6, "cannot fetch hf-hub:"),
])
def test_export_user_errors_are_one_line(cli, tmp_path, monkeypatch, args, code, message):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)
    res = cli("export", *args, "--out", tmp_path / "o")
    assert res.exit_code == code
    assert message in res.stderr
    assert res.stderr.strip().count("\n") == 0 and "Traceback" not in res.output
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


def test_export_bad_image_folders(cli, tmp_path, labelled_dir):
    empty = tmp_path / "empty"
    empty.mkdir()
    res = cli("export", "--model", "inception_resnet_v1_cls", "--width", "0.125", "--input-size", "75",
              "--verify-images", empty, "--out", tmp_path / "o")
    assert res.exit_code == 4 and "no images found" in res.stderr
    (labelled_dir / "bag" / "bad.png").write_bytes(b"\x89PNG garbage")
    res = cli("export", "--model", "inception_resnet_v1_cls", "--width", "0.125", "--input-size", "75",
              "--verify-images", labelled_dir, "--verify-count", "30", "--out", tmp_path / "o")
    assert res.exit_code == 4 and "bad.png" in res.stderr and "--skip-bad" in res.stderr


def test_checkpoint_with_pickled_objects_is_refused(cli, tmp_path):
    import torch

    path = tmp_path / "obj.pt"
    torch.save({"state_dict": {}, "opt": Image.new("L", (1, 1))}, path)
    res = cli("export", "--model", "inception_v4", "--weights", path, "--out", tmp_path / "o")
    assert res.exit_code == 3 and "refused" in res.stderr and str(path) in res.stderr


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions; covered by the blocked-path case")
def test_unwritable_output_dir_permissions(cli, tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir(mode=0o500)
    res = cli("export", "--model", "inception_v4", "--out", ro / "sub")
    assert res.exit_code == 7


def test_unwritable_output_dir(cli, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    res = cli("export", "--model", "inception_v4", "--out", blocker / "sub")
    assert res.exit_code == 7 and "cannot create output directory" in res.stderr


def test_full_size_inception_v4_exports_at_299(cli, tmp_path):
    res = cli("export", "--model", "inception_v4", "--out", tmp_path)
    assert res.exit_code == 0, res.output
    assert (tmp_path / "inception_v4.299px.fp32.onnx").stat().st_size > 150e6


@pytest.mark.slow
def test_full_size_inception_v4_exports_at_331(cli, tmp_path):
    res = cli("export", "--model", "inception_v4", "--input-size", "331", "--out", tmp_path)
    assert res.exit_code == 0, res.output
    proto = onnx.load(str(tmp_path / "inception_v4.331px.fp32.onnx"), load_external_data=False)
    assert json.loads({p.key: p.value for p in proto.metadata_props}["edgeincep.preprocess"])["input_size"] == 331


def test_validate_command_compares_artifacts_and_writes_json(cli, tmp_path, fmnist_val):
    from edgeincep.pipeline.run import run_pipeline

    run_pipeline("inception_resnet_v2", weights="reference", target="onnxruntime", val_dir=fmnist_val,
                 calib_dir=None, out_dir=tmp_path / "o", limit=50)
    fp32 = tmp_path / "o" / "inception_resnet_v2.75px.fp32.onnx"
    int8 = tmp_path / "o" / "inception_resnet_v2.75px.onnxruntime.int8.onnx"
    res = cli("validate", fp32, int8, "--images", fmnist_val, "--limit", "100", "--json", tmp_path / "v.json")
    assert res.exit_code == 0, res.output
    assert "onnxruntime:int8" in res.stdout
    record = json.loads((tmp_path / "v.json").read_text())
    assert record["images"]["count"] == 100 and record["artifacts"][0]["fmt"] == "onnx-qdq-u8s8"
    assert 0.95 <= record["artifacts"][0]["drift"]["top1_agreement"] <= 1.0


def test_run_command_exit_code_10_when_the_budget_is_exceeded(cli, tmp_path, fmnist_val):
    recipe = tmp_path / "harsh.yaml"
    recipe.write_text("calibration: {count: 1, method: percentile, percentile: 90.001, num_bins: 128}\n"
                      "escalation: {rungs: [ptq]}\nbudget: {max_top1_drop: 0.0, min_agreement: 1.0}\n")
    res = cli("run", "--model", "inception_resnet_v2", "--target", "onnxruntime", "--val", fmnist_val, "--limit", "100",
              "--recipe", recipe, "--out", tmp_path / "o")
    assert res.exit_code == 10
    assert "error: drift budget exceeded: onnxruntime:int8" in res.stderr
    assert (tmp_path / "o" / "report.html").exists()
