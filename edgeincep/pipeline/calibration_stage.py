"""The calibration set's relations to the rest of a run: its labels in the model's class order, and the rule
that no calibration image may be a validation image."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from edgeincep.core.errors import DataError
from edgeincep.data.folders import ImageSet, content_overlap
from edgeincep.quantize.calibration import CalibrationSet


def calibration_labels(calib_root: Path, calib: CalibrationSet, class_names: list[str],
                       labels_csv: Path | None = None) -> np.ndarray | None:
    """The calibration images' classes in the model's order, matched as validation folders are (model_labels);
    None where the folder or the model has no names, or a class of the folder is not the model's: calibration
    needs no labels, only the steps that can use them do."""
    from edgeincep.data.folders import model_labels, scan_folder

    images: ImageSet = scan_folder(calib_root, labels_csv=labels_csv)
    if not images.labelled or not class_names:
        return None
    try:
        labels = model_labels(images, class_names)
    except DataError:
        return None
    by_path = {str(p): int(lab) for p, lab in zip(images.paths, labels, strict=True)}
    found = [by_path.get(p) for p in calib.paths]
    return None if None in found else np.asarray(found)


def refuse_overlap(calib_paths: list[str], images: ImageSet, val_dir: Path) -> None:
    leaked = content_overlap(calib_paths, images.paths)
    if leaked:
        raise DataError(f"{len(leaked)} validation image(s) are also calibration images (e.g. {leaked[0][1]} = "
                        f"{leaked[0][0]}); accuracy would be measured on calibration data", val_dir)
