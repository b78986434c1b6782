"""ONNX -> .tflite (FP32, FP16, full-integer INT8) through onnx2tf and TensorFlow's converter.

Route, chosen by measurement (issues 6 and 8): onnx2tf rebuilds the graph as a Keras model in
NHWC with no TRANSPOSE left inside it; TensorFlow's converter turns that into one float
flatbuffer (frozen-graph route, see `keras_converter`). FP32 is that flatbuffer; FP16 is that
flatbuffer with float16 weights (rewrite.py: what the converter's float16 option writes);
INT8 is what TFLiteConverter does inside `convert()` for full-integer models, done in the open
so the slow part can use every core: TensorFlow's
calibrator over the float flatbuffer (spread over processes, calibrate.py) and then its MLIR
quantizer, with the average pools first turned into depthwise convolutions for LiteRT's CPU
(rewrite.py: XNNPACK has no int8 pool). onnx2tf is asked only for the Keras model
(`disable_model_save`): its own variant generation took 18 min and 8.6 GB on Inception-ResNet-v2.

Offline trap: onnx2tf downloads a sample-image file whenever the model's input has a static
batch (to check its conversion). Our exported ONNX has a dynamic batch, so that path is not
taken; the batch is fixed to 1 afterwards, in the concrete function handed to the converter.
`_no_network` turns any attempt to connect into an immediate, named error rather than a hang
on an offline machine.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import socket
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from edgeincep.core.errors import ConversionError, UserError

LIBS = ("tensorflow", "tf-keras", "onnx2tf", "ai-edge-litert")
Kind = Literal["fp32", "fp16", "int8"]
IoType = Literal["float32", "int8", "uint8"]
METADATA_NAME = "edgeincep"  # the .tflite Model.metadata entry holding the edgeincep.* facts as JSON


@dataclass(frozen=True)
class TfliteConfig:
    kind: Kind = "int8"
    io: IoType = "int8"          # INT8 models only: the input/output tensor type
    per_channel: bool = True     # INT8: per-output-channel weight scales (per-tensor if False)
    commute_pools: bool = False  # convert the graph with pools moved after their 1x1 convs (quantize/rewrite.py)
    depthwise_pools: bool = True  # INT8: average pools as depthwise conv + border MUL (litert/rewrite.py)
    activations: Literal["int8", "int16"] = "int8"  # int16: TFLite's 16x8 mode (int8 weights), float I/O
    float_nodes: tuple[str, ...] = ()  # operators (by output tensor name) the quantizer leaves in float


@contextlib.contextmanager
def _captured_output():
    """TensorFlow's C++ code prints banners and per-conversion notes on file descriptors 1 and 2,
    below Python's logging: they are parked in a temp file (set EDGEINCEP_TF_LOG=1 to see them; a
    failure is reported by the exception's own one-line message)."""
    from edgeincep.console import err

    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    # Our own spinner keeps drawing on the real terminal while the descriptors are parked.
    own_file, terminal = err._file, os.fdopen(os.dup(saved[1]), "w")
    with tempfile.TemporaryFile() as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        err.file = terminal
        try:
            yield
        finally:
            err.file = own_file
            terminal.close()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
            if os.environ.get("EDGEINCEP_TF_LOG"):
                log.seek(0)
                sys.stderr.write(log.read().decode(errors="replace"))


