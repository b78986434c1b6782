"""The calibration set's relations to the rest of a run: its labels in the model's class order, and the rule
that no calibration image may be a validation image."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from edgeincep.core.errors import DataError
from edgeincep.data.folders import ImageSet, content_overlap
from edgeincep.quantize.calibration import CalibrationSet


def calibration_labels(calib_root: Path, calib: CalibrationSet, class_names: list[str]) -> np.ndarray | None:
    from edgeincep.data.folders import scan_folder

    images: ImageSet = scan_folder(calib_root)
    if not images.labelled or not class_names:
        return None
    by_path = {str(p): images.class_names[lab] for p, lab in zip(images.paths, images.labels, strict=True)}
    index = {n: i for i, n in enumerate(class_names)}
    try:
        return np.asarray([index[by_path[p]] for p in calib.paths])
    except KeyError:
        return None


def refuse_overlap(calib_paths: list[str], images: ImageSet, val_dir: Path) -> None:
    leaked = content_overlap(calib_paths, images.paths)
    if leaked:
        raise DataError(f"{len(leaked)} validation image(s) are also calibration images (e.g. {leaked[0][1]} = "
                        f"{leaked[0][0]}); accuracy would be measured on calibration data", val_dir)
