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

import yaml
from pydantic import Field, ValidationError, create_model

from edgeincep.core.errors import UserError
from edgeincep.core.settings import RecipeBase
from edgeincep.core.settings import Strict as _Strict
from edgeincep.paths import RECIPES_DIR
from edgeincep.registry import settings_sections


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


class Fallback(_Strict):
    enabled: bool = True
    max_float_nodes: int = Field(8, ge=0, le=1000)


class Validation(_Strict):
    limit: int | None = Field(None, ge=1, description="balanced subset of the validation set; None: all")
    batch_size: int = Field(64, ge=1, le=4096)
    device_images: int = Field(300, ge=0, description="validation images each Raspberry Pi / Coral bundle is run on "
                               "as arm64 code under qemu (when the arm64 sysroot exists); 0: none")


@cache
def _compose(sections: tuple[tuple[str, type], ...]) -> type[RecipeBase]:
    fields: dict = {"model": (str | None, None), "target": (str | None, None),
                    "calibration": (Calibration, Calibration())}
    fields |= {name: (cls, cls()) for name, cls in sections}
    fields |= {"budget": (Budget, Budget()), "fallback": (Fallback, Fallback()),
               "validation": (Validation, Validation()), "source": (str, "built-in defaults")}
    return create_model("Recipe", __base__=RecipeBase, __module__=__name__, **fields)


def recipe_model() -> type[RecipeBase]:
    """The Recipe class for the backends registered now."""
    return _compose(tuple(settings_sections().items()))


def __getattr__(name: str):
    if name == "Recipe":  # `from edgeincep.recipes import Recipe`: composed when first asked for
        return recipe_model()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


MAX_RECIPE_DEPTH = 64  # a recipe is 2-3 levels deep


def load_recipe_file(path: Path) -> RecipeBase:
    path = Path(path)

    class _Loader(yaml.SafeLoader):
        """safe_load that refuses a key given twice: YAML keeps the last silently, losing the first block."""

        def construct_mapping(self, node, deep=False):
            seen: dict = {}
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=True)
                if isinstance(key, str) and key in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"key '{key}' appears twice (lines {seen[key] + 1} and {key_node.start_mark.line + 1})",
                        key_node.start_mark)
                if isinstance(key, str):
                    seen[key] = key_node.start_mark.line
            return super().construct_mapping(node, deep)

        def compose_node(self, parent, index):
            # A fixed depth limit: PyYAML recurses per level, and other libraries in this process (onnx2tf)
            # raise the interpreter's recursion limit, so a RecursionError alone would depend on who ran first.
            self._depth = getattr(self, "_depth", 0) + 1
            try:
                if self._depth > MAX_RECIPE_DEPTH:
                    raise RecursionError
                return super().compose_node(parent, index)
            finally:
                self._depth -= 1

    def one_line(text) -> str:
        return " ".join(str(text).split())

    try:
        if path.stat().st_size > 1_000_000:  # a recipe is a few hundred bytes; refuse a hostile giant before parsing
            raise UserError("recipe is larger than 1 MB; is this the right file?", path)
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_Loader)  # a SafeLoader: no Python tags
    except FileNotFoundError:
        raise UserError("recipe file not found", path) from None
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"cannot read recipe ({type(e).__name__})", path) from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise UserError(f"recipe is not valid YAML{where}: {one_line(getattr(e, 'problem', None) or e)}", path) from None
    except (ValueError, TypeError, AttributeError, OverflowError, IndexError, KeyError) as e:
        # PyYAML's scalar constructors raise these for malformed tagged or implicit values (2001-13-45, !!int 0x).
        raise UserError(f"recipe is not valid YAML: a malformed value ({one_line(e)[:150]})", path) from None
    except RecursionError:
        raise UserError("recipe is not valid YAML: nested too deeply", path) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise UserError(f"recipe must be a mapping of settings, got {type(data).__name__}", path)
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
