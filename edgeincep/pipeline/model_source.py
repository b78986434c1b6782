"""Turn a `--weights` value into a ready model: checkpoint, hub id, synthetic or random weights."""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from edgeincep.console import note
from edgeincep.core.errors import CheckpointError
from edgeincep.core.preprocess import Preprocess
from edgeincep.data.labels import IMAGENET_1K, hub_label_set, label_set, resolve_labels
from edgeincep.models.registry import create_model, get_spec
from edgeincep.models.synthetic import apply_synthetic_weights
from edgeincep.models.weights import LoadedModel, build_with_weights

SYNTHETIC = "synthetic"
RANDOM = "none"
REFERENCE = "reference"
REFERENCE_WIDTH_TAG = "w0125"


def reference_checkpoint(name: str) -> Path:
    """The committed Fashion-MNIST reference model for `name` (see reference_models/)."""
    from edgeincep.paths import REFERENCE_MODELS_DIR

    path = REFERENCE_MODELS_DIR / f"{name}.fmnist.{REFERENCE_WIDTH_TAG}.safetensors"
    if not path.is_file():
        known = sorted(p.name.split(".")[0] for p in REFERENCE_MODELS_DIR.glob("*.safetensors"))
        raise CheckpointError(f"no reference model for {name} (reference models exist for: "
                              f"{', '.join(known) or 'none'})", path)
    return path


def load_model(name: str, weights: str, *, num_classes: int | None = None, width: float | None = None) -> LoadedModel:
    if weights == SYNTHETIC:
        model = apply_synthetic_weights(create_model(name, num_classes=num_classes, width=width or 1.0))
        return LoadedModel(model, None, [("synthetic deterministic weights: fine for speed and plumbing, "
                                         "meaningless for accuracy")])
    if weights == RANDOM:
        model = create_model(name, num_classes=num_classes, width=width or 1.0)
        return LoadedModel(model, None, ["random initial weights: outputs are meaningless"])
    if weights == REFERENCE:
        weights = str(reference_checkpoint(name))
    return build_with_weights(name, weights, num_classes=num_classes, width=width)


def preprocess_of(loaded: LoadedModel, input_size: int | None = None) -> Preprocess:
    """The checkpoint's own preprocessing if it records one, else the registry's; size overridable."""
    pre = get_spec(loaded.model.spec.name).preprocess
    if loaded.checkpoint is not None and "preprocess" in loaded.checkpoint.metadata:
        try:
            pre = Preprocess.from_dict(json.loads(loaded.checkpoint.metadata["preprocess"]))
        except (ValueError, KeyError, TypeError):
            raise CheckpointError("checkpoint metadata 'preprocess' is malformed", loaded.checkpoint.path) from None
    return replace(pre, input_size=input_size) if input_size else pre


def class_names_of(loaded: LoadedModel, weights: str, labels: str | Path | None = None) -> list[str]:
    """The model's class names: `labels` (a label set's name or a file) when given, else those the checkpoint
    records, else the label set its hub id names (timm's *in1k checkpoints: ImageNet-1k); [] when none is known."""
    num_classes = getattr(loaded.model, "num_classes", -1)
    if labels is not None:
        return resolve_labels(labels, num_classes)
    if loaded.checkpoint is not None:
        try:
            names = json.loads(loaded.checkpoint.metadata.get("labels", "[]"))
        except json.JSONDecodeError:
            names = []
        if isinstance(names, list) and len(names) == num_classes:
            return names
    known = hub_label_set(weights)
    if known is not None and len(label_set(known)) == num_classes:
        return resolve_labels(known, num_classes)
    if loaded.checkpoint is not None and num_classes == len(label_set(IMAGENET_1K)):
        note(f"the checkpoint names none of its {num_classes} classes: reports and bundles will show class "
             "indices; pass --labels imagenet-1k if it is an ImageNet-1k classifier (or --labels FILE)")
    return []
