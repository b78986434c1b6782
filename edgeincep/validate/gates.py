"""Drift gates: compare a drift record with the recipe's budget; pure and backend-free."""
from __future__ import annotations

from edgeincep.recipes import Budget

EPS = 1e-9


def violations(drift: dict, budget: Budget) -> list[str]:
    drop, agreement, how = drift.get("top1_drop_points"), drift["top1_agreement"], ""
    if budget.confidence is not None:
        # No interval (a record made before intervals, or no images): the measured values stand.
        interval = (drift.get("confidence") or {}).get("intervals", {}).get(str(budget.confidence))
        if interval is not None:
            how = f" at the {budget.confidence:.0%} interval's bound"
            # The bootstrap's bound, or Wilson's where it is lower (the bootstrap cannot see past a set that
            # agrees everywhere).
            agreement = min(interval["agreement"][0], interval.get("agreement_wilson", [1.0])[0])
            if drop is not None and "top1_change_points" in interval:
                drop = -interval["top1_change_points"][0]
    out = []
    # A drop or agreement exactly at the budget passes: both are differences of image counts over n, whose
    # float rounding (100 * (0.93 - 0.9295) = 0.050000000000005596) must not turn "at" into "over".
    if drop is not None and drop > budget.max_top1_drop + EPS:
        out.append(f"top-1 dropped {drop:.2f} points{how} (budget {budget.max_top1_drop:g})")
    if agreement < budget.min_agreement - EPS:
        out.append(f"top-1 agreement with FP32 {agreement:.2%}{how} (budget >= {budget.min_agreement:.2%})")
    return out


def passes(drift: dict, budget: Budget) -> bool:
    return not violations(drift, budget)
