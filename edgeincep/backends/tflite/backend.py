"""TFLite / LiteRT for ARM CPUs (Raspberry Pi): full-integer INT8 .tflite, FP32 and FP16 beside it.

Conversion, the host predictor and the bundle are the LiteRT toolchain's (edgeincep.litert), shared
with the Edge TPU backend; what is this backend's own is the float references and the Raspberry Pi.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from edgeincep.backends.base import Backend
from edgeincep.core.artifact import Artifact
from edgeincep.litert.base import LiteRtBackendMixin
from edgeincep.litert.settings import TfliteSettings

if TYPE_CHECKING:
    from edgeincep.core.settings import RecipeBase
    from edgeincep.quantize.calibration import CalibrationSet


class TfliteBackend(LiteRtBackendMixin, Backend):
    name = "tflite"
    description = "TFLite/LiteRT with XNNPACK (ARM CPUs, Raspberry Pi): full-integer INT8, FP32 and FP16"
    settings = TfliteSettings
    bundle_devices = ("rpi", "coral")
    build_memory_gb = 3.0  # TensorFlow and onnx2tf in the converting child
    peer = "TensorFlow TFLiteConverter full-integer, defaults"
    sixteen_bit_activations: ClassVar[dict | str] = {"tflite": {"activations": "int16"}}

    def references(self, fp32: Path, recipe: RecipeBase, out_dir: Path) -> list[Artifact]:
        """The float .tflite files, validated beside INT8: FP32 proves the conversion itself is exact."""
        s = self._settings(recipe)
        stem = Path(fp32).name.removesuffix(".fp32.onnx")
        return self._convert(fp32, [(kind, Path(out_dir) / f"{stem}.tflite.{kind}.tflite")
                                    for kind in dict.fromkeys(s.references)], s, None)

    def build(self, fp32: Path, calib: CalibrationSet, recipe: RecipeBase, out_dir: Path) -> Artifact:
        return self._convert(fp32, [("int8", self.int8_path(fp32, out_dir))], self._settings(recipe), calib)[0]

    def peer_default(self, fp32: Path, calib: CalibrationSet, out_dir: Path) -> Artifact:
        from edgeincep.backends.tflite.peer import converter_defaults

        out = Path(out_dir) / f"{Path(fp32).name.removesuffix('.fp32.onnx')}.peer.tflite.int8.tflite"
        info = converter_defaults(fp32, calib, out)
        return Artifact(out, self.name, "int8", "tflite-int8-int8-io", meta=info)