def _import_onnx2tf():
    """Import onnx2tf (and TensorFlow) with their C++ start-up banners kept off the user's terminal.

    TensorFlow 2.21 prints oneDNN and "no CUDA driver" notices from C++ before absl's logging is
    set up, so TF_CPP_MIN_LOG_LEVEL cannot hide them.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        with _captured_output():
            import onnx2tf
    except ImportError as e:
        raise UserError(f"the TFLite target needs onnx2tf and TensorFlow ({e}); "
                        "install with `make install` or pip install '.[tflite]'") from None
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    return onnx2tf


@contextlib.contextmanager
def _no_network():
    """While converting, any name lookup or connection fails at once with a named error."""
    real_connect, real_lookup = socket.socket.connect, socket.getaddrinfo

    def refuse(*args, **kwargs):
        where = args[1] if len(args) > 1 and not isinstance(args[0], str) else args[:2]
        raise ConversionError(f"onnx2tf tried to reach the network ({where}); edgeincep converts offline")

    socket.socket.connect, socket.getaddrinfo = refuse, refuse
    try:
        yield
    finally:
        socket.socket.connect, socket.getaddrinfo = real_connect, real_lookup


def onnx_to_keras(fp32: Path):
    """The Keras (NHWC) twin of the FP32 ONNX, built by onnx2tf without touching the network."""
    onnx2tf = _import_onnx2tf()
    with contextlib.ExitStack() as stack:
        tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="edgeincep-onnx2tf-"))
        stack.enter_context(_no_network())
        # onnx2tf prints its own banners and tables, and TensorFlow its C++ notes.
        stack.enter_context(_captured_output())
        # onnx2tf rewrites its input file in place (sng4onnx renames nodes): it gets a copy, so the
        # verified FP32 export, and every cache key hashed from it, stay untouched.
        work = Path(tmp) / "model.onnx"
        shutil.copyfile(fp32, work)
        try:
            return onnx2tf.convert(input_onnx_file_path=str(work), output_folder_path=tmp, disable_model_save=True,
                                   not_use_onnxsim=True, non_verbose=True, verbosity="error",
                                   onnxruntime_output_memmap_dir=tmp)
        except ConversionError:
            raise
        except Exception as e:  # noqa: BLE001 - onnx2tf raises bare Exceptions and SystemExit-like errors
            raise ConversionError(f"onnx2tf could not convert the model ({type(e).__name__}: {e})", fp32) from None
        except SystemExit:
            raise ConversionError("onnx2tf gave up converting the model (see above)", fp32) from None


def keras_converter(keras_model, input_size: int):
    import tensorflow as tf

    spec = tf.TensorSpec([1, input_size, input_size, 3], tf.float32, name="input")
    fn = tf.function(lambda t: keras_model(t, training=False)).get_concrete_function(spec)
    conv = tf.lite.TFLiteConverter.from_concrete_functions([fn], keras_model)
    # Freeze the concrete function straight into a graph. The default detour saves a SavedModel
    # and imports its variables back: on full-size Inception-ResNet-v2 that took 193 s and 7.6 GB
    # (11 GB while saving) against 12 s and 4.6 GB, for the same operators and bit-identical outputs.
    conv.experimental_lower_to_saved_model = False
    return conv


def run_converter(conv, what: str) -> bytes:
    try:
        with _captured_output():
            return conv.convert()
    except Exception as e:  # noqa: BLE001 - the converter raises ConverterError and plain RuntimeErrors
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConversionError(f"TFLite converter failed for {what}: {first}") from None


# Per Keras model, the float flatbuffer and the calibrated full-integer model with float I/O:
# FP32, FP16 and INT8 start from one conversion, and the TFLite (int8 I/O) and Edge TPU (uint8 I/O)
# models differ only at their boundaries, so they share one calibration.
def float_model(keras_model, input_size: int) -> bytes:
    """The FP32 flatbuffer; FP32 ships it as is and INT8 is calibrated on it."""
    return run_converter(keras_converter(keras_model, input_size), "fp32")


def calibrated_model(float_flatbuffer: bytes, images_nhwc: np.ndarray) -> bytes:
    """The float model with TensorFlow's calibration ranges over the images (spread over every core,
    calibrate.py): what TFLiteConverter hands its quantizer for a full-integer model."""
    from edgeincep.litert.calibrate import calibrate

    if len(images_nhwc) == 0:
        raise UserError("INT8 conversion needs calibration images")
    return calibrate(float_flatbuffer, images_nhwc)


def quantized_model(calibrated: bytes, *, per_channel: bool, depthwise_pools: bool,
                    float_nodes: tuple[str, ...] = ()) -> bytes:
    """The full-integer model with float I/O from a calibrated float model: TensorFlow's MLIR quantizer
    with the arguments TFLiteConverter passes it (calibrated_model, then this, is what the converter does
    for INT8 inside `convert()`), after `pools_as_depthwise` when asked, whose border factors are then
    made exact (`exact_border_factors`)."""
    from tensorflow.lite.python.convert import mlir_quantize

    from edgeincep.litert.rewrite import exact_border_factors, pools_as_depthwise, unfuse_pool_relu

    if depthwise_pools:
        calibrated, _ = pools_as_depthwise(calibrated)
    try:
        with _captured_output():
            # denylisted_nodes is what TensorFlow's QuantizationDebugger hands the same quantizer for
            # selective quantization: those operators stay float, with (de)quantize at their borders.
            core = bytes(mlir_quantize(calibrated, disable_per_channel=not per_channel,
                                       denylisted_nodes=list(float_nodes) or None))
    except Exception as e:  # noqa: BLE001 - the quantizer raises ConverterError and RuntimeErrors
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConversionError(f"TFLite quantizer failed for int8: {first}") from None
    core = unfuse_pool_relu(core)
    if depthwise_pools:
        core = exact_border_factors(core)
    islands = float_islands(core)
    if islands and not float_nodes:
        # What TFLITE_BUILTINS_INT8 promises: a float island would fail an Edge TPU compile or
        # an int8-only NPU, so it is an error here rather than a silent slow path.
        raise ConversionError(f"TFLite INT8: {len(islands)} operator(s) left in float: {', '.join(islands[:5])}")
    return core


def quantized_16x8(float_flatbuffer: bytes, images_nhwc: np.ndarray, *, per_channel: bool) -> bytes:
    """TFLite's 16x8 mode (int16 activations, int8 weights, int64 biases; float I/O) from the float model: what
    TFLiteConverter does for EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8. Its MLIR quantizer
    does not do int16 (it writes asymmetric int16 zero points the kernels refuse), so the converter, and this,
    calibrate and quantize with TensorFlow's older quantizer, one image at a time, pools kept native."""
    import tensorflow as tf
    from tensorflow.lite.python.optimize import calibrator

    images = np.ascontiguousarray(images_nhwc, dtype=np.float32)

    def representative():
        for i in range(len(images)):
            yield [images[i:i + 1]]

    try:
        with _captured_output():
            model = calibrator.Calibrator(bytes(calibrator.add_intermediate_tensors(float_flatbuffer)))
            return bytes(model.calibrate_and_quantize(representative, tf.float32, tf.float32, False,
                                                      activations_type=tf.int16, bias_type=tf.int64,
                                                      disable_per_channel=not per_channel))
    except Exception as e:  # noqa: BLE001 - the quantizer raises RuntimeErrors of its own
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConversionError(f"TFLite quantizer failed for 16x8: {first}") from None


