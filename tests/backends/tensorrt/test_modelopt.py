"""ModelOpt Q/DQ INT8 for TensorRT: the placement follows TensorRT's rules, metadata survives, layers can be
kept in float, and ModelOpt's process-wide patches of onnxruntime.quantization never leak into ours."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from edgeincep.backends.tensorrt.modelopt import (
    ModelOptConfig,
    exclusion_patterns,
    int8_share,
    quantize_qdq,
    tensorrt_rule_violations,
    unavailable_reason,
)
from edgeincep.core.errors import UserError
from edgeincep.export.onnx import preprocess_from_metadata, read_metadata, run_onnx
from edgeincep.paths import DEFAULT_CALIBRATION
from edgeincep.pipeline.export_stage import run_export
from edgeincep.quantize.calibration import CalibrationSet, load_calibration

REASON = unavailable_reason()
pytestmark = pytest.mark.skipif(REASON is not None, reason=REASON or "")


@pytest.fixture(scope="module")
def fp32(tmp_path_factory) -> Path:
    return run_export("inception_resnet_v1", weights="reference", out_dir=tmp_path_factory.mktemp("mo")).path


@pytest.fixture(scope="module")
def calib(fp32):
    return load_calibration(DEFAULT_CALIBRATION, preprocess_from_metadata(read_metadata(fp32)), count=40, seed=1)


@pytest.fixture(scope="module")
def qdq(fp32, calib) -> dict:
    """The shipped fp16 file and its fp32 twin, from one ModelOpt run (max calibration: the quicker one)."""
    out = fp32.with_name("m.trt.onnx")
    twin = fp32.with_name("m.trt.fp32hp.onnx")
    info = quantize_qdq(fp32, out, calib, ModelOptConfig(method="max"), metadata=read_metadata(fp32), twin=twin)
    return {"fp16": out, "fp32": twin, "info": info}


def _graph(path: Path):
    return onnx.load(str(path)).graph


@pytest.mark.parametrize("hp", ["fp16", "fp32"])
def test_modelopt_output_follows_tensorrt_quantization_rules(qdq, hp):
    graph = _graph(qdq[hp])
    inits = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    producer = {o: n for n in graph.node for o in n.output}
    qs = [n for n in graph.node if n.op_type == "QuantizeLinear"]
    dqs = [n for n in graph.node if n.op_type == "DequantizeLinear"]
    assert len(qs) > 100 and len(qs) == len(dqs)  # every conv input and weight, in pairs
    # Symmetric int8: every zero point is an int8 zero.
    assert all(inits[q.input[2]].dtype == np.int8 and not inits[q.input[2]].any() for q in qs)
    # No int32 bias DequantizeLinear: biases stay float; every DQ reads a Q.
    assert all(producer[d.input[0]].op_type == "QuantizeLinear" for d in dqs)
    convs = [n for n in graph.node if n.op_type == "Conv"]
    assert all(n.input[2] in inits and inits[n.input[2]].dtype == (np.float16 if hp == "fp16" else np.float32)
               for n in convs if len(n.input) > 2)
    # TensorRT has int8 kernels only for convolutions with >= 16 channels (or multiples of 8): ModelOpt leaves the
    # narrowest convs of these 1/8-width nets in float, and quantizes every other one.
    float_convs = [c for c in convs if c.input[1] not in producer]
    assert len(float_convs) < 0.2 * len(convs)
    assert all(min(inits[c.input[1]].shape[:2]) < 16 for c in float_convs)
    # Per-channel weights: one scale per output channel.
    weight_dq = [producer[c.input[1]] for c in convs if c.input[1] in producer]
    assert all(inits[d.input[1]].ndim == 1 and inits[d.input[1]].size == inits[producer[d.input[0]].input[0]].shape[0]
               for d in weight_dq)
    # The classifier reads float inputs.
    gemms = [n for n in graph.node if n.op_type in ("Gemm", "MatMul")]
    assert gemms and all(producer.get(i) is None or producer[i].op_type != "DequantizeLinear" for g in gemms
                         for i in g.input)
    assert tensorrt_rule_violations(qdq[hp]) == []


def test_the_rule_checker_catches_onnx_runtime_default_qdq(fp32, calib, tmp_path):
    """ORT's quantize_static defaults break every rule TensorRT cares about, so the checker is not vacuous."""
    from edgeincep.backends.onnxruntime.quantize import OrtQuantConfig, quantize_onnx

    out = tmp_path / "ort.onnx"
    quantize_onnx(fp32, out, calib, OrtQuantConfig(fmt="u8s8"))
    found = " | ".join(tensorrt_rule_violations(out))
    for rule in ("int32 DequantizeLinear", "QuantizeLinear without an int8 zero point", "quantizes the output of Conv",
                 "Concat inputs dequantized with", "(classifier) reads a dequantized input"):
        assert rule in found, rule


