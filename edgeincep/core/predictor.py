"""What every backend's runtime is to the rest of the tool: NCHW float32 batch in, logits out."""
from __future__ import annotations

from typing import Protocol

import numpy as np


class Predictor(Protocol):
    name: str
    executed_precision: str  # what the runtime really ran in (may differ from the file's)

    def predict(self, x: np.ndarray) -> np.ndarray: ...
