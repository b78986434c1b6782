"""The recipe's `openvino:` section."""
from __future__ import annotations

from typing import Literal

from pydantic import Field

from edgeincep.core.settings import Strict


class OpenVinoSettings(Strict):
    compress_fp16: bool = Field(False, description="store float weights as FP16 (never for the FP32 reference)")
    preset: Literal["performance", "mixed"] = "performance"
    # Measured on the reference Inception-ResNet-v1 (300 calibration images, SQNR vs FP32): NNCF's
    # defaults (mean-of-minmax ranges, fast bias correction) 13.9 dB; plain min/max ranges with
    # full bias correction 34.1 dB. Hence these defaults.
    activation_ranges: Literal["minmax", "mean_minmax"] = "minmax"
    # Full bias correction keeps every layer's activations for 20% of the calibration images: on
    # full-size Inception-ResNet-v2 at 299 px (300 MB of activations per image) it was killed for want
    # of memory at 24 GB. "auto" uses it only while that estimate stays under bias_correction_memory_mb.
    fast_bias_correction: bool | Literal["auto"] = "auto"
    bias_correction_memory_mb: int = Field(4096, ge=64, description="auto: the most full bias correction may hold")
    accuracy_control: bool = Field(True, description="nncf.quantize_with_accuracy_control when over budget")
    max_reverted: int = Field(50, ge=1, le=10_000, description="accuracy control: most layers reverted to float")
    performance_hint: Literal["latency", "throughput"] = "latency"
    inference_precision: Literal["f32", "bf16", "f16"] = Field(
        "f32", description="CPU plugin precision for float ops; f32 for honest drift (bf16 is the silent default)")
