"""Recipes: per model x target settings, typed and validated, with errors naming file and key.

Lookup: recipes/<model>.<target>.yaml, else recipes/default.<target>.yaml, else the defaults here.
"""
from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .errors import UserError
from .paths import RECIPES_DIR


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Calibration(_Strict):
    count: int = Field(300, ge=1, le=100_000, description="images drawn (class-balanced, seeded)")
    method: Literal["minmax", "entropy", "percentile"] = "minmax"
    percentile: float = Field(99.999, gt=90.0, lt=100.0)
    num_bins: int = Field(512, ge=128, le=8192, description="histogram bins for entropy/percentile")
    seed: int = 0
    chunk: int = Field(8, ge=1, le=1024, description="images per calibrator call (bounds memory)")


class OrtSettings(_Strict):
    format: Literal["u8s8", "s8s8"] = "u8s8"
    per_channel: bool = True


class OpenVinoSettings(_Strict):
    compress_fp16: bool = Field(False, description="store float weights as FP16 (never for the FP32 reference)")
    preset: Literal["performance", "mixed"] = "performance"
    # Measured on the reference Inception-ResNet-v1 (300 calibration images, SQNR vs FP32): NNCF's
    # defaults (mean-of-minmax ranges, fast bias correction) 13.9 dB; plain min/max ranges with
    # full bias correction 34.1 dB. Hence these defaults.
    activation_ranges: Literal["minmax", "mean_minmax"] = "minmax"
    # Full bias correction keeps every layer's activations for 20% of the calibration images: on
    # full-size Inception-ResNet-v2 at 299 px (300 MB of activations per image) it was killed for want
    # of memory at 24 GB. "auto" uses it only while that estimate stays under bias_correction_memory_mb.
    fast_bias_correction: bool | Literal["auto"] = "auto"
    bias_correction_memory_mb: int = Field(4096, ge=64, description="auto: the most full bias correction may hold")
    accuracy_control: bool = Field(True, description="nncf.quantize_with_accuracy_control when over budget")
    max_reverted: int = Field(50, ge=1, le=10_000, description="accuracy control: most layers reverted to float")
    performance_hint: Literal["latency", "throughput"] = "latency"
    inference_precision: Literal["f32", "bf16", "f16"] = Field(
        "f32", description="CPU plugin precision for float ops; f32 for honest drift (bf16 is the silent default)")


class Budget(_Strict):
    max_top1_drop: float = Field(0.5, ge=0.0, le=100.0, description="points of top-1 accuracy")
    min_agreement: float = Field(0.99, ge=0.0, le=1.0, description="top-1 agreement with FP32")


class Fallback(_Strict):
    enabled: bool = True
    max_float_nodes: int = Field(8, ge=0, le=1000)
    probe_images: int = Field(200, ge=8, le=10_000, description="validation images scored per candidate")


class Validation(_Strict):
    limit: int | None = Field(None, ge=1, description="balanced subset of the validation set; None: all")
    batch_size: int = Field(64, ge=1, le=4096)


class Recipe(_Strict):
    model: str | None = None
    target: str | None = None
    input_size: int | None = Field(None, ge=75, le=2048)
    calibration: Calibration = Calibration()
    onnxruntime: OrtSettings = OrtSettings()
    openvino: OpenVinoSettings = OpenVinoSettings()
    budget: Budget = Budget()
    fallback: Fallback = Fallback()
    validation: Validation = Validation()
    source: str = "built-in defaults"


def load_recipe_file(path: Path) -> Recipe:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError("recipe file not found", path) from None
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"cannot read recipe ({type(e).__name__})", path) from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise UserError(f"recipe is not valid YAML{where}: {getattr(e, 'problem', None) or e}", path) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise UserError(f"recipe must be a mapping of settings, got {type(data).__name__}", path)
    try:
        return Recipe.model_validate({**data, "source": str(path)})
    except ValidationError as e:
        first = e.errors()[0]
        key = ".".join(str(p) for p in first["loc"]) or "(top level)"
        more = f" (+{e.error_count() - 1} more problems)" if e.error_count() > 1 else ""
        raise UserError(f"recipe key '{key}': {first['msg']}{more}", path) from None


def find_recipe(model: str, target: str, recipes_dir: Path = RECIPES_DIR) -> Recipe:
    for name in (f"{model}.{target}.yaml", f"default.{target}.yaml"):
        if (recipes_dir / name).is_file():
            return load_recipe_file(recipes_dir / name)
    return Recipe(model=model, target=target)
