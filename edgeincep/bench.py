"""Latency measured side by side: artifacts interleaved run by run (A B C A B C ...).

Interleaving makes the ratios between artifacts robust on a noisy machine: a slow moment
hits every artifact alike instead of whichever happened to be running.
"""
from __future__ import annotations

import time

import numpy as np

from .targets.base import Predictor


def interleaved_latency(predictors: list[Predictor], x: np.ndarray, *, runs: int = 20, warmup: int = 3) -> dict:
    """Per predictor: p50/p90/p99/mean milliseconds of `predict(x)` over `runs` interleaved rounds."""
    for _ in range(warmup):
        for p in predictors:
            p.predict(x)
    times: dict[str, list[float]] = {p.name: [] for p in predictors}
    for _ in range(runs):
        for p in predictors:
            t0 = time.perf_counter()
            p.predict(x)
            times[p.name].append((time.perf_counter() - t0) * 1e3)
    return {name: {"p50_ms": float(np.percentile(t, 50)), "p90_ms": float(np.percentile(t, 90)),
                   "p99_ms": float(np.percentile(t, 99)), "mean_ms": float(np.mean(t)), "runs": runs,
                   "batch": int(x.shape[0])}
            for name, t in times.items()}
