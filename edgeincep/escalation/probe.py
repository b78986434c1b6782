"""The probe set: held-out labelled images every rung of the ladder is scored on.

Never the validation set (that gives the verdict) and never the calibration images (ranges fitted to
them make INT8 look better there than anywhere else). It must also be large enough to tell a
candidate that meets the budget from one that does not: `needed_images` is that size.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgeincep.core.errors import DataError
from edgeincep.data.folders import ImageSet, balanced_subset, content_overlap, iter_batches, model_labels, scan_folder
from edgeincep.recipes import Budget
from edgeincep.validate.confidence import wilson_interval, z_value

UNRESOLVABLE = 10**9  # what needed_images says of a budget that allows not one flipped image


def needed_images(budget: Budget) -> int:
    """The fewest probe images on which an artifact that changes nothing could still pass `budget`.

    One flipped prediction is 1/n of agreement and, when it turns a right answer wrong, 100/n points of
    top-1: both must fit inside the budget. With a confidence level the gate reads the interval's bound,
    and a set that agrees everywhere has Wilson lower bound n / (n + z^2), so n >= z^2 a / (1 - a).
    """
    slack = 1.0 - budget.min_agreement
    n = 100.0 / budget.max_top1_drop if budget.max_top1_drop > 0 else math.inf
    n = max(n, 1.0 / slack if slack > 0 else math.inf)
    if budget.confidence is not None and slack > 0:
        z = z_value(budget.confidence)
        n = max(n, z * z * budget.min_agreement / slack)
    if not math.isfinite(n):
        return UNRESOLVABLE
    # the float formula can land a hair above or below an integer: settle on the gate's own Wilson bound
    k = max(math.floor(n) - 1, 1)
    while budget.confidence is not None and wilson_interval(k, k, budget.confidence)[0] < budget.min_agreement:
        k += 1
    return max(k, math.ceil(n - 1e-9))


@dataclass
class ProbeSet:
    x: np.ndarray                   # N x 3 x H x W float32, preprocessed
    labels: np.ndarray | None       # in the model's class order; None when the folder has no classes
    paths: list[str]
    source: str                     # the folder, or "calibration images"
    notes: list[str] = field(default_factory=list)
    # FP32 logits on these images, per FP32 model: every target's ladder of a run scores against the same ones
    reference_logits: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    def __len__(self) -> int:
        return len(self.x)

    def summary(self, budget: Budget) -> dict:
        """What the probe is, and whether it can resolve `budget` (said when it cannot)."""
        needed = needed_images(budget)
        notes = list(self.notes)
        if needed >= UNRESOLVABLE:
            notes.append("the budget leaves no slack (not one flipped image), which no probe can resolve: a rung "
                         "may pass on the probe and still miss on the validation set")
        elif len(self) < needed:
            notes.append(f"the probe has {len(self)} images; resolving this budget"
                         f"{f' at {budget.confidence:.0%} confidence' if budget.confidence else ''} needs {needed} "
                         f"(one flipped image is {1 / max(len(self), 1):.2%} of agreement): a rung may pass on the "
                         f"probe and still miss on the validation set")
        return {"source": self.source, "images": len(self), "labelled": self.labels is not None,
                "needed": needed, "resolves_budget": len(self) >= needed, "notes": notes}


def load_probe(root: Path | None, *, pre, count: int, class_names: list[str],
               calib_paths: list[str], calib_x: np.ndarray, calib_labels: np.ndarray | None,
               validation: ImageSet, skip_bad: bool = False) -> ProbeSet:
    """A balanced, seeded `count` of `root`'s images, refused when any is a validation or calibration image.
    Without a folder the calibration images stand in, and the run says what that costs."""
    if root is None:
        return ProbeSet(calib_x, calib_labels, list(calib_paths), "calibration images",
                        [("no held-out probe folder (--probe): the ladder is scored on the calibration images, "
                          "where INT8 looks better than on unseen images")])
    images = scan_folder(root)
    chosen = balanced_subset(images, count, seed=1) if count < len(images) else images
    for other, what in ((validation.paths, "validation"), (calib_paths, "calibration")):
        leaked = content_overlap([str(p) for p in chosen.paths], other)
        if leaked:
            raise DataError(f"{len(leaked)} probe image(s) are also {what} images (e.g. {leaked[0][0]} = "
                            f"{leaked[0][1]}); the probe must be held out", root)
    xs, kept = [], []
    for x, _, idx in iter_batches(chosen, pre, 256, skip_bad=skip_bad):
        xs.append(x)
        kept += idx
    if not kept:
        raise DataError("no readable probe images", root)
    return ProbeSet(np.concatenate(xs), model_labels(chosen.subset(kept), class_names),
                     [str(chosen.paths[i]) for i in kept], str(root))
