"""Latency measured side by side: artifacts interleaved run by run (A B C A B C ...).

Interleaving makes the ratios between artifacts robust on a noisy machine: a slow moment
hits every artifact alike instead of whichever happened to be running.
"""
from __future__ import annotations

import time

import numpy as np

from edgeincep.core.predictor import Predictor


def interleaved_latency(predictors: list[Predictor], x: np.ndarray, *, runs: int = 20, warmup: int = 3,
                        on_round=None) -> dict:
    """Per predictor: p50/p90/p99/mean milliseconds of `predict(x)` over `runs` interleaved rounds.

    The order inside a round rotates, so no artifact always runs right after the same neighbour
    (caches and clocks warmed by the previous one would otherwise favour it every time).
    """
    for _ in range(warmup):
        for p in predictors:
            p.predict(x)
    times: dict[str, list[float]] = {p.name: [] for p in predictors}
    n = len(predictors)
    for r in range(runs):
        for i in range(n):
            p = predictors[(i + r) % n]
            t0 = time.perf_counter()
            p.predict(x)
            times[p.name].append((time.perf_counter() - t0) * 1e3)
        if on_round:
            on_round()
    return {name: summarize(t, int(x.shape[0])) for name, t in times.items()}


def summarize(ms: list[float], batch: int) -> dict:
    p50 = float(np.percentile(ms, 50))
    return {"p50_ms": p50, "p90_ms": float(np.percentile(ms, 90)), "p99_ms": float(np.percentile(ms, 99)),
            "mean_ms": float(np.mean(ms)), "min_ms": float(np.min(ms)), "runs": len(ms), "batch": batch,
            "images_per_s": batch * 1e3 / p50}