def test_high_precision_fp16_halves_the_float_parts_and_keeps_float32_io(qdq):
    fp16, fp32 = _graph(qdq["fp16"]), _graph(qdq["fp32"])
    assert qdq["fp16"].stat().st_size < 0.75 * qdq["fp32"].stat().st_size
    for g in (fp16, fp32):  # the engine and the runners feed float32 images either way
        assert g.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
        assert g.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert {t.data_type for t in fp16.initializer} >= {onnx.TensorProto.FLOAT16}
    assert onnx.TensorProto.FLOAT16 not in {t.data_type for t in fp32.initializer}


def test_qdq_models_stay_close_to_fp32_and_to_each_other(fp32, qdq, calib):
    ref = run_onnx(fp32, calib.x)
    out16, out32 = run_onnx(qdq["fp16"], calib.x), run_onnx(qdq["fp32"], calib.x)
    assert (out16.argmax(1) == ref.argmax(1)).mean() >= 0.95
    assert (out16.argmax(1) == out32.argmax(1)).mean() >= 0.975
    assert not np.array_equal(out16, out32)  # really two files with different float precision


def test_metadata_and_report_facts_are_carried(fp32, qdq):
    meta, src = read_metadata(qdq["fp16"]), read_metadata(fp32)
    for key in ("edgeincep.labels", "edgeincep.preprocess", "edgeincep.checkpoint_sha256", "edgeincep.model"):
        assert meta[key] == src[key]
    assert "max calibration" in meta["edgeincep.quantization"] and "fp16 high precision" in meta["edgeincep.quantization"]
    info = qdq["info"]
    assert info["calibration_images"] == 40 and info["method"] == "max" and info["quantizer_peak_rss_mb"] > 100
    assert not list(fp32.parent.glob("*.quant.onnx")) and not list(fp32.parent.glob(".*.part"))  # no strays


def test_excluded_nodes_stay_float_and_names_are_matched_exactly(fp32, calib, qdq, tmp_path):
    keep = "/conv2d_1a/conv/Conv"
    out = tmp_path / "keep.onnx"
    few = CalibrationSet(calib.x[:8], calib.paths[:8], 8, 0)
    quantize_qdq(fp32, out, few, ModelOptConfig(method="max", high_precision_dtype="fp32", exclude_nodes=[keep]))
    graph = _graph(out)
    producer = {o: n for n in graph.node for o in n.output}
    node = next(n for n in graph.node if n.name == keep)
    assert all(producer.get(i) is None or producer[i].op_type != "DequantizeLinear" for i in node.input)
    assert int8_share(out)["int8_convs"] == int8_share(qdq["fp32"])["int8_convs"] - 1  # that one node only
    assert qdq["info"]["int8_convs"] == int8_share(qdq["fp32"])["int8_convs"]
    assert read_metadata(out)["edgeincep.float_nodes"] == keep
    # ModelOpt matches patterns with re.match, a prefix match: ours are anchored.
    (pattern,) = exclusion_patterns(["/a/Conv"])
    assert re.match(pattern, "/a/Conv") and not re.match(pattern, "/a/Conv_1") and not re.match(pattern, "/a/ConvX")


def test_one_calibration_serves_both_files_exactly_as_modelopt_would_write_fp16(fp32, calib, qdq, tmp_path):
    """The twin run calibrates once (fp32) and derives fp16 with ModelOpt's own precision pass; asked
    for fp16 alone, ModelOpt calibrates and converts itself: the files are byte-identical."""
    alone = tmp_path / "alone.onnx"
    quantize_qdq(fp32, alone, calib, ModelOptConfig(method="max"), metadata=read_metadata(fp32))
    assert alone.read_bytes() == qdq["fp16"].read_bytes()


def test_modelopt_patches_do_not_leak_into_this_process(qdq):
    """ModelOpt replaces onnxruntime.quantization's calibrators process-wide; it runs in a child, so ours are intact."""
    from onnxruntime.quantization import calibrate

    assert qdq["info"]["quantize_seconds"] > 0  # ModelOpt did run
    assert calibrate.create_calibrator.__module__ == "onnxruntime.quantization.calibrate"
    assert calibrate.MinMaxCalibrater.collect_data.__module__ == "onnxruntime.quantization.calibrate"


def test_bad_settings_and_inputs_are_one_line_user_errors(tmp_path, calib):
    with pytest.raises(UserError, match="unknown ModelOpt calibration method 'percentile'"):
        ModelOptConfig(method="percentile")
    with pytest.raises(UserError, match="unknown high-precision dtype 'bf16'"):
        ModelOptConfig(high_precision_dtype="bf16")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not an onnx file")
    with pytest.raises(UserError, match=r"ModelOpt could not quantize junk\.onnx") as e:
        quantize_qdq(junk, tmp_path / "q.onnx", calib, ModelOptConfig(method="max"))
    assert "\n" not in str(e.value) and not (tmp_path / "q.onnx").exists()
