"""The recipe's `onnxruntime:` section."""
from __future__ import annotations

from typing import Literal

from pydantic import Field

from edgeincep.core.settings import Strict


class OrtSettings(Strict):
    # a16w8: uint16 activations, int8 weights (Q/DQ in ONNX Runtime's com.microsoft domain; its CPU runs the
    # convolutions in float between them): the escalation ladder's 16-bit rung
    format: Literal["u8s8", "s8s8", "a16w8"] = "u8s8"
    per_channel: bool = True
    commute_pools: bool = Field(True, description="pool after the 1x1 conv, not before (exact; cheaper INT8)")
