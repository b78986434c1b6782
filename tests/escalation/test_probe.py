"""The probe set: how many images a budget needs, and that it is never validation or calibration data."""
from __future__ import annotations

import shutil

import pytest

from edgeincep.core.errors import DataError
from edgeincep.data.folders import scan_folder
from edgeincep.escalation.probe import load_probe, needed_images
from edgeincep.recipes import Budget
from edgeincep.validate.confidence import wilson_interval


def test_one_flip_must_fit_inside_the_budget():
    # 0.05 points of top-1 is one image in 2000; 0.2% of agreement is one in 500
    assert needed_images(Budget(max_top1_drop=0.05, min_agreement=0.998)) == 2000
    assert needed_images(Budget()) == 200  # the default 0.5 points / 99%


@pytest.mark.parametrize("confidence", [0.9, 0.95, 0.99])
@pytest.mark.parametrize("min_agreement", [0.99, 0.998, 0.999])
def test_with_a_confidence_level_it_is_the_smallest_set_whose_perfect_agreement_passes(confidence, min_agreement):
    """Brute force against the gate's own interval: at the needed size an artifact that changes nothing can pass
    (Wilson's lower bound at the budget); one image fewer it cannot, unless the drop rule asks for more."""
    budget = Budget(max_top1_drop=100.0, min_agreement=min_agreement, confidence=confidence)
    n = needed_images(budget)
    assert wilson_interval(n, n, confidence)[0] >= min_agreement - 1e-12
    assert wilson_interval(n - 1, n - 1, confidence)[0] < min_agreement


def test_probe_images_that_are_validation_images_are_refused(tmp_path, labelled_dir):
    probe = tmp_path / "probe"
    shutil.copytree(labelled_dir, probe)
    with pytest.raises(DataError, match="also validation images"):
        load_probe(probe, pre=None, count=10, class_names=[], calib_paths=[], calib_x=None, calib_labels=None,
                   validation=scan_folder(labelled_dir))


def test_without_a_probe_folder_the_calibration_images_stand_in_and_the_run_says_so():
    import numpy as np

    x = np.zeros((300, 3, 8, 8), np.float32)
    probe = load_probe(None, pre=None, count=2000, class_names=[], calib_paths=[f"c{i}" for i in range(300)],
                       calib_x=x, calib_labels=None, validation=None)
    summary = probe.summary(Budget(max_top1_drop=0.05, min_agreement=0.998))
    assert summary["source"] == "calibration images" and not summary["resolves_budget"]
    assert any("no held-out probe folder" in n for n in summary["notes"])
    assert any("needs 2000" in n for n in summary["notes"])
