"""TensorFlow's own full-integer INT8 recipe with its defaults: the peer row the benchmark puts beside ours.

The converter as TensorFlow's post-training integer quantization guide sets it for an integer-only
model: `optimizations = [DEFAULT]`, a representative dataset, `TFLITE_BUILTINS_INT8` and int8 input and
output, on the Keras model onnx2tf makes of the FP32 ONNX. Nothing of edgeincep's: its average pools
stay native (no depthwise rewrite), the calibration runs in the converter's own single process.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

from edgeincep.export.metadata import read_metadata
from edgeincep.export.onnx import preprocess_from_metadata
from edgeincep.fsutil import atomic_path

if TYPE_CHECKING:
    from edgeincep.quantize.calibration import CalibrationSet

CALL = ("tf.lite.TFLiteConverter on onnx2tf's Keras model: optimizations DEFAULT, representative_dataset, "
        "TFLITE_BUILTINS_INT8, int8 input/output")


def converter_defaults(fp32: Path, calib: CalibrationSet, out: Path) -> dict:
    from edgeincep.litert.convert import keras_converter, onnx_to_keras, run_converter, with_metadata

    t0 = time.perf_counter()
    meta = read_metadata(fp32)
    size = preprocess_from_metadata(meta, fp32).input_size
    keras_model = onnx_to_keras(fp32)  # imports TensorFlow with its start-up banners kept off the terminal
    import tensorflow as tf

    # The frozen-graph entry point converts the same graph as from_keras_model, without its SavedModel detour.
    conv = keras_converter(keras_model, size)
    nhwc = calib.x.transpose(0, 2, 3, 1)

    def representative_dataset():
        for i in range(len(nhwc)):
            yield [nhwc[i:i + 1]]

    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = representative_dataset
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    flatbuffer = run_converter(conv, "int8 (TensorFlow's defaults)")
    with atomic_path(out) as tmp:
        tmp.write_bytes(with_metadata(flatbuffer, meta | {"edgeincep.peer": CALL}))
    return {"peer": CALL, "calibration_images": len(calib), "seconds": round(time.perf_counter() - t0, 2)}
