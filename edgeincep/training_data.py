"""Training arrays from Fashion-MNIST or from a user's train/ + val/ image folders."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from edgeincep.core.errors import DataError
from edgeincep.data import fashion_mnist as fm
from edgeincep.data.folders import scan_folder
from edgeincep.data.images import load_image

NATIVE = 128  # user images are stored at this size before the per-model resize


def load_training_data(src: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[str]]:
    if src == "fashion-mnist":
        tx, ty = fm.load_split("train")
        vx, vy = fm.load_split("test")
        return tx, ty, vx, vy, list(fm.CLASS_NAMES)
    root = Path(src)
    train, val = scan_folder(root / "train"), scan_folder(root / "val")
    if not (train.labelled and val.labelled):
        raise DataError("training needs class subfolders in both train/ and val/", root)
    if train.class_names != val.class_names:
        raise DataError("train/ and val/ have different class folders", root)
    return (*_arrays(train), *_arrays(val), train.class_names)


def _arrays(images) -> tuple[np.ndarray, np.ndarray]:
    xs = np.stack([np.asarray(load_image(p).resize((NATIVE, NATIVE))) for p in images.paths])
    return xs, np.asarray(images.labels, np.int64)
