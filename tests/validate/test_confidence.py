"""Drift with confidence: paired bootstrap intervals checked against brute force, McNemar's exact test against
the binomial it is, and gates that use an interval's bound so a small set cannot pass a strict budget by luck."""
from __future__ import annotations

import itertools
import math
from fractions import Fraction

import numpy as np
import pytest

from edgeincep.recipes import Budget
from edgeincep.validate.confidence import (
    LEVELS,
    confidence_record,
    mcnemar_exact,
    paired_bootstrap,
    wilson_interval,
)
from edgeincep.validate.drift import drift_record
from edgeincep.validate.gates import violations


def _exact_bootstrap_quantiles(values: np.ndarray, level: float) -> tuple[float, float]:
    """Every one of the n^n resamples of a tiny sample, each equally likely: the bootstrap distribution itself."""
    n = len(values)
    means = np.sort([np.mean(values[list(idx)]) for idx in itertools.product(range(n), repeat=n)])
    q = [100 * (1 - level) / 2, 100 * (1 + level) / 2]
    return tuple(float(x) for x in np.percentile(means, q))


def test_bootstrap_interval_matches_the_exact_bootstrap_distribution_of_a_tiny_sample():
    agree = np.array([1, 1, 1, 0, 1, 1], bool)  # 6^6 = 46,656 resamples enumerated
    got = paired_bootstrap(None, None, agree, resamples=40_000, seed=1)
    for level in LEVELS:
        lo, hi = _exact_bootstrap_quantiles(agree.astype(float), level)
        g_lo, g_hi = got["intervals"][str(level)]["agreement"]
        # Monte Carlo over 40k resamples: the sample means take only 7 values, so the percentiles match
        # the exact ones to within one step (1/6) at worst, and usually exactly.
        assert abs(g_lo - lo) <= 1 / 6 + 1e-9 and abs(g_hi - hi) <= 1 / 6 + 1e-9


def test_top1_change_interval_is_paired_and_matches_brute_force_resampling():
    rng = np.random.default_rng(3)
    n = 400
    ref_ok = rng.random(n) < 0.9
    other_ok = ref_ok.copy()
    flip = rng.choice(n, 12, replace=False)
    other_ok[flip] = ~other_ok[flip]
    agree = rng.random(n) < 0.97
    got = paired_bootstrap(ref_ok, other_ok, agree, resamples=500, seed=7)
    # Brute force: one resample at a time, the same draws (the chunked calls consume the generator alike).
    draws = np.random.default_rng(7)
    idx = np.concatenate([draws.integers(0, n, size=(250, n)) for _ in range(2)])
    change = [100 * (np.mean(other_ok[i]) - np.mean(ref_ok[i])) for i in idx]
    agreement = [np.mean(agree[i]) for i in idx]
    for level in LEVELS:
        q = [100 * (1 - level) / 2, 100 * (1 + level) / 2]
        rec = got["intervals"][str(level)]
        np.testing.assert_allclose(rec["top1_change_points"], np.percentile(change, q), atol=1e-9)
        np.testing.assert_allclose(rec["agreement"], np.percentile(agreement, q), atol=1e-12)
    # Paired: an artifact equal to FP32 on every image has a zero-width change interval however noisy accuracy is.
    same = paired_bootstrap(ref_ok, ref_ok, agree, resamples=200)
    assert same["intervals"]["0.99"]["top1_change_points"] == [0.0, 0.0]


def test_large_sample_interval_agrees_with_the_normal_approximation():
    n, p = 10_000, 0.99
    agree = np.zeros(n, bool)
    agree[: int(n * p)] = True
    lo, hi = paired_bootstrap(None, None, agree, resamples=4000)["intervals"]["0.95"]["agreement"]
    half = 1.96 * math.sqrt(p * (1 - p) / n)
    assert lo == pytest.approx(p - half, abs=half * 0.15) and hi == pytest.approx(p + half, abs=half * 0.15)


