"""The calibration set every quantizer shares: a seeded, class-balanced, preprocessed array.

ONNX Runtime's data reader, NNCF's dataset, TFLite's representative dataset and ModelOpt's
calibration array are all thin views over this one array, so every backend calibrates on the
very same images.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from edgeincep.cache import files_digest
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

    @cached_property
    def digest(self) -> str:
        """What a build's cache key takes from its calibration: the files' names and bytes, and the preprocessed
        array itself, so a change in the preprocessing arithmetic (not only in its settings) rebuilds."""
        h = hashlib.sha256(files_digest(self.paths).encode())
        h.update(np.ascontiguousarray(self.x).tobytes())
        return h.hexdigest()

    def summary(self) -> dict:
        return {"count": len(self.x), "requested": self.requested, "skipped": self.skipped,
                "shape": list(self.x.shape[1:])}


def load_calibration(root: Path, pre: Preprocess, *, count: int, seed: int = 0, skip_bad: bool = False,
                     min_count: int = 1, labels_csv: Path | None = None) -> CalibrationSet:
    images = scan_folder(root, labels_csv=labels_csv)
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
