"""The recipe's `tflite:` section, read by both LiteRT backends (the Edge TPU fixes some keys)."""
from __future__ import annotations

from typing import Literal

from pydantic import Field

from edgeincep.core.settings import Strict


class TfliteSettings(Strict):
    # The INT8 model is the gated artifact; FP32 and FP16 are written beside it when listed here
    # (each costs one more conversion), and FP32 is validated too, proving the conversion itself exact.
    references: list[Literal["fp32", "fp16"]] = Field(["fp32", "fp16"], description="float .tflite files besides INT8")
    io: Literal["int8", "uint8", "float32"] = Field(
        "int8", description="INT8 model input/output type (the edgetpu target always uses uint8)")
    per_channel: bool = Field(True, description="per-output-channel INT8 weight scales")
    # Off by default: TFLite's int8 pools must keep their input's scale, so a pool moved after its 1x1 conv
    # inherits the conv's signed pre-RELU range; on the reference Inception-v4 that cost 1.7 points of top-1
    # agreement (99.34% -> 97.63%), over the 99% budget, for INT8 29.1 -> 17.3 ms.
    commute_pools: bool = Field(False, description="pool after the 1x1 conv (exact in float; faster, less accurate INT8)")
    # XNNPACK has no int8 average pool: each ran in TFLite's reference kernel and split XNNPACK's graph
    # (Inception-v4 INT8 30.5 -> 15.9 ms with this on). The Edge TPU target keeps its pools regardless.
    # int16: TFLite's 16x8 quantization (int16 activations, int8 weights; float I/O). LiteRT runs it on its
    # reference kernels (XNNPACK has none): more accurate, much slower; the escalation ladder's 16-bit rung.
    activations: Literal["int8", "int16"] = Field("int8", description="INT8 model activation type (int16: 16x8)")
    depthwise_pools: bool = Field(True, description="INT8 average pools as depthwise conv + border MUL (XNNPACK int8)")