def with_io(int8_core: bytes, io: IoType) -> bytes:
    """The full-integer model with int8 or uint8 input and output (float32: unchanged); the same edit
    TensorFlow's converter makes for inference_input_type / inference_output_type."""
    if io == "float32":
        return int8_core
    import tensorflow as tf
    from tensorflow.lite.python.util import modify_model_io_type

    dtype = getattr(tf, io)
    return bytes(modify_model_io_type(int8_core, dtype, dtype))


def float_islands(flatbuffer: bytes) -> list[str]:
    """Operators of a full-integer model that still compute in float, other than the QUANTIZE of
    the float input and the DEQUANTIZE of the float output."""
    from edgeincep.litert.graph import read_graph

    g = read_graph(flatbuffer)
    out = []
    for op in g.ops:
        if op.name in ("QUANTIZE", "DEQUANTIZE"):
            continue
        if any(i >= 0 and g.tensors[i].dtype == "FLOAT32" and not g.tensors[i].constant for i in op.inputs):
            out.append(f"{op.name}#{op.index}")
    return out


def with_metadata(flatbuffer: bytes, metadata: dict[str, str]) -> bytes:
    """The model with the edgeincep.* facts (labels, preprocessing, source hash) as a metadata entry."""
    from ai_edge_litert import schema_py_generated as schema

    from edgeincep.litert.rewrite import load, pack

    model = load(flatbuffer)
    buf = schema.BufferT()
    buf.data = np.frombuffer(json.dumps(metadata, sort_keys=True).encode(), dtype=np.uint8)
    model.buffers.append(buf)
    entry = schema.MetadataT()
    entry.name = METADATA_NAME
    entry.buffer = len(model.buffers) - 1
    model.metadata = [m for m in (model.metadata or []) if m.name not in (METADATA_NAME, METADATA_NAME.encode())]
    model.metadata.append(entry)
    if not model.signatureDefs:
        model.signatureDefs = [_serving_signature(schema, model.subgraphs[0])]
    return pack(model, len(flatbuffer))


def _serving_signature(schema, subgraph):
    """The `serving_default` signature (input -> logits) that LiteRT's signature runner and Android's
    generated wrappers look for; the frozen-graph conversion route writes none."""
    def tensor_map(name: str, index: int):
        m = schema.TensorMapT()
        m.name, m.tensorIndex = name, int(index)
        return m

    sig = schema.SignatureDefT()
    sig.signatureKey = "serving_default"
    sig.subgraphIndex = 0
    sig.inputs = [tensor_map("input", subgraph.inputs[0])]
    sig.outputs = [tensor_map("logits", subgraph.outputs[0])]
    return sig
