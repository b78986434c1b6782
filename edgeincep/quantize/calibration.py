"""The calibration set every quantizer shares: a seeded, class-balanced, preprocessed array.

ONNX Runtime's data reader, NNCF's dataset, TFLite's representative dataset and ModelOpt's
calibration array are all thin views over this one array, so every backend calibrates on the
very same images.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeincep.console import err, note
from edgeincep.core.errors import DataError
from edgeincep.core.preprocess import Preprocess
from edgeincep.data.folders import balanced_subset, iter_batches, scan_folder


@dataclass
class CalibrationSet:
    x: np.ndarray                 # N x 3 x H x W float32, preprocessed
    paths: list[str]
    requested: int
    skipped: int

    def __len__(self) -> int:
        return len(self.x)

    def batches(self, batch_size: int):
        for i in range(0, len(self.x), batch_size):
            yield self.x[i:i + batch_size]

    def summary(self) -> dict:
        return {"count": len(self.x), "requested": self.requested, "skipped": self.skipped,
                "shape": list(self.x.shape[1:])}


def load_calibration(root: Path, pre: Preprocess, *, count: int, seed: int = 0, skip_bad: bool = False,
                     min_count: int = 1) -> CalibrationSet:
    images = scan_folder(root)
    if len(images) < min_count:
        raise DataError(f"calibration set has {len(images)} images, fewer than the {min_count} required", root)
    if len(images) < count:
        # Fewer images than the recipe asks is usable (ranges from 30 good images beat none) but it
        # changes the result, so it is said, and the report records requested vs used.
        note(f"calibration: {root} has {len(images)} images, fewer than the {count} the recipe asks for; "
             f"calibrating on all {len(images)}")
    chosen = balanced_subset(images, count, seed)
    xs, kept = [], []
    with err.status(f"preprocessing {len(chosen)} calibration images"):
        for x, _, idx in iter_batches(chosen, pre, 256, skip_bad=skip_bad):
            xs.append(x)
            kept += idx
    if len(kept) < max(min_count, 1):
        raise DataError(f"only {len(kept)} calibration images were readable, fewer than the {max(min_count, 1)} required", root)
    # paths[i] must describe x[i] (labels and the cache key are read from them), so skipped files leave both
    return CalibrationSet(np.concatenate(xs), [str(chosen.paths[i]) for i in kept], count, len(chosen.skipped))
