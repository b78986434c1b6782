"""Edge TPU target: a full-integer model with uint8 I/O, and a compatibility report that reads the
real .tflite op by op against Coral's documented rules, names the op where the compiler would cut
the graph, and uses edgetpu_compiler's own log when the compiler is installed."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from edgeincep.backends.edgetpu import compat as edgetpu_compat
from edgeincep.backends.edgetpu.backend import COMPILER, compat_report_path, compile_for_edgetpu, parse_compiler_log
from edgeincep.litert.graph import read_graph
from edgeincep.recipes import Recipe
from edgeincep.registry import get_backend
from edgeincep.validate.ort import OrtPredictor

TPU = get_backend("edgetpu")


@pytest.fixture()
def fp32(reference_fp32):
    return reference_fp32


@pytest.fixture()
def built(build_int8, reference_calib):
    return build_int8("edgetpu"), reference_calib


def test_edgetpu_model_is_full_integer_with_uint8_io(built):
    art, _ = built
    g = read_graph(art.path)
    assert [g.tensors[i].dtype for i in g.inputs + g.outputs] == ["UINT8", "UINT8"]
    assert {t.dtype for t in g.tensors if not t.constant} <= {"INT8", "UINT8"}
    assert all(t.signature == t.shape and t.shape[0] == 1 for t in g.tensors if not t.constant and t.shape)


def test_it_shares_the_tflite_models_calibration(built, build_int8):
    """Both come from one calibrated integer model (int32 biases carry the calibrated activation
    scales): only their boundary types differ."""
    import numpy as np

    def conv_constants(path):
        g = read_graph(path)
        return [g.constant(i) for op in g.ops if op.name == "CONV_2D" for i in op.inputs[1:]]

    ours, theirs = conv_constants(built[0].path), conv_constants(build_int8("tflite").path)
    assert len(ours) > 100
    assert all(np.array_equal(a, b) for a, b in zip(ours, theirs, strict=True))


def test_it_keeps_average_pools_whatever_the_tflite_recipe_says():
    """Coral's compiler maps int8 AVERAGE_POOL_2D: the depthwise form LiteRT's CPU wants would cost it an op."""
    from edgeincep.recipes import Recipe

    recipe = Recipe.model_validate({"tflite": {"depthwise_pools": True, "io": "int8"}})
    assert recipe.tflite.depthwise_pools is True
    s = TPU._settings(recipe)
    assert (s.depthwise_pools, s.io) == (False, "uint8")


def test_it_runs_on_the_cpu_and_agrees_with_fp32(fp32, built):
    art, calib = built
    pred = TPU.load(art, threads=2)
    assert pred.executed_precision.startswith("int8") and "uint8 I/O" in pred.executed_precision
    agree = (pred.predict(calib.x).argmax(1) == OrtPredictor(fp32).predict(calib.x).argmax(1)).mean()
    assert agree >= 0.95


def test_compatibility_report_is_written_and_every_op_maps(built):
    art, _ = built
    report = json.loads(compat_report_path(art.path).read_text())
    assert report["compatible"] and report["split_at"] is None, report
    assert report["ops_mappable_before_split"] == report["ops_total"] > 100
    assert {o["op"] for o in report["ops"]} >= {"CONV_2D", "CONCATENATION", "ADD"}
    assert all(o["status"] == "ok" for o in report["ops"])
    assert art.meta["edgetpu"]["summary"] == f"all {report['ops_total']} ops can map to the Edge TPU"


def test_float_model_is_flagged_at_its_first_op(reference_fp32):
    fp32, _ = get_backend("tflite").references(reference_fp32, Recipe(), reference_fp32.parent)
    report = edgetpu_compat.check(read_graph(fp32.path))
    assert not report["compatible"]
    assert report["split_at"]["index"] == 0 and "FLOAT32" in report["split_at"]["reason"]
    assert any("not 8-bit" in p for p in report["tensor_problems"])
    assert "the rest runs on the CPU" in edgetpu_compat.summary(report)


def test_op_newer_than_the_last_compiler_splits_the_graph(built):
    art, _ = built
    g = read_graph(art.path)
    conv = next(o for o in g.ops if o.name == "CONV_2D")
    conv.version = edgetpu_compat.SUPPORTED["CONV_2D"][0] + 1
    report = edgetpu_compat.check(g)
    assert report["split_at"]["index"] == conv.index and "newer than the compiler" in report["split_at"]["reason"]
    assert report["ops_mappable_before_split"] == conv.index


def test_int8_io_model_gets_a_uint8_warning_but_still_maps(build_int8):
    report = edgetpu_compat.check(read_graph(build_int8("tflite").path))
    assert report["compatible"]
    assert report["warnings"] and all("expect UINT8" in w for w in report["warnings"])


def test_without_the_compiler_the_report_says_why(built):
    if shutil.which(COMPILER):
        pytest.skip(f"{COMPILER} is installed here; the compiled-model test below covers it")
    art, _ = built
    res = compile_for_edgetpu(art.path)
    assert res == {"ran": False, "reason": res["reason"]} and COMPILER in res["reason"]


def test_real_compiler_maps_the_model(built):
    if not shutil.which(COMPILER):
        pytest.skip(f"{COMPILER} is not on PATH (it ships only in Coral's apt repository)")
    art, _ = built
    res = compile_for_edgetpu(art.path)
    assert res["returncode"] == 0 and Path(res["model"]).is_file()
    assert int(res["on_tpu"]) > 0 and res["ops"]


def test_compiler_log_parser_reads_the_documented_layout():
    # The layout of edgetpu_compiler 16's log, as printed with --show_operations.
    log = """Edge TPU Compiler version 16.0.384591198
