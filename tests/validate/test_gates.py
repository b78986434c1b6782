"""Gates fail exactly when the budget is exceeded, at its boundary whatever the float rounding."""
from __future__ import annotations

from edgeincep.recipes import Budget
from edgeincep.validate.gates import violations

BUDGET = Budget(max_top1_drop=0.5, min_agreement=0.99)


def _drift(drop, agree):
    return {"top1_drop_points": drop, "top1_agreement": agree, "logit_cosine": 1.0, "sqnr_db": 30.0}


def test_gate_boundaries():
    assert violations(_drift(0.5, 0.99), BUDGET) == []
    assert violations(_drift(0.51, 0.99), BUDGET) == ["top-1 dropped 0.51 points (budget 0.5)"]
    assert "agreement" in violations(_drift(0.0, 0.989), BUDGET)[0]
    assert len(violations(_drift(2.0, 0.5), BUDGET)) == 2
    assert violations({"top1_agreement": 1.0}, BUDGET) == []  # unlabelled: agreement only


def test_exactly_at_the_budget_passes_whatever_the_float_rounding():
    # One image of 2,000 turned wrong is exactly 0.05 points, but 100 * (0.93 - 0.9295) is 0.0500000000000056
    strict = Budget(max_top1_drop=0.05, min_agreement=0.998)
    assert 100 * (0.93 - 0.9295) > 0.05
    assert violations(_drift(100 * (0.93 - 0.9295), 1996 / 2000), strict) == []
    assert violations(_drift(100 * (0.93 - 0.929), 1995 / 2000), strict) == [
        "top-1 dropped 0.10 points (budget 0.05)", "top-1 agreement with FP32 99.75% (budget >= 99.80%)"]
