"""Gates fail exactly when the budget is exceeded; fallback grows the float set until it holds."""
from __future__ import annotations

from edgeincep.recipes import Budget
from edgeincep.validate.fallback import fallback_search
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


def test_fallback_stops_at_the_first_float_set_that_meets_the_budget():
    # drift improves as the two really sensitive nodes ("a", "b") go float
    def rebuild(nodes):
        return tuple(nodes)

    def score(art):
        fixed = len({"a", "b"} & set(art))
        return _drift(1.0 - 0.4 * fixed, 0.98 + 0.006 * fixed)

    res = fallback_search(["a", "b", "c", "d", "e"], rebuild, score, BUDGET, 8, ((), score(())))
    assert res.passed and res.float_nodes == ["a", "b"]
    assert [s["float_nodes"] for s in res.steps] == [0, 1, 2]


def test_fallback_reports_failure_at_the_limit():
    res = fallback_search(["a", "b", "c"], lambda n: tuple(n), lambda a: _drift(3.0, 0.5), BUDGET, 2,
                          ((), _drift(3.0, 0.5)))
    assert not res.passed and res.float_nodes == ["a", "b"]
    assert [s["float_nodes"] for s in res.steps] == [0, 1, 2]


def test_no_fallback_when_first_build_passes():
    res = fallback_search(["a"], lambda n: n, lambda a: _drift(0, 1), BUDGET, 8, ("art", _drift(0.1, 0.995)))
    assert res.passed and res.float_nodes == [] and res.artifact == "art"


def test_fallback_starts_no_step_after_the_deadline_and_keeps_what_it_had():
    built = []
    res = fallback_search(["a", "b"], lambda n: built.append(n) or tuple(n), lambda a: _drift(3.0, 0.5), BUDGET, 8,
                          ("ptq", _drift(3.0, 0.5)), deadline=0.0)
    assert built == [] and not res.passed and res.artifact == "ptq" and res.float_nodes == []
    assert res.steps[-1] == {"stopped": "the time budget is spent"}
