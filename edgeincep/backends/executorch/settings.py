"""The recipe's `executorch:` section."""
from __future__ import annotations

from typing import Literal

from pydantic import Field

from edgeincep.core.settings import Strict


class ExecuTorchSettings(Strict):
    references: list[Literal["fp32"]] = Field(["fp32"], description="float .pte files validated beside the INT8 one")
    per_channel: bool = Field(True, description="one symmetric INT8 weight scale per output channel")
    calibration_batch: int = Field(16, ge=1, description="images per calibration forward pass (PyTorch, eager)")
