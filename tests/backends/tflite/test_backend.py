"""TFLite target: the FP32 .tflite reproduces the ONNX model, FP16 stores half-size weights, INT8 is
full-integer (8-bit activations, per-channel int8 weights, integer I/O) and stays within the drift
budget on real images; every file carries labels and preprocessing, is written atomically and cached;
conversion never reaches for the network."""
from __future__ import annotations

import json
import socket

import numpy as np
import onnx
import pytest

from edgeincep.core.errors import UserError
from edgeincep.data.folders import select_images
from edgeincep.export.onnx import read_metadata
from edgeincep.fsutil import sha256_file
from edgeincep.litert.base import LiteRtPredictor, dequantize, quantize
from edgeincep.litert.convert import ConversionError, _no_network, onnx_to_keras
from edgeincep.litert.graph import read_graph, stored_precision
from edgeincep.litert.graph import read_metadata as tflite_metadata
from edgeincep.pipeline.artifacts import artifact_for_file
from edgeincep.pipeline.validate_stage import validate
from edgeincep.recipes import Recipe
from edgeincep.registry import get_backend
from edgeincep.validate.ort import OrtPredictor

TFL = get_backend("tflite")


@pytest.fixture()
def fp32(reference_fp32):
    return reference_fp32


@pytest.fixture()
def calib(reference_calib):
    return reference_calib


@pytest.fixture()
def floats(tflite_floats):
    return tflite_floats


@pytest.fixture()
def int8(tflite_int8):
    return tflite_int8


def test_recipe_decides_which_float_files_are_written(floats):
    assert sorted(floats) == ["fp16", "fp32"]
    assert all(a.path.suffix == ".tflite" and a.path.is_file() for a in floats.values())


def test_fp32_tflite_reproduces_the_onnx_model(fp32, floats, calib):
    pred = TFL.load(floats["fp32"], threads=2)
    assert pred.executed_precision == "fp32 (XNNPACK)"
    np.testing.assert_allclose(pred.predict(calib.x[:16]), OrtPredictor(fp32).predict(calib.x[:16]), atol=1e-4)


def test_fp16_file_stores_half_precision_weights(floats, calib):
    g = read_graph(floats["fp16"].path)
    assert stored_precision(g) == "fp16"
    assert "DEQUANTIZE" in {o.name for o in g.ops}  # fp16 constants widened to fp32 at load
    assert floats["fp16"].size_bytes() < 0.6 * floats["fp32"].size_bytes()
    ref = TFL.load(floats["fp32"]).predict(calib.x[:8])
    np.testing.assert_allclose(TFL.load(floats["fp16"]).predict(calib.x[:8]), ref, atol=0.05)


def test_int8_model_is_full_integer_with_per_channel_weights(int8):
    g = read_graph(int8.path)
    assert int8.precision == "int8" and stored_precision(g) == "int8"
    activations = [t for t in g.tensors if not t.constant]
    assert {t.dtype for t in activations} == {"INT8"}, "a float activation left in the INT8 model"
    convs = [o for o in g.ops if o.name == "CONV_2D"]
    weights = [g.tensors[o.inputs[1]] for o in convs]
    assert {w.dtype for w in weights} == {"INT8"}
    assert all(w.scales == w.shape[0] for w in weights), "weights should carry one scale per output channel"
    assert [g.tensors[i].dtype for i in g.inputs + g.outputs] == ["INT8", "INT8"]


def test_int8_io_is_quantized_with_the_tensors_own_parameters(int8, calib):
    pred = TFL.load(int8)
    scale, zero = pred.input["quantization"]
    q = quantize(calib.x[:1].transpose(0, 2, 3, 1), pred.input)
    assert q.dtype == np.int8
    np.testing.assert_allclose(dequantize(q, pred.input), calib.x[:1].transpose(0, 2, 3, 1), atol=scale / 2 + 1e-6)
    assert -128 <= zero <= 127


def test_int8_drift_is_within_budget_on_real_images(fp32, int8, floats, fmnist_val):
    images = select_images(fmnist_val, 500)
    record = validate(fp32, [floats["fp32"], int8], images, threads=2)
    by = {a["precision"]: a for a in record["artifacts"]}
    assert by["fp32"]["drift"]["top1_agreement"] == 1.0
    d = by["int8"]["drift"]
    assert d["top1_agreement"] >= 0.98 and d["top1_drop_points"] <= 1.0, d
    assert by["int8"]["executed_precision"].startswith("int8")


