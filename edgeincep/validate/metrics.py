"""Accuracy and FP32-vs-quantized agreement metrics: pure functions over logit arrays."""
from __future__ import annotations

import numpy as np


def topk(logits: np.ndarray, k: int) -> np.ndarray:
    k = min(k, logits.shape[1])
    return np.argsort(-logits, axis=1, kind="stable")[:, :k]


def accuracy(logits: np.ndarray, labels: np.ndarray, k: int = 1) -> float:
    return float((topk(logits, k) == labels[:, None]).any(1).mean())


def per_class_accuracy(logits: np.ndarray, labels: np.ndarray, num_classes: int) -> list[float | None]:
    pred = logits.argmax(1)
    return [float((pred[labels == c] == c).mean()) if (labels == c).any() else None for c in range(num_classes)]


def top1_agreement(ref: np.ndarray, other: np.ndarray) -> float:
    return float((ref.argmax(1) == other.argmax(1)).mean())


def top5_overlap(ref: np.ndarray, other: np.ndarray) -> float:
    """Mean fraction of the reference's top-5 classes that the other also ranks top-5."""
    a, b = topk(ref, 5), topk(other, 5)
    return float(np.mean([len(set(x) & set(y)) / len(x) for x, y in zip(a, b, strict=True)]))


def ref_top1_in_top5(ref: np.ndarray, other: np.ndarray) -> float:
    return float((topk(other, 5) == ref.argmax(1)[:, None]).any(1).mean())


def cosine(ref: np.ndarray, other: np.ndarray) -> float:
    """Mean per-image cosine similarity of the logit vectors."""
    num = (ref * other).sum(1)
    den = np.linalg.norm(ref, axis=1) * np.linalg.norm(other, axis=1) + 1e-12
    return float(np.mean(num / den))


def sqnr_db(ref: np.ndarray, other: np.ndarray) -> float:
    """Signal-to-quantization-noise ratio of the logits, in dB (higher is better)."""
    noise = np.sum((ref - other) ** 2)
    return float("inf") if noise == 0 else float(10 * np.log10(np.sum(ref ** 2) / noise))


def flipped(ref: np.ndarray, other: np.ndarray) -> np.ndarray:
    return np.flatnonzero(ref.argmax(1) != other.argmax(1))


def softmax_confidence(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(1, keepdims=True)
    p = np.exp(z)
    return (p / p.sum(1, keepdims=True)).max(1)
