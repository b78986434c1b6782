"""The base of every recipe section: unknown keys are errors, never silently ignored."""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RecipeBase(Strict):
    """What every recipe is (for type hints); edgeincep.recipes composes the real class: model, target, the
    shared sections, and one section per registered backend."""
