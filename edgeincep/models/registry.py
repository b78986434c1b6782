"""The model registry: one decorator, one default config per network.

Each entry's config drives preprocessing everywhere (calibration, validation, bundles),
as timm's `pretrained_cfg` does, and names the classifier so checkpoints with another
class count can be detected.
"""
from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from torch import nn

from edgeincep.core.errors import UserError
from edgeincep.core.preprocess import Preprocess

MIN_INPUT_SIZE = 75  # the smallest grid that survives the stem and both reductions


@dataclass(frozen=True)
class ModelSpec:
    name: str
    builder: Callable[..., nn.Module]
    preprocess: Preprocess
    classifier: str
    first_conv: str
    num_classes: int = 1000
    hub_ids: tuple[str, ...] = ()
    # checkpoint key prefix -> our prefix, for public files that name a layer differently
    key_aliases: dict[str, str] = field(default_factory=dict)
    # a classifier-free forward that a pure embedding model returns (facenet's normalised 512-d)
    paper: str = ""
    # export tolerance: max |onnx - torch| <= rtol * std(torch logits) + 1e-5
    export_rtol: float = 1e-3


_REGISTRY: dict[str, ModelSpec] = {}


def register_model(
    *,
    classifier: str,
    first_conv: str,
    num_classes: int = 1000,
    input_size: int = 299,
    mean=(0.5, 0.5, 0.5),
    std=(0.5, 0.5, 0.5),
    crop_pct: float = 0.875,
    interpolation: str = "bicubic",
    hub_ids: tuple[str, ...] = (),
    key_aliases: dict[str, str] | None = None,
    paper: str = "",
    export_rtol: float = 1e-3,
    name: str | None = None,
):
    def wrap(fn: Callable[..., nn.Module]):
        spec = ModelSpec(
            name=name or fn.__name__,
            builder=fn,
            preprocess=Preprocess(input_size, tuple(mean), tuple(std), crop_pct, interpolation),
            classifier=classifier,
            first_conv=first_conv,
            num_classes=num_classes,
            hub_ids=hub_ids,
            key_aliases=dict(key_aliases or {}),
            paper=paper,
            export_rtol=export_rtol,
        )
        if spec.name in _REGISTRY:
            raise ValueError(f"model {spec.name} registered twice")
        _REGISTRY[spec.name] = spec
        return fn

    return wrap


def list_models() -> list[str]:
    return sorted(_REGISTRY)


def get_spec(name: str) -> ModelSpec:
    try:
        return _REGISTRY[name]
    except KeyError:
        close = difflib.get_close_matches(name, _REGISTRY, n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else f"; known models: {', '.join(sorted(_REGISTRY))}"
        raise UserError(f"unknown model '{name}'{hint}") from None


def create_model(
    name: str,
    *,
    num_classes: int | None = None,
    in_chans: int = 3,
    width: float = 1.0,
    input_size: int | None = None,
) -> nn.Module:
    """Build a model in eval mode; `input_size` is only validated (the nets are size-agnostic)."""
    spec = get_spec(name)
    if input_size is not None:
        check_input_size(input_size)
    if not 0 < width <= 4:
        raise UserError(f"width multiplier must be in (0, 4], got {width}")
    model = spec.builder(
        num_classes=spec.num_classes if num_classes is None else num_classes, in_chans=in_chans, width=width
    )
    model.eval()
    model.spec = replace(spec, num_classes=spec.num_classes if num_classes is None else num_classes)
    return model


def check_input_size(size: int) -> None:
    if size < MIN_INPUT_SIZE:
        raise UserError(
            f"input size {size} px is too small: the stem and two reductions need at least {MIN_INPUT_SIZE} px"
        )
