"""ONNX -> .tflite (FP32, FP16, full-integer INT8) through onnx2tf and TensorFlow's converter.

Route, chosen by measurement (issue 6): onnx2tf rebuilds the graph as a Keras model in NHWC with
no TRANSPOSE left inside it; TensorFlow's TFLiteConverter then writes each variant from that one
model, calibrating INT8 on the shared calibration set. onnx2tf is asked only for the Keras model
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
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from ..errors import ConversionError, UserError
from ..fsutil import atomic_path
from .calibration import CalibrationSet

LIBS = ("tensorflow", "tf-keras", "onnx2tf", "ai-edge-litert")
Kind = Literal["fp32", "fp16", "int8"]
IoType = Literal["float32", "int8", "uint8"]
METADATA_NAME = "edgeincep"  # the .tflite Model.metadata entry holding the edgeincep.* facts as JSON


@dataclass(frozen=True)
class TfliteConfig:
    kind: Kind = "int8"
    io: IoType = "int8"          # INT8 models only: the input/output tensor type
    per_channel: bool = True     # INT8: per-output-channel weight scales (per-tensor if False)


@contextlib.contextmanager
def _captured_output():
    """TensorFlow's C++ code prints banners and per-conversion notes on file descriptors 1 and 2,
    below Python's logging: they are parked in a temp file (set EDGEINCEP_TF_LOG=1 to see them; a
    failure is reported by the exception's own one-line message)."""
    from ..console import err

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


def _converter(keras_model, input_size: int):
    import tensorflow as tf

    spec = tf.TensorSpec([1, input_size, input_size, 3], tf.float32, name="input")
    fn = tf.function(lambda t: keras_model(t, training=False)).get_concrete_function(spec)
    return tf.lite.TFLiteConverter.from_concrete_functions([fn], keras_model)


def _run(conv, what: str) -> bytes:
    try:
        with _captured_output():
            return conv.convert()
    except Exception as e:  # noqa: BLE001 - the converter raises ConverterError and plain RuntimeErrors
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConversionError(f"TFLite converter failed for {what}: {first}") from None


# The calibrated full-integer model with float I/O, per Keras model and calibration set: the TFLite
# (int8 I/O) and Edge TPU (uint8 I/O) models differ only at their boundaries, and TensorFlow's
# calibrator runs one image at a time on a single core (minutes for a full-size network).
_INT8_CORE: dict[tuple, bytes] = {}


def _int8_core(keras_model, input_size: int, calib: CalibrationSet, per_channel: bool) -> bytes:
    import tensorflow as tf

    key = (id(keras_model), input_size, tuple(calib.paths), per_channel)
    if key in _INT8_CORE:
        return _INT8_CORE[key]
    nhwc = np.ascontiguousarray(calib.x.transpose(0, 2, 3, 1))

    def representative():
        for i in range(len(nhwc)):
            yield [nhwc[i:i + 1]]

    conv = _converter(keras_model, input_size)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = representative
    # Builtins-int8 only: a layer that cannot be integer makes the conversion fail loudly
    # instead of leaving a float island that an Edge TPU or an int8-only NPU cannot run.
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    if not per_channel:
        conv._experimental_disable_per_channel = True
    _INT8_CORE.clear()  # one model's worth at a time
    _INT8_CORE[key] = _run(conv, "int8")
    return _INT8_CORE[key]


def convert(keras_model, input_size: int, cfg: TfliteConfig, calib: CalibrationSet | None = None) -> bytes:
    """One .tflite flatbuffer with a static 1 x H x W x 3 input (Edge TPU and XNNPACK both want static shapes)."""
    import tensorflow as tf

    if cfg.kind == "int8":
        if calib is None or len(calib) == 0:
            raise UserError("INT8 conversion needs calibration images")
        core = _int8_core(keras_model, input_size, calib, cfg.per_channel)
        if cfg.io == "float32":
            return core
        from tensorflow.lite.python.util import modify_model_io_type

        # The same edit TensorFlow's converter makes for inference_input_type/inference_output_type.
        io = getattr(tf, cfg.io)
        return bytes(modify_model_io_type(core, io, io))
    conv = _converter(keras_model, input_size)
    if cfg.kind == "fp16":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.target_spec.supported_types = [tf.float16]
    return _run(conv, cfg.kind)


def with_metadata(flatbuffer: bytes, metadata: dict[str, str]) -> bytes:
    """The model with the edgeincep.* facts (labels, preprocessing, source hash) as a metadata entry."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(bytearray(flatbuffer), 0)
    buf = schema.BufferT()
    buf.data = np.frombuffer(json.dumps(metadata, sort_keys=True).encode(), dtype=np.uint8)
    model.buffers.append(buf)
    entry = schema.MetadataT()
    entry.name = METADATA_NAME
    entry.buffer = len(model.buffers) - 1
    model.metadata = [m for m in (model.metadata or []) if m.name not in (METADATA_NAME, METADATA_NAME.encode())]
    model.metadata.append(entry)
    builder = flatbuffers.Builder(len(flatbuffer) + 4096)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def build_tflite(out: Path, cfg: TfliteConfig, calib: CalibrationSet | None, input_size: int,
                 metadata: dict[str, str], keras_model) -> dict:
    """Write one variant atomically; returns what it did (time, size) for the artifact record."""
    t0 = time.perf_counter()
    flat = with_metadata(convert(keras_model, input_size, cfg, calib), metadata)
    with atomic_path(out) as tmp:
        tmp.write_bytes(flat)
    return {"kind": cfg.kind, "io": cfg.io if cfg.kind == "int8" else "float32",
            "per_channel": cfg.per_channel if cfg.kind == "int8" else None,
            "calibration_images": len(calib) if cfg.kind == "int8" and calib is not None else 0,
            "convert_seconds": round(time.perf_counter() - t0, 2), "size_bytes": len(flat)}
