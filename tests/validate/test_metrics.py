"""Drift metrics on hand-made logits, where the right answer is known."""
from __future__ import annotations

import numpy as np
import pytest

from edgeincep.validate import metrics as M
from edgeincep.validate.drift import drift_record

REF = np.array([[3.0, 2.0, 1.0, 0.0, -1.0, -2.0],
                [0.0, 5.0, 1.0, 0.0, 0.0, 0.0],
                [1.0, 0.0, 0.0, 0.0, 0.0, 4.0]])


def test_accuracy_top1_top5():
    labels = np.array([0, 2, 5])
    assert M.accuracy(REF, labels, 1) == pytest.approx(2 / 3)
    assert M.accuracy(REF, labels, 5) == 1.0


def test_identical_outputs_have_perfect_agreement():
    assert M.top1_agreement(REF, REF) == 1.0 and M.top5_overlap(REF, REF) == 1.0
    assert M.cosine(REF, REF) == pytest.approx(1.0) and M.sqnr_db(REF, REF) == float("inf")


def test_one_flip_is_found_and_counted():
    other = REF.copy()
    other[1, 2] = 6.0  # image 1 now predicts class 2
    rec = drift_record(REF, other, np.array([0, 2, 5]), ["a", "b", "c"], [f"k{i}" for i in range(6)])
    assert rec["top1_agreement"] == pytest.approx(2 / 3) and rec["n_flipped"] == 1
    assert rec["flipped"] == [{"image": "b", "fp32": "k1", "other": "k2", "label": "k2"}]
    assert rec["top1_drop_points"] == pytest.approx(-100 / 3)  # the flip fixed a mistake: accuracy rose
    assert rec["per_class_change_points"][2] == pytest.approx(100.0)


def test_sqnr_falls_as_noise_grows():
    rng = np.random.default_rng(0)
    small, big = REF + 0.01 * rng.standard_normal(REF.shape), REF + 0.5 * rng.standard_normal(REF.shape)
    assert M.sqnr_db(REF, small) > M.sqnr_db(REF, big) > 0
