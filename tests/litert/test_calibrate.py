"""TFLite calibration across processes gives exactly what TensorFlow's single calibrator gives,
and the INT8 and FP16 models built from the one float model are the ones TensorFlow's converter builds."""
from __future__ import annotations

import numpy as np
import pytest

from edgeincep.core.errors import ConversionError
from edgeincep.litert import calibrate as tflite_calibrate
from edgeincep.litert import convert as tflite
from edgeincep.litert.calibrate import calibrate, merge

pytest.importorskip("tensorflow")


@pytest.fixture(scope="module")
def keras_and_float(reference_fp32, reference_calib):
    keras_model = tflite.onnx_to_keras(reference_fp32)
    size = reference_calib.x.shape[-1]
    return keras_model, size, tflite.float_model(keras_model, size)


@pytest.fixture(scope="module")
def images(reference_calib) -> np.ndarray:
    return np.ascontiguousarray(reference_calib.x[:12].transpose(0, 2, 3, 1))


def tensorflow_calibration(float_model: bytes, images: np.ndarray) -> bytes:
    from tensorflow.lite.python.optimize import calibrator

    def representative():
        for i in range(len(images)):
            yield [images[i:i + 1]]

    return bytes(calibrator.Calibrator(calibrator.add_intermediate_tensors(float_model)).calibrate(representative))


def test_ranges_merged_from_split_images_are_byte_identical_to_one_calibrator(keras_and_float, images):
    _, _, flo = keras_and_float
    whole = tensorflow_calibration(flo, images)
    halves = [tensorflow_calibration(flo, images[:5]), tensorflow_calibration(flo, images[5:])]
    assert halves[0] != whole  # each half alone saw narrower ranges: the merge has work to do
    assert merge(halves[0], halves[1:]) == whole
    assert merge(halves[1], halves[:1]) == whole  # min/max do not care about order


def test_workers_in_child_processes_give_the_single_calibrator_result(keras_and_float, images, monkeypatch):
    _, _, flo = keras_and_float
    monkeypatch.setattr(tflite_calibrate, "MIN_CHILD_SECONDS", 0.0)  # a tiny model: force the children
    started = []
    real_start = tflite_calibrate._Workers.start
    monkeypatch.setattr(tflite_calibrate._Workers, "start",
                        lambda self, model, shares: (started.append(len(shares)), real_start(self, model, shares)))
    assert calibrate(flo, images, workers=3) == tensorflow_calibration(flo, images)
    assert started == [2]


def test_small_jobs_stay_in_one_process(keras_and_float, images, monkeypatch):
    _, _, flo = keras_and_float
    monkeypatch.setattr(tflite_calibrate._Workers, "start", lambda *a: pytest.fail("started a child"))
    assert calibrate(flo, images, workers=2) == tensorflow_calibration(flo, images)


def test_ranges_of_different_models_are_not_merged(keras_and_float, images, tflite_int8):
    _, _, flo = keras_and_float
    with pytest.raises(ConversionError, match="different models"):
        merge(tensorflow_calibration(flo, images[:2]), [tflite_int8.path.read_bytes()])


def test_int8_model_equals_tensorflows_converter_output(keras_and_float, reference_calib):
    """Our split of TFLiteConverter (one float conversion, calibration, its MLIR quantizer) builds the
    same full-integer model the converter builds in one call: same operators, same outputs."""
    import tensorflow as tf

    from edgeincep.litert.graph import read_graph

    keras_model, size, _ = keras_and_float
    calib = reference_calib
    calibrated = tflite.calibrated_model(keras_and_float[2], calib.x.transpose(0, 2, 3, 1))
    ours = tflite.quantized_model(calibrated, per_channel=True, depthwise_pools=False)
    nhwc = np.ascontiguousarray(calib.x.transpose(0, 2, 3, 1))
    conv = tflite.keras_converter(keras_model, size)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = lambda: ([nhwc[i:i + 1]] for i in range(len(nhwc)))
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    theirs = bytes(conv.convert())
    a, b = read_graph(ours), read_graph(theirs)
    assert [(o.name, o.version) for o in a.ops] == [(o.name, o.version) for o in b.ops]
    assert [t.scales for t in a.tensors] == [t.scales for t in b.tensors]
    from edgeincep.litert.base import LiteRtPredictor

    np.testing.assert_array_equal(LiteRtPredictor(ours).predict(calib.x[:8]), LiteRtPredictor(theirs).predict(calib.x[:8]))
    assert tflite.float_islands(ours) == []


def test_fp16_model_equals_tensorflows_converter_output(keras_and_float, reference_calib):
    """FP16 made from the float flatbuffer (float16 constants widened by DEQUANTIZE) is what the converter's
    float16 option writes: same operators and versions, the same float16 values, the same metadata flags,
    bit-identical outputs."""
    import tensorflow as tf

    from edgeincep.litert.base import LiteRtPredictor
    from edgeincep.litert.graph import read_graph
    from edgeincep.litert.rewrite import float16_weights

    keras_model, size, flo = keras_and_float
    ours = float16_weights(flo)
    conv = tflite.keras_converter(keras_model, size)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.target_spec.supported_types = [tf.float16]
    theirs = bytes(conv.convert())
    a, b = read_graph(ours), read_graph(theirs)
    assert sorted((o.name, o.version) for o in a.ops) == sorted((o.name, o.version) for o in b.ops)
    assert sum(o.name == "DEQUANTIZE" for o in a.ops) > 100

    def halves_and_flags(flatbuffer: bytes) -> tuple[dict, dict]:
        from ai_edge_litert import schema_py_generated as schema

        m = schema.ModelT.InitFromPackedBuf(bytearray(flatbuffer), 0)
        halves = {t.name: bytes(m.buffers[t.buffer].data) for t in m.subgraphs[0].tensors
                  if t.type == schema.TensorType.FLOAT16}
        flags = {e.name: bytes(m.buffers[e.buffer].data) for e in m.metadata
                 if e.name in (b"min_runtime_version", b"reduced_precision_support")}
        return halves, flags

    assert halves_and_flags(ours) == halves_and_flags(theirs)
    x = reference_calib.x[:8]
    np.testing.assert_array_equal(LiteRtPredictor(ours).predict(x), LiteRtPredictor(theirs).predict(x))
    assert len(ours) < 0.6 * len(flo)
