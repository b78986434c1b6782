"""Which trials are worth having: the Pareto front per target and the winner that becomes a recipe file.

Objectives: top-1 agreement with FP32 (higher is better), batch-1 latency as a ratio to FP32 measured
interleaved in the same process (lower; a ratio, so trials timed on different nodes compare), file size
(lower). A trial is on the front when no other trial of its model and target is at least as good in all three
and better in one.
"""
from __future__ import annotations


def _key(r: dict) -> tuple[float, float, float]:
    return (-float(r["top1_agreement"]), float(r["latency_ratio"]), float(r["size_bytes"]))


def _dominates(a: dict, b: dict) -> bool:
    ka, kb = _key(a), _key(b)
    return all(x <= y for x, y in zip(ka, kb, strict=True)) and ka != kb


def front(rows: list[dict]) -> list[dict]:
    ok = [r for r in rows if r.get("status") == "ok"]
    return [r for r in ok if not any(_dominates(o, r) for o in ok if o is not r)]


def winner(rows: list[dict]) -> dict | None:
    """The trial a user should take: within the drift budget if any is, then the best agreement, then the
    fastest, then the smallest."""
    ok = [r for r in rows if r.get("status") == "ok"]
    if not ok:
        return None
    within = [r for r in ok if not r.get("gate_violations")] or ok
    return min(within, key=_key)
