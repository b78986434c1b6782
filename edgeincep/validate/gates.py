"""Drift gates: compare a drift record with the recipe's budget; pure and backend-free."""
from __future__ import annotations

from edgeincep.recipes import Budget


def violations(drift: dict, budget: Budget) -> list[str]:
    out = []
    drop = drift.get("top1_drop_points")
    if drop is not None and drop > budget.max_top1_drop:
        out.append(f"top-1 dropped {drop:.2f} points (budget {budget.max_top1_drop:g})")
    if drift["top1_agreement"] < budget.min_agreement:
        out.append(f"top-1 agreement with FP32 {drift['top1_agreement']:.2%} (budget >= {budget.min_agreement:.2%})")
    return out


def passes(drift: dict, budget: Budget) -> bool:
    return not violations(drift, budget)