def test_every_file_carries_the_models_labels_and_preprocessing(fp32, floats, int8):
    onnx_meta = read_metadata(fp32)
    for art in [*floats.values(), int8]:
        meta = tflite_metadata(art.path)
        assert meta == onnx_meta
        assert TFL.metadata(art) == onnx_meta
    assert json.loads(onnx_meta["edgeincep.labels"])[0] == "tshirt_top"


def test_every_file_has_a_serving_signature_for_litert_signature_runners(floats, int8, calib):
    from ai_edge_litert.interpreter import Interpreter

    x = np.ascontiguousarray(calib.x[:1].transpose(0, 2, 3, 1))
    for art in [*floats.values(), int8]:
        it = Interpreter(model_path=str(art.path))
        assert list(it.get_signature_list()) == ["serving_default"]
        runner = it.get_signature_runner("serving_default")
        inp = it.get_input_details()[0]
        logits = runner(input=quantize(x, inp))["logits"]
        assert logits.shape == (1, 10), art.path.name


def test_artifacts_are_cached_and_found_again_from_the_file(fp32, calib, int8):
    again = TFL.build(fp32, calib, Recipe(), fp32.parent)
    assert again.meta.get("cached") is True and again.path == int8.path
    found = artifact_for_file(int8.path)
    assert (found.target, found.precision) == ("tflite", "int8")
    int8.sidecar().rename(int8.sidecar().with_suffix(".moved"))
    try:
        assert artifact_for_file(int8.path).precision == "int8"  # read from the graph, not the name
    finally:
        int8.sidecar().with_suffix(".moved").rename(int8.sidecar())


def test_conversion_leaves_the_fp32_export_byte_identical(fp32):
    # onnx2tf rewrites the file it is given; the export (and the cache keys hashed from it) must not change.
    before = sha256_file(fp32)
    onnx_to_keras(fp32)
    assert sha256_file(fp32) == before


def test_conversion_never_reaches_the_network():
    with _no_network(), pytest.raises(ConversionError, match="network"):
        socket.create_connection(("127.0.0.1", 9), timeout=1)


def test_static_batch_model_would_download_but_is_stopped_with_one_line(fp32, tmp_path):
    # onnx2tf fetches sample images for static-batch inputs; offline that must be a clear error, not a hang.
    m = onnx.load(str(fp32))
    m.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 1
    static = tmp_path / "static.onnx"
    onnx.save(m, str(static))
    with pytest.raises(ConversionError, match="network"):
        onnx_to_keras(static)
    # The same through the target, whose conversions run in a child process: the child's error comes
    # back as the same one-line error, and nothing is left where the files would have gone.
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(ConversionError, match="tried to reach the network") as e:
        TFL.references(static, Recipe(), out)
    assert "\n" not in str(e.value)
    assert list(out.iterdir()) == []


def test_unreadable_tflite_is_one_line_error(tmp_path):
    bad = tmp_path / "broken.tflite"
    bad.write_bytes(b"\x00" * 64)
    with pytest.raises(UserError, match="not a TFLite flatbuffer"):
        read_graph(bad)
    with pytest.raises(UserError, match=r"broken\.tflite"):
        artifact_for_file(bad)


def test_predictor_runs_batches_one_image_at_a_time(int8, calib):
    pred = LiteRtPredictor(int8.path, threads=1)
    out = pred.predict(calib.x[:5])
    assert out.shape == (5, 10) and out.dtype == np.float32
    np.testing.assert_array_equal(out[2:3], pred.predict(calib.x[2:3]))


@pytest.mark.slow
@pytest.mark.parametrize("model", ["inception_resnet_v2", "inception_resnet_v1", "inception_v4"])
def test_reference_models_pass_the_drift_budget_on_the_full_test_set(tmp_path, model, fashion_mnist_test):
    """The accuracy bar: full-integer INT8 top-1 drop <= 0.5 point on all 10k test images, for TFLite (int8 I/O)
    and the Edge TPU model (uint8 I/O), through the real pipeline."""
    from edgeincep.data import fashion_mnist as fm
    from edgeincep.pipeline.run import run_pipeline

    x, y = fashion_mnist_test
    val = tmp_path / "val"
    fm.write_folder(x, y, list(range(len(y))), val, "test")
    for target in ("tflite", "edgetpu"):
        report = run_pipeline(model, weights="reference", target=target, val_dir=val, calib_dir=None,
                              out_dir=tmp_path / "out", threads=2)
        assert report["validation"]["images"]["count"] == 10_000
        int8 = next(a for a in report["validation"]["artifacts"] if a["precision"] == "int8")
        assert int8["drift"]["top1_drop_points"] <= 0.5, (target, int8["drift"])
        assert report["passed"]