Started a compilation timeout timer of 180 seconds.

Model compiled successfully in 1320 ms.

Input model: m.tflite
Input size: 20.05MiB
Output model: m_edgetpu.tflite
Output size: 20.08MiB
On-chip memory used for caching model parameters: 6.91MiB
On-chip memory remaining for caching model parameters: 0.00B
Off-chip memory used for streaming uncached model parameters: 13.03MiB
Number of Edge TPU subgraphs: 1
Total number of operations: 139
Operation log: m_edgetpu.log

Model successfully compiled but not all operations are supported by the Edge TPU. A percentage of the model
Number of operations that will run on Edge TPU: 138
Number of operations that will run on CPU: 1

Operator                       Count      Status

CONV_2D                        95         Mapped to Edge TPU
AVERAGE_POOL_2D                1          Mapped to Edge TPU
SOFTMAX                        1          Operation is working on an unsupported data type
"""
    res = parse_compiler_log(log)
    assert res["compiler_version"] == "16.0.384591198"
    assert (res["on_tpu"], res["on_cpu"], res["subgraphs"]) == ("138", "1", "1")
    assert res["on_chip_memory"] == "6.91MiB" and res["off_chip_memory"] == "13.03MiB"
    assert res["ops"][0] == {"op": "CONV_2D", "count": 95, "status": "Mapped to Edge TPU"}
    assert res["ops"][-1]["status"] == "Operation is working on an unsupported data type"


def test_pipeline_run_reports_edge_tpu_compatibility(reference_fp32, built, fmnist_val):
    from edgeincep.pipeline.run import run_pipeline

    out = reference_fp32.parent  # the builds above are reused: same export, recipe and calibration images
    report = run_pipeline("inception_resnet_v1", weights="reference", target="edgetpu", val_dir=fmnist_val,
                          calib_dir=None, out_dir=out, limit=200)
    (art,) = report["validation"]["artifacts"]
    assert (art["target"], art["precision"], art["fmt"]) == ("edgetpu", "int8", "tflite-int8-uint8-io")
    assert art["meta"]["cached"] and report["passed"]
    assert art["meta"]["edgetpu"]["compatible"]
    assert "Edge TPU (edgetpu:int8): all" in (out / "report.md").read_text()
    page = (out / "report.html").read_text()
    assert "Edge TPU compatibility" in page and "CONV_2D" in page and "not compiled" in page
    # The gate passed, so the run wrote the Coral bundle and both reports say where.
    assert art["bundle"]["archive"].endswith(".edgetpu.coral.tar.gz") and Path(art["bundle"]["archive"]).is_file()
    assert "Device bundles" in page and "Bundle (edgetpu:int8)" in (out / "report.md").read_text()
