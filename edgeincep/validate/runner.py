"""Run one or more predictors over the same images, batch by batch, with one progress bar.

Images are decoded and preprocessed once per batch and fed to every predictor, so FP32 and
quantized models see bit-identical inputs.
"""
from __future__ import annotations

import numpy as np

from edgeincep.console import progress
from edgeincep.core.predictor import Predictor
from edgeincep.core.preprocess import Preprocess
from edgeincep.data.folders import ImageSet, iter_batches


def run_predictors(predictors: list[Predictor], images: ImageSet, cfg: Preprocess, *, batch_size: int = 64,
                   skip_bad: bool = False, show: bool = True) -> tuple[dict[str, np.ndarray], np.ndarray | None, list[int]]:
    outs: dict[str, list[np.ndarray]] = {p.name: [] for p in predictors}
    labels, kept = [], []
    with progress(disable=not show) as bar:
        task = bar.add_task(f"validate {len(predictors)} model(s)", total=len(images))
        for x, y, idx in iter_batches(images, cfg, batch_size, skip_bad=skip_bad):
            for p in predictors:
                outs[p.name].append(p.predict(x))
            if y is not None:
                labels.append(y)
            kept += idx
            bar.update(task, completed=idx[-1] + 1)
    return ({k: np.concatenate(v) for k, v in outs.items()},
            np.concatenate(labels) if labels else None, kept)
