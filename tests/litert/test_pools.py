"""How TFLite INT8 models average 3x3 windows (Inception's pool branches).

For LiteRT's CPU the pools become a depthwise convolution and a multiplication by border factors,
which XNNPACK runs in int8 (it has no int8 average pool); the Edge TPU model keeps AVERAGE_POOL_2D.
With the pools moved after their 1x1 convolutions (recipe option), the fused RELU the converter puts
on an AVERAGE_POOL_2D (which Coral's compiler refuses) becomes a RELU operator after the pool (or
nothing, where the quantization already clamps at zero), changing no output bit."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgeincep.litert import convert as tflite
from edgeincep.litert.calibrate import calibrate
from edgeincep.litert.convert import TfliteConfig
from edgeincep.litert.graph import read_graph
from edgeincep.litert.rewrite import border_factors, pools_as_depthwise, unfuse_pool_relu
from edgeincep.litert.worker import convert
from edgeincep.quantize.calibration import CalibrationSet

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
            (TfliteConfig("int8", "uint8", commute_pools=True, depthwise_pools=False), tmp_path / "m.tflite")]
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

    from edgeincep.litert.base import LiteRtPredictor
    from edgeincep.quantize.rewrite import pool_after_pointwise_conv

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


# --- pools as depthwise convolutions ------------------------------------------------------------

def _same_window_mean(x: np.ndarray, k: int) -> np.ndarray:
    """Stride-1 SAME mean over the valid pixels of each k x k window (TensorFlow pads the odd pixel after)."""
    h, w = x.shape
    before = (k - 1) // 2
    out = np.empty_like(x)
    for i in range(h):
        for j in range(w):
            win = x[max(0, i - before):i - before + k, max(0, j - before):j - before + k]
            out[i, j] = win.mean()
    return out


@pytest.mark.parametrize(("h", "w", "k"), [(5, 5, 3), (8, 3, 3), (7, 9, 5), (6, 6, 2), (1, 4, 3)])
def test_border_factors_turn_zero_padded_window_means_into_means_over_valid_pixels(h, w, k):
    x = np.random.default_rng(h * w * k).random((h, w))
    before = (k - 1) // 2
    padded = np.pad(x, ((before, k - 1 - before), (before, k - 1 - before)))
    zero_padded_mean = np.array([[padded[i:i + k, j:j + k].sum() / (k * k) for j in range(w)] for i in range(h)])
    np.testing.assert_allclose(zero_padded_mean * border_factors(h, w, k, k), _same_window_mean(x, k), rtol=1e-12)


def test_3x3_factors_are_one_inside_and_larger_on_the_border():
    f = border_factors(35, 35, 3, 3)
    assert f[1:-1, 1:-1].min() == f[1:-1, 1:-1].max() == 1.0
    assert f[0, 5] == f[5, 0] == f[-1, 5] == 1.5 and f[0, 0] == f[-1, -1] == 2.25


@pytest.fixture(scope="module")
def float_flatbuffer(model):
    fp32, _ = model
    return tflite.float_model(tflite.onnx_to_keras(fp32), SIZE)


def _op_names(flatbuffer) -> list[str]:
    return [o.name for o in read_graph(flatbuffer).ops]


def test_depthwise_pools_compute_what_the_pool_did(model, float_flatbuffer):
    from edgeincep.litert.base import LiteRtPredictor

    _, calib = model
    assert "AVERAGE_POOL_2D" in _op_names(float_flatbuffer)
    rewritten, replaced = pools_as_depthwise(float_flatbuffer)
    assert replaced == 1
    names = _op_names(rewritten)
    assert "AVERAGE_POOL_2D" not in names and names.count("DEPTHWISE_CONV_2D") == 1 and names.count("MUL") == 1
    np.testing.assert_allclose(LiteRtPredictor(rewritten).predict(calib.x),
                               LiteRtPredictor(float_flatbuffer).predict(calib.x), rtol=1e-5, atol=1e-5)
    assert pools_as_depthwise(rewritten) == (rewritten, 0)  # nothing left to replace: returned as it was


@pytest.mark.filterwarnings("ignore:.*experimental_preserve_all_tensors")
def test_window_sums_get_a_calibration_range_that_holds_every_value(model, float_flatbuffer):
    """The one tensor the rewrite adds to a calibrated model is given the pool output's range (widened
    to 0): every window sum the calibration images produce must lie inside it."""
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.interpreter import Interpreter

    _, calib = model
    images = np.ascontiguousarray(calib.x.transpose(0, 2, 3, 1))
    rewritten, _ = pools_as_depthwise(calibrate(float_flatbuffer, images, workers=1))
    m = schema.ModelT.InitFromPackedBuf(bytearray(rewritten), 0)
    index, sums = next((i, t) for i, t in enumerate(m.subgraphs[0].tensors) if t.name.endswith(b"/window_sums"))
    lo, hi = sums.quantization.min[0], sums.quantization.max[0]
    assert lo <= 0.0 < hi
    it = Interpreter(model_content=rewritten, experimental_preserve_all_tensors=True)
    it.allocate_tensors()
    seen = []
    for image in images:
        it.set_tensor(it.get_input_details()[0]["index"], image[None])
        it.invoke()
        seen.append(it.get_tensor(index))
    seen = np.stack(seen)
    assert lo <= seen.min() and seen.max() <= hi
    assert seen.max() > 0.5 * hi  # a cover, but not a loose one


def test_int8_tflite_runs_its_pools_as_depthwise_convolutions_and_the_edge_tpu_keeps_them(model, tmp_path):
    from edgeincep.litert.base import LiteRtPredictor

    fp32, calib = model
    assert TfliteConfig().depthwise_pools is True
    jobs = [(TfliteConfig("fp32"), tmp_path / "f.tflite"), (TfliteConfig("int8", "int8"), tmp_path / "cpu.tflite"),
            (TfliteConfig("int8", "uint8", depthwise_pools=False), tmp_path / "tpu.tflite")]
    infos = convert(fp32, jobs, input_size=SIZE, metadata={}, calib=calib, calib_digest="t3")
    assert [i["depthwise_pools"] for i in infos] == [None, True, False]
    cpu, tpu = _op_names(tmp_path / "cpu.tflite"), _op_names(tmp_path / "tpu.tflite")
    assert "AVERAGE_POOL_2D" not in cpu and {"DEPTHWISE_CONV_2D", "MUL"} <= set(cpu)
    assert "AVERAGE_POOL_2D" in tpu and "DEPTHWISE_CONV_2D" not in tpu
    ref = LiteRtPredictor(tmp_path / "f.tflite").predict(calib.x)
    span = np.abs(ref).max()
    for name in ("cpu", "tpu"):
        out = LiteRtPredictor(tmp_path / f"{name}.tflite").predict(calib.x)
        assert np.abs(out - ref).max() < 0.05 * span, name


@pytest.mark.filterwarnings("ignore:.*experimental_preserve_all_tensors")
def test_border_mul_is_exact_and_keeps_every_product_off_a_rounding_tie(model, float_flatbuffer):
    """XNNPACK rounds an int8 MUL in float32 on x86 and in fixed point on ARM: they agree unless a product
    lies at a tie. The border MUL's constant holds the exact factors (56, 84, 126 over 56 for 3x3), scaled by
    1 - eps, so that no int8 input can put a product near a tie; LiteRT's result is then the exact rounding."""
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.interpreter import Interpreter

    _, calib = model
    images = np.ascontiguousarray(calib.x.transpose(0, 2, 3, 1))
    core = tflite.quantized_model(calibrate(float_flatbuffer, images, workers=1), per_channel=True,
                                  depthwise_pools=True)
    m = schema.ModelT.InitFromPackedBuf(bytearray(core), 0)
    sub = m.subgraphs[0]
    mul = next(op for op in sub.operators if sub.tensors[op.inputs[0]].name.endswith(b"/window_sums"))
    sums, const, out = (sub.tensors[i] for i in (*mul.inputs, mul.outputs[0]))
    q = np.frombuffer(bytes(m.buffers[const.buffer].data), np.int8).reshape(SIZE, SIZE)
    np.testing.assert_array_equal(q, (56 * border_factors(SIZE, SIZE, 3, 3)).astype(np.int8))
    sc, zc = const.quantization.scale[0], const.quantization.zeroPoint[0]
    eps = 1 - sc * 56
    assert zc == 0 and 0 < eps <= 2**-10
    sa, za = sums.quantization.scale[0], sums.quantization.zeroPoint[0]
    so, zo = out.quantization.scale[0], out.quantization.zeroPoint[0]
    assert (sa, za) == (so, zo)  # the pool follows a RELU: its sums share the output's quantization

    n = np.arange(-128, 128)[:, None] - za
    v = n * np.array([56, 84, 126])[None, :] * (sc * sa / so)
    assert np.all(np.abs(v - np.floor(v) - 0.5) >= 1e-5 * np.maximum(1, np.abs(v)))

    it = Interpreter(model_content=core, experimental_preserve_all_tensors=True)
    it.allocate_tensors()
    index = {t.name: i for i, t in enumerate(sub.tensors)}
    a, got = [], []
    for image in images[:4]:
        it.set_tensor(it.get_input_details()[0]["index"], image[None])
        it.invoke()
        a.append(it.get_tensor(index[sums.name]).astype(np.int64))
        got.append(it.get_tensor(index[out.name]).astype(np.int64))
    a, got = np.concatenate(a), np.concatenate(got)
    exact = np.clip(np.round((a - za) * q[None, :, :, None] * (sc * sa / so)) + zo, -128, 127)
    np.testing.assert_array_equal(got, exact)
    np.testing.assert_array_equal(got[:, 1:-1, 1:-1], a[:, 1:-1, 1:-1])  # the interior passes through unchanged
