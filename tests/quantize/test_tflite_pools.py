"""TFLite INT8 with Inception's pool branches moved after their 1x1 convolutions: the fused RELU the
converter then puts on AVERAGE_POOL_2D (which Coral's compiler refuses) becomes a RELU operator after
the pool (or nothing, where the quantization already clamps at zero), changing no output bit."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgeincep.quantize import tflite
from edgeincep.quantize.calibration import CalibrationSet
from edgeincep.quantize.tflite import TfliteConfig, unfuse_pool_relu
from edgeincep.quantize.tflite_calibrate import calibrate
from edgeincep.quantize.tflite_worker import convert
from edgeincep.targets.tflite_graph import read_graph

pytest.importorskip("tensorflow")
SIZE = 16


def _pool_branch_model(path) -> None:
    """conv3x3 -> relu -> avgpool 3x3 (count_include_pad=0) -> conv1x1 -> relu -> global pool -> classifier."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.normal(0, 0.3, s).astype(np.float32), n) for n, s in
             [("w1", (8, 3, 3, 3)), ("b1", (8,)), ("w2", (4, 8, 1, 1)), ("b2", (4,)), ("w3", (10, 4)), ("b3", (10,))]]
    nodes = [helper.make_node("Conv", ["input", "w1", "b1"], ["c1"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c1"], ["r1"]),
             helper.make_node("AveragePool", ["r1"], ["p"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], count_include_pad=0),
             helper.make_node("Conv", ["p", "w2", "b2"], ["c2"], kernel_shape=[1, 1]),
             helper.make_node("Relu", ["c2"], ["r2"]),
             helper.make_node("GlobalAveragePool", ["r2"], ["g"]),
             helper.make_node("Flatten", ["g"], ["f"]),
             helper.make_node("Gemm", ["f", "w3", "b3"], ["logits"], transB=1)]
    graph = helper.make_graph(nodes, "pool_branch",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, SIZE, SIZE])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(path))


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    path = tmp_path_factory.mktemp("pools") / "branch.fp32.onnx"
    _pool_branch_model(path)
    x = np.random.default_rng(1).standard_normal((24, 3, SIZE, SIZE)).astype(np.float32)
    return path, CalibrationSet(x=x, paths=[f"img{i}.png" for i in range(24)], requested=24, skipped=0)


def _pools(path) -> list[dict]:
    g = read_graph(path)
    return [o.options for o in g.ops if o.name == "AVERAGE_POOL_2D"]


def test_int8_pools_are_moved_and_carry_no_fused_activation(model, tmp_path):
    fp32, calib = model
    jobs = [(TfliteConfig("fp32", commute_pools=True), tmp_path / "m.fp32.tflite"),
            (TfliteConfig("int8", "uint8", commute_pools=True), tmp_path / "m.tflite")]
    infos = convert(fp32, jobs, input_size=SIZE, metadata={}, calib=calib, calib_digest="t1")
    assert infos[0]["pools_moved"] == 1 and infos[0]["commute_pools"] is True
    g = read_graph(tmp_path / "m.tflite")
    assert [p["fusedActivationFunction"] for p in _pools(tmp_path / "m.tflite")] == [0]
    names = [o.name for o in g.ops]
    assert names[names.index("AVERAGE_POOL_2D") + 1] == "RELU"  # the activation, as its own operator
    # the moved pool computes what the original did (float conversion compared with the ONNX)
    from ai_edge_litert.interpreter import Interpreter

    from edgeincep.export.onnx import run_onnx

    it = Interpreter(model_path=str(tmp_path / "m.fp32.tflite"))
    it.allocate_tensors()
    i, o = it.get_input_details()[0], it.get_output_details()[0]
    it.set_tensor(i["index"], np.ascontiguousarray(calib.x[:1].transpose(0, 2, 3, 1)))
    it.invoke()
    np.testing.assert_allclose(it.get_tensor(o["index"]), run_onnx(fp32, calib.x[:1]), rtol=1e-4, atol=1e-5)


def test_pools_stay_where_they_are_by_default(model, tmp_path):
    fp32, calib = model
    assert TfliteConfig().commute_pools is False
    infos = convert(fp32, [(TfliteConfig("fp32"), tmp_path / "k.tflite")], input_size=SIZE,
                    metadata={}, calib=calib, calib_digest="t2")
    assert "pools_moved" not in infos[0] or infos[0]["pools_moved"] is None
    g = read_graph(tmp_path / "k.tflite")
    names = [o.name for o in g.ops]
    assert names.index("AVERAGE_POOL_2D") < max(i for i, n in enumerate(names) if n == "CONV_2D")


def test_unfusing_the_relu_changes_no_output_bit(model, tmp_path):
    from tensorflow.lite.python.convert import mlir_quantize

    from edgeincep.quantize.rewrite import pool_after_pointwise_conv
    from edgeincep.targets.tflite import LiteRtPredictor

    fp32, calib = model
    m = onnx.load(str(fp32))
    assert pool_after_pointwise_conv(m) == 1
    moved = tmp_path / "moved.onnx"
    onnx.save(m, str(moved))
    flo = tflite.float_model(tflite.onnx_to_keras(moved), SIZE)
    fused = bytes(mlir_quantize(calibrate(flo, calib.x.transpose(0, 2, 3, 1), workers=1)))
    assert [p["fusedActivationFunction"] for p in _pools(fused)] == [1]  # what the converter makes: RELU on the pool
    plain = unfuse_pool_relu(fused)
    assert [p["fusedActivationFunction"] for p in _pools(plain)] == [0]
    np.testing.assert_array_equal(LiteRtPredictor(fused).predict(calib.x), LiteRtPredictor(plain).predict(calib.x))