def test_mcnemar_exact_is_the_two_sided_binomial_tail():
    def brute(b, c):
        n = b + c
        if n == 0:
            return 1.0
        tail = sum(Fraction(math.comb(n, i), 2 ** n) for i in range(min(b, c) + 1))
        return float(min(Fraction(1), 2 * tail))

    for b, c in [(0, 0), (10, 0), (0, 10), (3, 5), (12, 30), (50, 50), (1, 200)]:
        assert mcnemar_exact(b, c) == pytest.approx(brute(b, c), rel=1e-12)
    assert mcnemar_exact(10, 0) == pytest.approx(2 / 1024)
    from scipy.stats import binomtest

    assert mcnemar_exact(12, 30) == pytest.approx(binomtest(12, 42, 0.5).pvalue, rel=1e-9)


def test_drift_record_carries_intervals_and_mcnemar_on_labelled_images():
    rng = np.random.default_rng(0)
    ref = rng.standard_normal((300, 10)).astype(np.float32)
    labels = ref.argmax(1).copy()
    other = ref.copy()
    other[:6] = np.roll(other[:6], 1, axis=1)  # 6 of 300 images change their top-1
    rec = drift_record(ref, other, labels, [f"{i}.png" for i in range(300)], [str(i) for i in range(10)])
    conf = rec["confidence"]
    assert conf["images"] == 300 and set(conf["intervals"]) == {"0.9", "0.95", "0.99"}
    lo, hi = conf["intervals"]["0.95"]["agreement"]
    assert lo < rec["top1_agreement"] == 0.98 < hi
    assert conf["mcnemar"] == {"only_fp32_right": 6, "only_other_right": 0, "p_value": pytest.approx(2 / 64)}
    assert confidence_record(ref, other, None)["intervals"]["0.95"].keys() == {"agreement", "agreement_wilson"}


def test_wilson_interval_has_room_below_a_set_that_agrees_everywhere():
    lo, hi = wilson_interval(300, 300, 0.95)
    assert hi == pytest.approx(1.0) and lo == pytest.approx(300 / (300 + 1.959964 ** 2), rel=1e-6)  # 98.7%
    # Against the closed form at an interior point.
    k, n, z = 9_950, 10_000, 1.959964
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    np.testing.assert_allclose(wilson_interval(k, n, 0.95), [centre - half, centre + half], rtol=1e-6)


def test_strict_budget_gates_on_the_bound_so_a_small_set_cannot_pass_by_luck():
    """300 images that all agree measure 100% agreement, but that is 1 flip in 500 from being a failure: the
    lower 95% bound (98.7%) is under 99.8%, so with `confidence` the strict budget fails. 10,000 images
    with 5 flips pass it."""
    budget = Budget(max_top1_drop=0.05, min_agreement=0.998, confidence=0.95)
    plain = Budget(max_top1_drop=0.05, min_agreement=0.998)
    rng = np.random.default_rng(1)

    def record(n, flips):
        ref = rng.standard_normal((n, 10)).astype(np.float32)
        other = ref.copy()
        other[:flips] = np.roll(other[:flips], 1, axis=1)
        return drift_record(ref, other, ref.argmax(1), [""] * n, [str(i) for i in range(10)])

    small = record(300, 0)
    assert small["top1_agreement"] == 1.0 and violations(small, plain) == []
    (why,) = violations(small, budget)
    assert why.startswith("top-1 agreement with FP32 98.7") and "at the 95% interval's bound" in why
    big = record(10_000, 5)
    assert big["top1_agreement"] == 0.9995 and big["top1_drop_points"] == pytest.approx(0.05)
    # Agreement holds at its bound; the drop (5 correct predictions lost, 0.05 points measured: just inside the
    # budget) does not: its upper bound is twice that.
    (why,) = violations(big, budget)
    assert why.startswith("top-1 dropped 0.1") and "interval's bound (budget 0.05)" in why
    assert violations(big, plain) == []


def test_recipe_budget_names_one_of_the_recorded_levels():
    from pydantic import ValidationError

    assert Budget(confidence=0.99).confidence == 0.99
    with pytest.raises(ValidationError):
        Budget(confidence=0.8)
