"""`edgeincep bench`: real artifacts of a real (reference) model, measured side by side.

One module-scoped run of the benchmark over ONNX Runtime FP32 + INT8 and OpenVINO FP32 + INT8, and each
runtime's own INT8 recipe with its defaults (the peer rows); each test reads one property of that record.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgeincep.bench.latency import interleaved_latency
from edgeincep.bench.measure import BenchSettings, benchmark
from edgeincep.bench.peers import build_peers
from edgeincep.export.onnx import preprocess_from_metadata, read_metadata
from edgeincep.paths import DEFAULT_CALIBRATION
from edgeincep.pipeline.artifacts import artifact_for_file
from edgeincep.pipeline.export_stage import run_export
from edgeincep.quantize.calibration import load_calibration
from edgeincep.recipes import Recipe
from edgeincep.registry import get_backend


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory) -> list[Path]:
    out = tmp_path_factory.mktemp("bench")
    fp32 = run_export("inception_resnet_v1", weights="reference", out_dir=out).path
    calib = load_calibration(DEFAULT_CALIBRATION, preprocess_from_metadata(read_metadata(fp32)), count=20)
    recipe = Recipe.model_validate({"openvino": {"accuracy_control": False}})
    ort_int8 = get_backend("onnxruntime").build(fp32, calib, recipe, out)
    ov = get_backend("openvino")
    (ov_fp32,) = ov.references(fp32, recipe, out)
    ov_int8 = ov.build(fp32, calib, recipe, out)
    peers = [r["artifact"]["path"] for r in build_peers(fp32, calib, out, ["onnxruntime", "openvino"])]
    return [fp32, ort_int8.path, ov_fp32.path, ov_int8.path, *peers]


@pytest.fixture(scope="module")
def record(artifacts) -> dict:
    arts = [artifact_for_file(p) for p in artifacts]
    return benchmark(arts, BenchSettings(threads=2, batch=4, runs=8, batch_runs=3, warmup=2, serving_seconds=0.5,
                                         serving_rounds=2))


def test_every_artifact_is_measured_with_its_stored_and_executed_precision(record):
    got = [(r["target"], r["precision"], bool(r["meta"].get("peer"))) for r in record["results"]]
    assert got == [("onnxruntime", "fp32", False), ("onnxruntime", "int8", False), ("openvino", "fp32", False),
                   ("openvino", "int8", False), ("onnxruntime", "int8", True), ("openvino", "int8", True)]
    ov_int8 = record["results"][3]
    assert ov_int8["executed_precision"].startswith("int8 (")
    assert record["results"][2]["executed_precision"] == "f32"  # pinned: no silent bf16


def test_latency_percentiles_are_ordered_and_throughput_uses_the_batch(record):
    for r in record["results"]:
        lat, thr = r["latency"], r["throughput"]
        assert 0 < lat["min_ms"] <= lat["p50_ms"] <= lat["p90_ms"] <= lat["p99_ms"]
        assert lat["runs"] == 8 and lat["batch"] == 1
        assert thr["batch"] == 4
        assert thr["images_per_s"] == pytest.approx(4e3 / thr["p50_ms"])


def test_memory_is_probed_in_a_fresh_process_without_torch(record):
    for r in record["results"]:
        mem = r["memory_mb"]
        # A torch import alone is ~400 MB: a probe that inherited or imported it would show it.
        assert not mem["torch_imported"]
        assert 20 < mem["runtime"] < 300, mem
        assert mem["peak"] > mem["runtime"]
        assert r["load_s"] > 0


def test_results_are_put_against_a_measured_compute_floor(record):
    peak = record["peak"]
    assert peak["int8_gmacs_per_s"] > peak["fp32_gmacs_per_s"] > 1
    for r in record["results"]:
        assert r["model"] == "inception_resnet_v1" and r["input_size"] == 75
        assert r["macs"] > 1e6
        # Nothing runs faster than the machine's own GEMM peak: below 1x would be a counting bug.
        assert r["x_floor"] > 1


def test_int8_over_fp32_ratios_are_given_per_runtime(record):
    # One per runtime: our INT8 over its FP32; the peer rows have their own ratios.
    assert sorted(r["target"] for r in record["ratios"]) == ["onnxruntime", "openvino"]
    by = {r["name"]: r for r in record["results"]}
    for ratio in record["ratios"]:
        assert ratio["latency_ratio"] == pytest.approx(
            by[ratio["int8"]]["latency"]["p50_ms"] / by[ratio["fp32"]]["latency"]["p50_ms"])


def test_ours_is_put_against_each_runtimes_own_defaults(record):
    by = {r["name"]: r for r in record["results"]}
    assert sorted(r["target"] for r in record["peer_ratios"]) == ["onnxruntime", "openvino"]
    for r in record["peer_ratios"]:
        ours, peer = by[r["ours"]], by[r["peer"]]
        assert ".peer." in peer["name"] and ".peer." not in ours["name"] and ours["target"] == peer["target"]
        assert r["peer_name"] == {"onnxruntime": "ONNX Runtime quantize_static, defaults",
                                  "openvino": "NNCF nncf.quantize, defaults"}[r["target"]]
        assert r["latency_ratio"] == pytest.approx(ours["latency"]["p50_ms"] / peer["latency"]["p50_ms"])
        assert r["throughput_ratio"] == pytest.approx(
            ours["throughput"]["images_per_s"] / peer["throughput"]["images_per_s"])


def test_openvino_rows_carry_the_throughput_hint_rate_and_others_none(record):
    for r in record["results"]:
        if r["target"] != "openvino":
            assert "serving" not in r
            continue
        s = r["serving"]
        assert s["mode"] == "OpenVINO THROUGHPUT hint" and s["streams"] >= 1 and s["requests"] >= s["streams"]
        assert len(s["rounds"]) == 2 and s["images_per_s"] == pytest.approx(sorted(s["rounds"])[0] / 2
                                                                             + sorted(s["rounds"])[1] / 2)
        # Several single-image requests in flight: a rate, not a re-labelled latency.
        assert s["images"] >= 2 * s["requests"]
    ratio = next(r for r in record["peer_ratios"] if r["target"] == "openvino")
    assert ratio["serving_ratio"] > 0


def test_openvino_peer_is_nncf_defaults_on_the_same_calibration_images(record):
    peer = next(r for r in record["results"] if r["target"] == "openvino" and r["meta"].get("peer"))
    assert peer["meta"]["peer"].startswith("nncf.quantize(ov.convert_model(onnx), nncf.Dataset(images))")
    assert peer["meta"]["calibration_images"] == 20 and peer["executed_precision"].startswith("int8 (")


def test_machine_and_library_versions_are_recorded(record):
    m = record["machine"]
    assert m["threads"] == 2 and m["cpu"]["logical_cpus"] >= 1
    assert m["libraries"]["onnxruntime"] != "absent" and m["libraries"]["openvino"] != "absent"
    assert record["schema"] == "edgeincep.bench/1"


class _Recorder:
    """Records the order predictors are called in: the interleaving is what is under test."""

    def __init__(self, name: str, calls: list[str]):
        self.name, self.calls, self.executed_precision = name, calls, "fp32"

    def predict(self, x):
        self.calls.append(self.name)
        return x


def test_rounds_interleave_and_rotate_so_no_artifact_always_runs_first():
    import numpy as np

    calls: list[str] = []
    preds = [_Recorder(n, calls) for n in "ABC"]
    interleaved_latency(preds, np.zeros((1, 1), np.float32), runs=3, warmup=0)
    assert calls == list("ABCBCACAB")


def test_cli_writes_json_and_an_html_page_with_plots(cli, artifacts, tmp_path):
    res = cli("bench", artifacts[0], artifacts[1], "--runs", "3", "--batch-runs", "2", "--batch", "2",
              "--no-memory", "--json", tmp_path / "b.json", "--html", tmp_path / "b.html")
    assert res.exit_code == 0, res.output
    rec = json.loads((tmp_path / "b.json").read_text())
    assert [r["precision"] for r in rec["results"]] == ["fp32", "int8"]
    assert "memory_mb" not in rec["results"][0]
    res = cli("bench", artifacts[3], artifacts[5], "--runs", "2", "--batch-runs", "1", "--batch", "2", "--no-memory",
              "--serving-seconds", "0.2")
    assert res.exit_code == 0, res.output
    assert "(peer default)" in res.output and "ours / NNCF nncf.quantize, defaults: latency" in res.output
    page = (tmp_path / "b.html").read_text()
    assert page.count("data:image/png;base64,") == 2 and "INT8/FP32 latency" in page


def test_cli_refuses_bad_input_with_one_line(cli, artifacts, tmp_path):
    res = cli("bench", tmp_path / "missing.onnx")
    assert res.exit_code == 2 and "missing.onnx: artifact not found" in res.output
    res = cli("bench", artifacts[0], "--batch", "0")
    assert res.exit_code == 2 and "--batch must be at least 1" in res.output
    broken = tmp_path / "broken.fp32.onnx"
    broken.write_bytes(Path(artifacts[0]).read_bytes()[:5000])
    res = cli("bench", broken, "--no-memory")
    assert res.exit_code == 2 and "broken.fp32.onnx: not a readable ONNX model" in res.output
    (tmp_path / "m.tflite").write_bytes(b"x")
    res = cli("bench", tmp_path / "m.tflite")
    assert res.exit_code == 2 and "m.tflite: not a TFLite flatbuffer" in res.output
    (tmp_path / "m.engine").write_bytes(b"x")
    res = cli("bench", tmp_path / "m.engine")
    assert res.exit_code == 2 and "unknown artifact type '.engine'" in res.output


def test_precision_of_a_file_without_sidecar_is_read_from_the_graph(artifacts, tmp_path):
    import shutil

    for src, want in ((artifacts[0], "fp32"), (artifacts[1], "int8")):
        bare = tmp_path / f"bare.{want}.onnx"
        shutil.copy(src, bare)
        assert artifact_for_file(bare).precision == want
    xml = tmp_path / "bare.xml"
    shutil.copy(artifacts[3], xml)
    shutil.copy(Path(artifacts[3]).with_suffix(".bin"), xml.with_suffix(".bin"))
    assert artifact_for_file(xml).precision == "int8"
