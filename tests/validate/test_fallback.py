"""Fallback grows the float set until the budget holds, reports failure at its limit, and stops at its deadline."""
from __future__ import annotations

from edgeincep.recipes import Budget
from edgeincep.validate.fallback import fallback_search

BUDGET = Budget(max_top1_drop=0.5, min_agreement=0.99)


def _drift(drop, agree):
    return {"top1_drop_points": drop, "top1_agreement": agree, "logit_cosine": 1.0, "sqnr_db": 30.0}


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
