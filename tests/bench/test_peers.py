"""Peer defaults: each runtime's own INT8 recipe, built from our FP32 ONNX and calibration images with its
defaults and nothing of ours, so the benchmark can put it beside what edgeincep builds."""
from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from edgeincep.bench.peers import build_peers, peer_targets
from edgeincep.pipeline.artifacts import artifact_for_file
from edgeincep.registry import get_backend, list_backends
from edgeincep.validate.ort import reference_predictor


@pytest.fixture(scope="module")
def peers(reference_fp32, reference_calib, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("peers")
    # NNCF's peer is built (and benched) in test_measure.py, on fewer images.
    records = build_peers(reference_fp32, reference_calib, out, ["onnxruntime", "tflite"])
    return {r["target"]: r for r in records}


def _agreement(fp32, art, x) -> float:
    ref = reference_predictor(fp32).predict(x).argmax(1)
    got = get_backend(art.target).load(art).predict(x).argmax(1)
    return float(np.mean(ref == got))


def test_every_backend_with_a_vendor_recipe_names_it():
    named = {n: get_backend(n).peer for n in list_backends() if get_backend(n).peer}
    assert set(named) == {"onnxruntime", "openvino", "tflite", "tensorrt"}
    assert peer_targets() == [n for n in list_backends() if n in named]


def test_peers_are_recorded_int8_artifacts_that_bench_and_validate_take(peers, reference_fp32, reference_calib):
    for target, rec in peers.items():
        art = artifact_for_file(rec["artifact"]["path"])  # found again through the record beside the file
        assert (art.target, art.precision) == (target, "int8")
        assert art.meta["peer"] and art.meta["calibration_images"] == 300
        assert get_backend(target).metadata(art)["edgeincep.model"] == "inception_resnet_v1"
        # A real quantization of the same network: it mostly agrees with FP32 on the calibration images.
        assert _agreement(reference_fp32, art, reference_calib.x[:64]) > 0.8


def test_onnxruntime_peer_is_quantize_static_defaults_not_our_settings(peers, build_int8):
    graph = onnx.load(peers["onnxruntime"]["artifact"]["path"]).graph
    inits = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    q = [n for n in graph.node if n.op_type == "QuantizeLinear"]
    # Its defaults: int8 activations (ours: uint8), one scale per weight tensor (ours: per channel).
    assert q and all(inits[n.input[2]].dtype == np.int8 for n in q)
    weight_dq = [n for n in graph.node if n.op_type == "DequantizeLinear" and n.input[0] in inits
                 and inits[n.input[0]].ndim == 4]
    assert weight_dq and all(inits[n.input[1]].size == 1 for n in weight_dq)
    ours = onnx.load(str(build_int8("onnxruntime").path)).graph
    ours_inits = {t.name: numpy_helper.to_array(t) for t in ours.initializer}
    assert any(ours_inits[n.input[2]].dtype == np.uint8 for n in ours.node if n.op_type == "QuantizeLinear")


def test_tflite_peer_is_tensorflows_converter_which_ours_matches_where_no_pool_is_rewritten(peers, tflite_int8,
                                                                                            reference_calib):
    """Inception-ResNet-v1 has no 3x3 average pools, the one place our INT8 .tflite departs from TensorFlow's
    converter (they become depthwise convolutions for XNNPACK): there the peer and ours are one model."""
    from edgeincep.litert.base import LiteRtPredictor
    from edgeincep.litert.graph import read_graph

    peer, ours = read_graph(peers["tflite"]["artifact"]["path"]), read_graph(tflite_int8.path)
    # the same operators (two conversions may list independent branches in a different order) computing the
    # same outputs, image for image
    assert sorted(op.name for op in peer.ops) == sorted(op.name for op in ours.ops)
    assert peer.tensors[peer.inputs[0]].dtype == "INT8"
    x = reference_calib.x[:8]
    np.testing.assert_array_equal(LiteRtPredictor(peers["tflite"]["artifact"]["path"]).predict(x),
                                  LiteRtPredictor(tflite_int8.path).predict(x))


def test_cli_builds_the_peers_it_is_asked_for_and_writes_a_record(cli, reference_fp32, tmp_path):
    res = cli("peers", reference_fp32, "--out", tmp_path / "p", "--count", "16", "--target", "onnxruntime",
              "--json", tmp_path / "peers.json")
    assert res.exit_code == 0, res.output
    rec = json.loads((tmp_path / "peers.json").read_text())
    assert rec["calibration_images"] == 16 and [p["target"] for p in rec["peers"]] == ["onnxruntime"]
    assert (tmp_path / "p" / "inception_resnet_v1.75px.peer.onnxruntime.int8.onnx").is_file()


def test_cli_refuses_bad_input_with_one_line(cli, reference_fp32, tmp_path):
    res = cli("peers", tmp_path / "missing.onnx", "--out", tmp_path / "p")
    assert res.exit_code == 2 and "missing.onnx: FP32 ONNX not found" in res.output
    res = cli("peers", reference_fp32, "--out", tmp_path / "p", "--target", "edgetpu")
    assert res.exit_code == 2 and "target 'edgetpu' has no peer-default recipe" in res.output
    res = cli("peers", reference_fp32, "--out", tmp_path / "p", "--count", "0")
    assert res.exit_code == 2 and "--count must be at least 1" in res.output
    assert not (tmp_path / "p").exists()
