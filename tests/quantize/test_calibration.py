"""The calibration set every backend shares, and what a build's cache key takes from it."""
from __future__ import annotations

import numpy as np

from edgeincep.core.preprocess import Preprocess
from edgeincep.paths import DEFAULT_CALIBRATION
from edgeincep.quantize.calibration import CalibrationSet, load_calibration


def test_the_cache_digest_changes_with_the_preprocessed_pixels_not_only_the_files():
    pre = Preprocess(75, (0.5,) * 3, (0.5,) * 3, 0.875, "bicubic")
    calib = load_calibration(DEFAULT_CALIBRATION, pre, count=20)
    same = load_calibration(DEFAULT_CALIBRATION, pre, count=20)
    assert calib.digest == same.digest
    # the same files through other arithmetic (here: another interpolation) must rebuild every backend
    other = load_calibration(DEFAULT_CALIBRATION, Preprocess(75, (0.5,) * 3, (0.5,) * 3, 0.875, "bilinear"), count=20)
    assert other.paths == calib.paths and other.digest != calib.digest
    shifted = CalibrationSet(np.roll(calib.x, 1, axis=-1), calib.paths, calib.requested, calib.skipped)
    assert shifted.digest != calib.digest
