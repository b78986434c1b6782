"""Decode any common image file to RGB and apply a model's eval preprocessing with Pillow + numpy.

The arithmetic (RGB conversion, resize the shorter side to floor(size / crop_pct), centre-crop
`size`, scale to [0, 1], normalise by mean/std, CHW float32) lives in device/common.py, which
every device bundle ships beside its runner: host calibration, host validation and the devices
run one implementation. This module adds the host's own error reporting (DataError naming the file).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from edgeincep.core.errors import DataError
from edgeincep.core.preprocess import Preprocess
from edgeincep.device.common import IMAGE_SUFFIXES, MAX_ASPECT, MAX_PIXELS, resample_filter, resize_size, to_rgb
from edgeincep.device.common import BadImage as DeviceBadImage
from edgeincep.device.common import load_image as decode_image
from edgeincep.device.common import preprocess as preprocess_image

__all__ = ["IMAGE_SUFFIXES", "MAX_ASPECT", "MAX_PIXELS", "BadImage", "load_and_preprocess", "load_image",
           "preprocess", "resample_filter", "resize_size", "to_rgb"]

class BadImage(DataError):
    """One image that cannot be decoded; the folder loader collects these."""


def load_image(path: str | Path) -> Image.Image:
    """The bundles' decoder (device/common.py), with the file named in the error."""
    try:
        return decode_image(path)
    except DeviceBadImage as e:
        raise BadImage(str(e), path) from None


def preprocess(img: Image.Image, cfg: Preprocess, input_size: int | None = None) -> np.ndarray:
    """Shorter side to floor(size / crop_pct), centre crop, /255, (x - mean) / std: CHW float32, computed
    by the very function every device bundle's runner uses."""
    return preprocess_image(img, {"input_size": input_size or cfg.input_size, "crop_pct": cfg.crop_pct,
                                  "interpolation": cfg.interpolation, "mean": cfg.mean, "std": cfg.std})


def load_and_preprocess(path: str | Path, cfg: Preprocess, input_size: int | None = None) -> np.ndarray:
    return preprocess(load_image(path), cfg, input_size)
