"""Accuracy-aware fallback, written once for every backend.

Given a way to rebuild an artifact with some nodes kept in float and a way to score drift,
keep the most sensitive nodes in float, a few at a time, until the budget holds or the limit
is reached. Backends supply only `rebuild(excluded) -> artifact` and `score(artifact) -> drift`.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from edgeincep.console import note
from edgeincep.recipes import Budget
from edgeincep.validate.gates import passes


@dataclass
class FallbackResult:
    artifact: Any
    drift: dict
    float_nodes: list[str]
    passed: bool
    steps: list[dict] = field(default_factory=list)


def fallback_search(ranked: list[str], rebuild: Callable[[list[str]], Any], score: Callable[[Any], dict],
                    budget: Budget, max_float_nodes: int, first: tuple[Any, dict],
                    deadline: float = math.inf) -> FallbackResult:
    """Grow the float set 1, 2, 4, ... nodes along `ranked` (most damaged first). No new step starts after
    `deadline` (time.monotonic()); the last one built is returned, marked `stopped`."""
    artifact, drift = first
    steps = [{"float_nodes": 0, **brief(drift)}]
    if passes(drift, budget):
        return FallbackResult(artifact, drift, [], True, steps)
    n = 1
    excluded: list[str] = []
    while n <= min(max_float_nodes, len(ranked)):
        if time.monotonic() > deadline:
            steps.append({"stopped": "the time budget is spent"})
            break
        excluded = ranked[:n]
        note(f"fallback: keeping {n} most sensitive node(s) in float")
        artifact = rebuild(excluded)
        drift = score(artifact)
        steps.append({"float_nodes": n, "nodes": list(excluded), **brief(drift)})
        if passes(drift, budget):
            return FallbackResult(artifact, drift, excluded, True, steps)
        if n == min(max_float_nodes, len(ranked)):
            break
        n = min(2 * n, max_float_nodes, len(ranked))
    return FallbackResult(artifact, drift, excluded, False, steps)


def brief(drift: dict) -> dict:
    keys = ("top1_drop_points", "top1_agreement", "logit_cosine", "sqnr_db", "size_bytes", "latency_vs_fp32")
    return {k: drift[k] for k in keys if k in drift}
