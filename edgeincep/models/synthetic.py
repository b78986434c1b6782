"""Deterministic synthetic weights: the parity fixtures' rule, for runs without a checkpoint.

Latency does not depend on weight values, and random He-init nets collapse every input to the
same logits, which would make export checks vacuous. This rule (zero-mean filters, gain 3,
per-key seeds from crc32) keeps activations alive through full depth, so exports and quantizers
see realistic value ranges. The same rule generated ../shared/reference/.
"""
from __future__ import annotations

import zlib

import numpy as np
import torch
from torch import nn


def _tensor(key: str, shape: tuple[int, ...], bn_prefixes: set[str]) -> np.ndarray:
    if key.endswith("num_batches_tracked"):
        return np.zeros(shape, dtype=np.int64)
    rng = np.random.default_rng(zlib.crc32(key.encode("utf-8")))
    prefix, _, leaf = key.rpartition(".")
    if prefix in bn_prefixes:
        if leaf == "running_var":
            return rng.uniform(0.5, 1.5, shape).astype(np.float32)
        base = 1.0 if leaf == "weight" else 0.0
        return (base + 0.1 * rng.standard_normal(shape)).astype(np.float32)
    z = rng.standard_normal(shape)
    if len(shape) == 4:
        z = (z - z.mean(axis=(1, 2, 3), keepdims=True)) * np.sqrt(3.0 / (shape[1] * shape[2] * shape[3]))
    elif len(shape) == 2:
        z = (z - z.mean(axis=1, keepdims=True)) * np.sqrt(1.0 / shape[1])
    elif len(shape) == 1 and leaf == "bias":
        z = 0.01 * z
    else:
        raise ValueError(f"no synthetic-weight rule for {key} {shape}")
    return z.astype(np.float32)


def synthetic_state_dict(keys_and_shapes) -> dict[str, np.ndarray]:
    items = [(k, tuple(int(d) for d in s)) for k, s in keys_and_shapes]
    bn = {k[: -len(".running_mean")] for k, _ in items if k.endswith(".running_mean")}
    return {k: _tensor(k, s, bn) for k, s in items}


def apply_synthetic_weights(model: nn.Module) -> nn.Module:
    sd = model.state_dict()
    values = synthetic_state_dict((k, v.shape) for k, v in sd.items())
    model.load_state_dict({k: torch.from_numpy(v) for k, v in values.items()}, strict=True)
    return model
