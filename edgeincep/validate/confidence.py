"""How sure a drift number is: paired bootstrap intervals and McNemar's exact test, over per-image outcomes.

FP32 and the quantized artifact are scored on the same images, so their outcomes are paired: the
bootstrap resamples images (both outcomes of an image together), and McNemar's test looks only at
the images where exactly one of the two is right. On 300 images one flipped prediction moves
agreement by 0.33 points; these say whether a measured drop or agreement could be luck.
"""
from __future__ import annotations

import math

import numpy as np

# Resamples per chunk: bounds the index array at CHUNK x images (2,000 x 10,000 int64 would be 160 MB at once).
CHUNK = 250
# The two-sided levels every record carries; a budget's `confidence` names one of them.
LEVELS = (0.9, 0.95, 0.99)


def paired_bootstrap(ref_correct: np.ndarray | None, other_correct: np.ndarray | None, agree: np.ndarray, *,
                     resamples: int = 2000, seed: int = 0) -> dict:
    """Per level in LEVELS, percentile intervals of agreement and (with labels) of the top-1 change
    other - ref, in points.

    Each resample draws n image indices with replacement (numpy's PCG64 from `seed`, one `integers` call
    per chunk of resamples), so a given seed gives the same interval on any machine."""
    agree = np.asarray(agree, dtype=bool)
    n = len(agree)
    if n == 0:
        raise ValueError("no images to bootstrap")
    rng = np.random.default_rng(seed)
    diff = None
    if ref_correct is not None and other_correct is not None:
        diff = np.asarray(other_correct, np.int8) - np.asarray(ref_correct, np.int8)
    agree_means, change_means = [], []
    done = 0
    while done < resamples:
        k = min(CHUNK, resamples - done)
        idx = rng.integers(0, n, size=(k, n))
        agree_means.append(agree[idx].mean(axis=1))
        if diff is not None:
            change_means.append(diff[idx].mean(axis=1))
        done += k
    a = np.concatenate(agree_means)
    c = 100 * np.concatenate(change_means) if diff is not None else None
    intervals = {}
    for level in LEVELS:
        q = [100 * (1 - level) / 2, 100 * (1 + level) / 2]
        intervals[str(level)] = {"agreement": [float(x) for x in np.percentile(a, q)],
                                 "agreement_wilson": wilson_interval(int(agree.sum()), n, level)}
        if c is not None:
            intervals[str(level)]["top1_change_points"] = [float(x) for x in np.percentile(c, q)]
    return {"method": "paired bootstrap, percentile", "resamples": resamples, "seed": seed, "images": n,
            "intervals": intervals}


def wilson_interval(successes: int, n: int, level: float) -> list[float]:
    """Wilson's score interval of a proportion. Where every image agrees the bootstrap has nothing to resample
    and gives [1, 1]; Wilson's lower bound is still below 1 (300 of 300 at 95%: 98.7%), as it should be."""
    z = z_value(level)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return [max(0.0, centre - half), min(1.0, centre + half)]


def z_value(level: float) -> float:
    """The standard normal quantile at (1 + level) / 2, by bisection on erf (no scipy on devices)."""
    target, lo, hi = (1 + level) / 2, 0.0, 10.0
    for _ in range(100):
        mid = (lo + hi) / 2
        if 0.5 * (1 + math.erf(mid / math.sqrt(2))) < target:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def mcnemar_exact(only_ref_right: int, only_other_right: int) -> float:
    """Two-sided exact McNemar p-value: under "both equally accurate", each discordant image is a fair coin.

    p = min(1, 2 * P[X <= min(b, c)]) for X ~ Binomial(b + c, 1/2); 1.0 when no image is discordant."""
    b, c = int(only_ref_right), int(only_other_right)
    n = b + c
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(b, c) + 1))
    return min(1.0, 2 * tail / 2 ** n)


def confidence_record(ref_logits: np.ndarray, other_logits: np.ndarray, labels: np.ndarray | None, *,
                      resamples: int = 2000, seed: int = 0) -> dict:
    """The drift record's `confidence` entry for two logit arrays over the same images."""
    ref_top, other_top = ref_logits.argmax(1), other_logits.argmax(1)
    agree = ref_top == other_top
    rec: dict = {}
    if labels is not None:
        ref_ok, other_ok = ref_top == labels, other_top == labels
        rec = paired_bootstrap(ref_ok, other_ok, agree, resamples=resamples, seed=seed)
        b, c = int(np.sum(ref_ok & ~other_ok)), int(np.sum(~ref_ok & other_ok))
        rec["mcnemar"] = {"only_fp32_right": b, "only_other_right": c, "p_value": mcnemar_exact(b, c)}
    else:
        rec = paired_bootstrap(None, None, agree, resamples=resamples, seed=seed)
    return rec
