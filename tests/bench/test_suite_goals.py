"""The benchmark suite's goal lines (benchmarks/suite.py): how measured rows become met / missed goals."""
from __future__ import annotations

import importlib.util

import pytest

from edgeincep.paths import PROJECT_ROOT


@pytest.fixture(scope="module")
def suite():
    spec = importlib.util.spec_from_file_location("suite", PROJECT_ROOT / "benchmarks" / "suite.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _row(name, target, p50, *, peer=False, agreement=None, x_floor=None, precision="int8"):
    row = {"name": name, "target": target, "precision": precision, "latency": {"p50_ms": p50},
           "throughput": {"images_per_s": 1000 / p50}, "meta": {"peer": "call"} if peer else {}}
    if agreement is not None:
        row["validation"] = {"images": 10000, "top1_agreement": agreement}
    if x_floor is not None:
        row["x_floor"] = x_floor
    return row


def _result(rows, peer_ratios, ratios=()):
    return {"bench": {"results": rows, "peer_ratios": peer_ratios, "ratios": list(ratios)},
            "pipeline": {"seconds": 280.0, "peak_rss_mb": 4500.0}}


def test_ours_against_the_peer_is_met_when_faster_and_agreeing_at_least_as_much(suite):
    full = {"inception_resnet_v2": _result(
        [_row("ours.onnx", "onnxruntime", 8.0, x_floor=1.1), _row("peer.onnx", "onnxruntime", 10.0, peer=True),
         _row("ours.trt.onnx", "tensorrt", 50.0), _row("peer.trt.onnx", "tensorrt", 40.0, peer=True)],
        [{"target": "onnxruntime", "ours": "ours.onnx", "peer": "peer.onnx"},
         {"target": "tensorrt", "ours": "ours.trt.onnx", "peer": "peer.trt.onnx"}])}
    reference = {"inception_v4": _result(
        [_row("o.onnx", "onnxruntime", 1.0, agreement=0.995), _row("p.onnx", "onnxruntime", 0.9, peer=True,
                                                                   agreement=0.997)],
        [{"target": "onnxruntime", "ours": "o.onnx", "peer": "p.onnx"}])}
    goals = {g["goal"]: g for g in suite.goals(full, reference)}
    speed = goals["inception_resnet_v2 onnxruntime INT8 / peer default (peer.onnx) latency"]
    assert (speed["value"], speed["limit"], speed["met"]) == (0.8, 1.0, True)
    agree = goals["reference inception_v4 onnxruntime agreement with FP32, ours vs peer default (10000 images)"]
    assert (agree["value"], agree["at_least"], agree["met"]) == (0.995, 0.997, False)
    assert goals["reference inception_v4 onnxruntime INT8 / peer default latency"]["met"] is False
    # ModelOpt's file is for TensorRT: on this CPU it is reported, never a goal.
    assert not any("tensorrt" in g for g in goals)
    assert goals["inception_resnet_v2 onnxruntime INT8 latency / compute floor"]["met"] is True
    assert goals["Inception-ResNet-v2 pipeline wall time"]["met"] is True
    assert goals["Inception-ResNet-v2 pipeline peak memory"]["met"] is False
