"""Recipes: per model x target settings, typed and validated, with errors naming file and key.

Lookup: recipes/<model>.<target>.yaml, else recipes/default.<target>.yaml, else the defaults here.
The sections every target reads (calibration, budget, fallback, validation) are defined here; each
backend's own section (`onnxruntime:`, `tflite:`, ...) is its settings class, found through the
backend registry. `Recipe` is composed from both on first use, so a backend from another package
brings its section with it.
"""
from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, create_model, field_validator

from edgeincep.core.errors import UserError
from edgeincep.core.settings import RecipeBase
from edgeincep.core.settings import Strict as _Strict
from edgeincep.paths import RECIPES_DIR
from edgeincep.registry import settings_sections
from edgeincep.yamlfile import load_mapping, one_line


class Calibration(_Strict):
    count: int = Field(300, ge=1, le=100_000, description="images drawn (class-balanced, seeded)")
    method: Literal["minmax", "entropy", "percentile"] = "minmax"
    percentile: float = Field(99.999, gt=90.0, lt=100.0)
    num_bins: int = Field(512, ge=128, le=8192, description="histogram bins for entropy/percentile")
    seed: int = 0
    chunk: int = Field(8, ge=1, le=1024, description="images per calibrator call (bounds memory)")


class Budget(_Strict):
    max_top1_drop: float = Field(0.5, ge=0.0, le=100.0, description="points of top-1 accuracy")
    min_agreement: float = Field(0.99, ge=0.0, le=1.0, description="top-1 agreement with FP32")
    confidence: Literal[0.9, 0.95, 0.99] | None = Field(
        None, description="gate on the pessimistic end of this two-sided paired-bootstrap interval (the drop's "
        "upper bound, agreement's lower bound) instead of the measured value: a small validation set cannot "
        "pass a strict budget by luck")


class Fallback(_Strict):
    enabled: bool = True
    max_float_nodes: int = Field(8, ge=0, le=1000)
    alone: int = Field(4, ge=0, le=64, description="the ladder's fallback rung first keeps each of this many most "
                       "sensitive layers in float alone and scores it on the probe (what each layer costs; the "
                       "search then takes them in the order measured); 0: none")


class Validation(_Strict):
    limit: int | None = Field(None, ge=1, description="balanced subset of the validation set; None: all")
    batch_size: int = Field(64, ge=1, le=4096)
    device_images: int = Field(300, ge=0, description="validation images each Raspberry Pi / Coral bundle is run on "
                               "as arm64 code under qemu (when the arm64 sysroot exists); 0: none")
    attribution_images: int = Field(32, ge=0, le=10_000, description="calibration images (never validation ones) "
                                    "each INT8 artifact is compared with FP32 on layer by layer, for the report's "
                                    "attribution heat map; 0: none")


class QatSettings(_Strict):
    # Measured on the reference Inception-ResNet-v2 (2,000 probe images, fake-quantized model vs FP32): plain
    # 99.45%; 200 Adam steps at lr 1e-5 or 3e-6 with pure distillation 99.60%; lr 5e-5 with 10% label loss pulled
    # the weights off the FP32 model (its float agreement fell to 98.75%).
    steps: int = Field(300, ge=1, le=1_000_000, description="optimizer steps of quantization-aware fine-tuning")
    batch_size: int = Field(32, ge=1, le=4096)
    lr: float = Field(1e-5, gt=0.0, le=1.0, description="Adam learning rate")
    images: int = Field(4000, ge=16, description="training images drawn (class-balanced, seeded) from --train")
    label_weight: float = Field(0.0, ge=0.0, le=1.0, description="cross-entropy share of the loss; the rest is "
                                "distillation from the FP32 model (agreement with it is what a budget gates)")


Rung = Literal["ptq", "calibration", "fallback", "activations16", "qat"]


class Escalation(_Strict):
    """What a run tries, in order, when plain INT8 misses the budget on the probe set."""
    rungs: list[Rung] = Field(["ptq", "calibration", "fallback", "activations16", "qat"],
                              description="the ladder, climbed in this order; [ptq]: no escalation")
    time_budget_s: float = Field(1800.0, gt=0.0, description="per target: no rung starts after this many seconds")
    calibration_counts: list[int] = Field([1000], description="calibration rung: larger calibration sets to try "
                                          "(each where the calibration folder has that many images)")
    probe_images: int = Field(2000, ge=10, description="held-out labelled images every rung is scored on")
    qat: QatSettings = QatSettings()

    @field_validator("rungs")
    @classmethod
    def _ordered(cls, v: list[str]) -> list[str]:
        order = list(Rung.__args__)
        if not v or v[0] != "ptq":
            raise ValueError("the ladder starts with ptq")
        if len(set(v)) != len(v) or v != sorted(v, key=order.index):
            raise ValueError(f"rungs must be distinct and in ladder order ({', '.join(order)})")
        return v


class Bundle(_Strict):
    wheels: bool = Field(False, description="device bundles carry the pinned wheels of their requirements for the "
                         "device's platform (offline `deploy --setup`); adds their size to each bundle")
    python: str | None = Field(None, pattern=r"^3\.\d{1,2}$",
                               description="the device's CPython X.Y for those wheels (default: the device's usual)")


@cache
def _compose(sections: tuple[tuple[str, type], ...]) -> type[RecipeBase]:
    fields: dict = {"model": (str | None, None), "target": (str | None, None),
                    "calibration": (Calibration, Calibration())}
    fields |= {name: (cls, cls()) for name, cls in sections}
    fields |= {"budget": (Budget, Budget()), "fallback": (Fallback, Fallback()),
               "escalation": (Escalation, Escalation()),
               "validation": (Validation, Validation()), "bundle": (Bundle, Bundle()),
               "source": (str, "built-in defaults")}
    return create_model("Recipe", __base__=RecipeBase, __module__=__name__, **fields)


def recipe_model() -> type[RecipeBase]:
    """The Recipe class for the backends registered now."""
    return _compose(tuple(settings_sections().items()))


def __getattr__(name: str):
    if name == "Recipe":  # `from edgeincep.recipes import Recipe`: composed when first asked for
        return recipe_model()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def with_patch(recipe: RecipeBase, patch: dict) -> RecipeBase:
    """`recipe` with `patch` (nested sections) laid over it, validated like a file."""
    def merge(a: dict, b: dict) -> dict:
        return {**a, **{k: merge(a[k], v) if isinstance(v, dict) and isinstance(a.get(k), dict) else v
                        for k, v in b.items()}}

    return type(recipe).model_validate(merge(recipe.model_dump(), patch))


def load_recipe_file(path: Path) -> RecipeBase:
    path = Path(path)
    data = load_mapping(path, "recipe", "a mapping of settings")
    try:
        return recipe_model().model_validate({**data, "source": str(path)})
    except ValidationError as e:
        first = e.errors()[0]
        key = one_line(".".join(str(p) for p in first["loc"]))[:100] or "(top level)"
        more = f" (+{e.error_count() - 1} more problems)" if e.error_count() > 1 else ""
        raise UserError(f"recipe key '{key}': {one_line(first['msg'])}{more}", path) from None


def find_recipe(model: str, target: str, recipes_dir: Path = RECIPES_DIR) -> RecipeBase:
    for name in (f"{model}.{target}.yaml", f"default.{target}.yaml"):
        if (recipes_dir / name).is_file():
            return load_recipe_file(recipes_dir / name)
    return recipe_model()(model=model, target=target)
