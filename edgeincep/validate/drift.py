"""Accuracy of each artifact and its drift from the FP32 reference, as one JSON-ready record."""
from __future__ import annotations

import numpy as np

from edgeincep.validate import metrics as M
from edgeincep.validate.confidence import confidence_record


def accuracy_record(logits: np.ndarray, labels: np.ndarray | None, class_names: list[str]) -> dict:
    if labels is None:
        return {}
    n = max(len(class_names), logits.shape[1])
    return {"top1": M.accuracy(logits, labels, 1), "top5": M.accuracy(logits, labels, 5),
            "per_class": M.per_class_accuracy(logits, labels, n)}


def drift_record(ref: np.ndarray, other: np.ndarray, labels: np.ndarray | None, paths: list[str],
                 class_names: list[str], max_flips: int = 50) -> dict:
    rec = {
        "top1_agreement": M.top1_agreement(ref, other),
        "top5_overlap": M.top5_overlap(ref, other),
        "ref_top1_in_top5": M.ref_top1_in_top5(ref, other),
        "logit_cosine": M.cosine(ref, other),
        "sqnr_db": M.sqnr_db(ref, other),
    }
    flips = M.flipped(ref, other)
    def name(c):
        return (class_names[c] if c < len(class_names) else str(c))
    rec["n_flipped"] = len(flips)
    rec["flipped"] = [{"image": paths[i], "fp32": name(int(ref[i].argmax())), "other": name(int(other[i].argmax())),
                       **({"label": name(int(labels[i]))} if labels is not None else {})}
                      for i in flips[:max_flips]]
    if labels is not None:
        a, b = accuracy_record(ref, labels, class_names), accuracy_record(other, labels, class_names)
        rec["top1_drop_points"] = 100 * (a["top1"] - b["top1"])
        rec["top5_drop_points"] = 100 * (a["top5"] - b["top5"])
        rec["per_class_change_points"] = [None if x is None or y is None else 100 * (y - x)
                                          for x, y in zip(a["per_class"], b["per_class"], strict=True)]
    if len(ref):
        rec["confidence"] = confidence_record(ref, other, labels)
    return rec


def confidence_histogram(logits: np.ndarray, bins: int = 20) -> list[int]:
    """Counts of top-1 softmax confidence in `bins` equal bins over [0, 1]."""
    counts, _ = np.histogram(M.softmax_confidence(logits), bins=bins, range=(0.0, 1.0))
    return counts.tolist()
