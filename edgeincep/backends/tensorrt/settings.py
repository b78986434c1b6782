"""The recipe's `tensorrt:` section."""
from __future__ import annotations

from typing import Literal

from pydantic import Field

from edgeincep.core.settings import Strict


class TensorRtSettings(Strict):
    """TensorRT: a Q/DQ INT8 ONNX made with NVIDIA ModelOpt (calibrated on CPU), engines built on the device."""
    # ModelOpt's calibrators: "max" (absolute max) or "entropy" (KL divergence, ModelOpt's own default). Measured on
    # the reference Inception-ResNet-v2 (300 calibration images, 1000 validation images, SQNR vs FP32): max 28.6 dB,
    # 99.6% top-1 agreement; entropy 24.6 dB, 98.9% (ModelOpt's entropy clips through ONNX Runtime's 128-bin histograms).
    calibration_method: Literal["max", "entropy"] = "max"
    # The shipped file's float parts (weights kept in float, Q/DQ scales, non-quantized ops): fp16
    # halves the file and is what the engine runs anyway; fp32 keeps an exact-float twin for debugging.
    high_precision_dtype: Literal["fp16", "fp32"] = "fp16"
    calibrate_per_node: bool = Field(False, description="ModelOpt calibrates node by node: less memory, slower")
    keep_fp32_twin: bool = Field(True, description="also write the fp32-high-precision twin and compare it at build time")
    # Engine build (on the device, or here when TensorRT and a GPU exist).
    engine_fp16: bool = Field(True, description="FP16 alongside INT8: INT8-only builds run the float parts in FP32")
    workspace_mb: int = Field(1024, ge=16, le=1 << 20, description="builder workspace memory pool limit")
    timing_cache: bool = Field(True, description="reuse kernel timings across engine builds (file beside the engine)")
    max_batch: int = Field(8, ge=1, le=4096, description="largest batch of the engine's optimisation profile")
    opt_batch: int = Field(1, ge=1, le=4096, description="batch the engine is tuned for")
    jetpack: str = Field("6.2", description="JetPack release the Jetson bundle is written for")
    tensorrt_version: str = Field("10.3", description="TensorRT release the Jetson bundle is written for")
