"""Validation split across Ray tasks: the images in batch-aligned shards, each shard's logits computed by a task
that loads the same predictors, merged in image order.

Shards start at multiples of the batch size, so every batch a predictor sees is the batch the single-process
run (runner.run_predictors) feeds it: the logits are bit-identical to it (tests/validate/test_sharded.py).
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from edgeincep.core.artifact import Artifact
from edgeincep.core.preprocess import Preprocess
from edgeincep.data.folders import ImageSet
from edgeincep.ray_runtime import ray_session
from edgeincep.validate.runner import run_predictors


def _shard(fp32: Path, artifacts: list[Artifact], images: ImageSet, start: int, cfg: Preprocess, batch_size: int,
           threads: int, skip_bad: bool):
    from edgeincep.registry import get_backend
    from edgeincep.validate.ort import reference_predictor

    predictors = [reference_predictor(fp32, threads), *(get_backend(a.target).load(a, threads) for a in artifacts)]
    outs, labels, kept = run_predictors(predictors, images, cfg, batch_size=batch_size, skip_bad=skip_bad,
                                        show=False)
    return outs, labels, [start + k for k in kept], images.skipped


def bounds(count: int, shards: int, batch_size: int) -> list[tuple[int, int]]:
    """[start, end) of each shard: batch-aligned, as even as the batches allow."""
    batches = math.ceil(count / batch_size)
    per = math.ceil(batches / max(1, min(shards, batches))) * batch_size
    return [(s, min(s + per, count)) for s in range(0, count, per)]


def sharded_logits(fp32: Path, artifacts: list[Artifact], images: ImageSet, cfg: Preprocess, *, batch_size: int,
                   threads: int = 1, skip_bad: bool = False, shards: int = 0, address: str | None = None
                   ) -> tuple[dict[str, np.ndarray], np.ndarray | None, list[int]]:
    """What run_predictors returns for the FP32 reference + `artifacts`, computed by Ray tasks (one CPU each;
    `shards` 0: one per CPU of the cluster)."""
    with ray_session(address) as ray:
        n = shards or int(ray.cluster_resources().get("CPU", 1))
        task = ray.remote(num_cpus=1, max_retries=3)(_shard)
        refs = []
        for start, end in bounds(len(images), n, batch_size):
            part = images.subset(list(range(start, end)))
            part.skipped = []
            refs.append(task.remote(fp32, artifacts, part, start, cfg, batch_size, threads, skip_bad))
        parts = ray.get(refs)
    names = list(parts[0][0])
    outs = {k: np.concatenate([p[0][k] for p in parts]) for k in names}
    labels = [p[1] for p in parts if p[1] is not None]
    for p in parts:
        images.skipped.extend(p[3])
    return outs, (np.concatenate(labels) if labels else None), [i for p in parts for i in p[2]]
