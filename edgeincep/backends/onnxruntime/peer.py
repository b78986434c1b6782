"""ONNX Runtime's own INT8 recipe with its defaults: the peer row the benchmark puts beside ours.

What its quantization guide says to do: `quant_pre_process` (the recommended pre-pass), then
`quantize_static` with nothing but a calibration data reader, which means QDQ, int8 activations
and weights, per-tensor weight scales, MinMax ranges. Nothing of edgeincep's: no pool rewrite,
no U8S8, no chunked calibration.
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import onnx

from edgeincep.backends.onnxruntime.quantize import _ArrayReader
from edgeincep.export.metadata import read_metadata, write_metadata
from edgeincep.fsutil import atomic_path

if TYPE_CHECKING:
    from edgeincep.quantize.calibration import CalibrationSet

CALL = "onnxruntime.quantization: quant_pre_process, then quantize_static(model, out, reader) with its defaults"


def quantize_static_defaults(fp32: Path, calib: CalibrationSet, out: Path) -> dict:
    from onnxruntime.quantization import quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="edgeincep-ort-peer-") as tmp:
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(fp32), str(pre))
        input_name = onnx.load(str(pre), load_external_data=False).graph.input[0].name
        raw = Path(tmp) / "int8.onnx"
        quantize_static(str(pre), str(raw), _ArrayReader(input_name, calib.x))
        model = onnx.load(str(raw))
    write_metadata(model, read_metadata(fp32) | {"edgeincep.peer": CALL})
    with atomic_path(out) as tmp_out:
        onnx.save(model, str(tmp_out))
    return {"peer": CALL, "calibration_images": len(calib), "seconds": round(time.perf_counter() - t0, 2)}
