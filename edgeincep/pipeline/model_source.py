"""Turn a `--weights` value into a ready model: checkpoint, hub id, synthetic or random weights."""
from __future__ import annotations

import json

from ..models.registry import create_model
from ..models.synthetic import apply_synthetic_weights
from ..models.weights import LoadedModel, build_with_weights

SYNTHETIC = "synthetic"
RANDOM = "none"


def load_model(name: str, weights: str, *, num_classes: int | None = None, width: float | None = None) -> LoadedModel:
    if weights == SYNTHETIC:
        model = apply_synthetic_weights(create_model(name, num_classes=num_classes, width=width or 1.0))
        return LoadedModel(model, None, ["synthetic deterministic weights: fine for speed and plumbing, "
                                         "meaningless for accuracy"])
    if weights == RANDOM:
        model = create_model(name, num_classes=num_classes, width=width or 1.0)
        return LoadedModel(model, None, ["random initial weights: outputs are meaningless"])
    return build_with_weights(name, weights, num_classes=num_classes, width=width)


def class_names_of(loaded: LoadedModel) -> list[str]:
    if loaded.checkpoint is None:
        return []
    try:
        names = json.loads(loaded.checkpoint.metadata.get("labels", "[]"))
    except json.JSONDecodeError:
        return []
    return names if isinstance(names, list) and len(names) == getattr(loaded.model, "num_classes", -1) else []
