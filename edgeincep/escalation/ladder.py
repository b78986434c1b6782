"""The escalation ladder: what a run tries, in order, when plain INT8 misses the budget.

Written once against the Backend contract. Each rung (rungs.py, registered by name) makes one or more
candidate artifacts; every candidate is scored on the probe set (never the validation set), and the
climb stops at the first rung whose best candidate meets the budget there. No rung starts once the
recipe's time budget is spent, and the searches that can run long (fallback, OpenVINO's accuracy control,
QAT's fine-tuning) stop at it. Every rung appears in the record, with what it tried or why it did not, so a
report can show the whole ladder and a test can tell a skipped rung from a failed one.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from edgeincep.console import err, note
from edgeincep.core.errors import OutOfTime
from edgeincep.escalation import rungs as _rungs  # noqa: F401 - registers the rungs
from edgeincep.escalation.base import RUNGS, Candidate, Context
from edgeincep.validate.gates import violations

if TYPE_CHECKING:
    from edgeincep.core.artifact import Artifact
    from edgeincep.core.settings import RecipeBase
    from edgeincep.quantize.calibration import CalibrationSet


def _maker(ctx: Context):
    def make(label: str, build: Callable[[], Artifact], recipe: RecipeBase, calib: CalibrationSet,
             **info) -> Candidate:
        t0 = time.perf_counter()
        with err.status(f"{ctx.backend.name}: escalation, {label}"):
            art = build()
            drift = ctx.score(art)
        return Candidate(label, art, recipe, calib, drift, time.perf_counter() - t0, info)
    return make


def climb(ctx: Context, rungs: list[str], time_budget_s: float) -> tuple[Candidate, dict]:
    """The artifact the run ships (the first candidate that meets the budget on the probe, else the one
    that came closest) and the record of every rung."""
    budget = ctx.recipe.budget
    make = _maker(ctx)
    t0 = time.perf_counter()
    ctx.deadline = time.monotonic() + time_budget_s
    best: Candidate | None = None
    history: list[Candidate] = []
    first: Candidate | None = None
    met_by = None
    record = []
    for name in rungs:
        rung = RUNGS[name]()
        entry = {"rung": name, "title": rung.title}
        record.append(entry)
        spent = time.perf_counter() - t0
        if met_by is not None:
            entry |= {"status": "not needed", "reason": f"the budget was met at {met_by}"}
            continue
        if name != "ptq" and spent > time_budget_s:
            entry |= {"status": "not tried", "reason": f"the time budget is spent ({spent:.0f} s of {time_budget_s:g} s)"}
            continue
        reason = rung.unavailable(ctx)
        if reason:
            entry |= {"status": "not applicable", "reason": reason}
            continue
        r0 = time.perf_counter()
        try:
            tried = rung.candidates(ctx, history, make)
        except OutOfTime as e:
            entry |= {"status": "stopped", "seconds": round(time.perf_counter() - r0, 2),
                      "reason": f"stopped at the time budget ({time_budget_s:g} s): {e}"}
            note(f"{ctx.backend.name}: rung '{name}' stopped at the time budget")
            continue
        history += tried
        entry["seconds"] = round(time.perf_counter() - r0, 2)
        if not tried:
            entry |= {"status": "not applicable", "reason": getattr(rung, "reason", "nothing to try")}
            continue
        top = max(tried, key=lambda c: c.rank(budget))
        first = first or top
        entry["candidates"] = [c.row(budget) for c in tried]
        entry["chosen"] = top.label
        if best is None or top.rank(budget) > best.rank(budget):
            best = top
        if top.passes(budget):
            entry["status"] = "met"
            met_by = name
        elif any(c.info.get("stopped") for c in tried):
            entry |= {"status": "stopped", "reason": f"stopped at the time budget ({time_budget_s:g} s)"}
        else:
            entry["status"] = "missed"
            if name != rungs[-1]:
                note(f"{ctx.backend.name}: rung '{name}' ({rung.title}) missed the budget on the probe "
                     f"({'; '.join(violations(top.drift, budget))}); climbing")
    assert best is not None, "the ptq rung always makes a candidate"
    base = (first.drift.get("latency_vs_fp32") if first else None) or None
    for entry in record:
        for c, row in zip((c for c in history if c.info.get("rung") == entry["rung"]), entry.get("candidates", []),
                          strict=False):
            row["shipped"] = c is best
            if base and row.get("latency_vs_fp32"):
                row["latency_vs_ptq"] = row["latency_vs_fp32"] / base
    return best, {"met_by": met_by, "shipped": f"{best.info.get('rung')}: {best.label}",
                  "float_nodes": best.info.get("float_nodes", []),
                  "seconds": round(time.perf_counter() - t0, 2),
                  "time_budget_s": time_budget_s, "probe": ctx.probe.summary(budget), "rungs": record}
