"""The search space of a sweep: recipe keys and the values to try, from YAML.

    grid:                          # dotted recipe keys -> values; every combination is a trial
      calibration.count: [100, 300]
      calibration.method: [minmax, entropy]
      onnxruntime.per_channel: [true, false]
    random: {trials: 4, seed: 0}   # optional: a seeded sample of that many combinations instead of all

A value that the recipe refuses is not an error of the sweep: that trial is recorded as failed with the
recipe's one-line reason and the others run.
"""
from __future__ import annotations

import itertools
import json
import random
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError

from edgeincep.core.errors import UserError
from edgeincep.core.settings import Strict
from edgeincep.yamlfile import load_mapping, one_line


class RandomSearch(Strict):
    trials: int = Field(ge=1, le=100_000)
    seed: int = 0


class Space(Strict):
    grid: dict[str, list[Any]] = Field(min_length=1)
    random: RandomSearch | None = None


def load_space(path: Path) -> Space:
    data = load_mapping(path, "sweep grid", "a mapping with a 'grid' of recipe keys")
    try:
        space = Space.model_validate(data)
    except ValidationError as e:
        first = e.errors()[0]
        raise UserError(f"{'.'.join(map(str, first['loc'])) or '(top level)'}: {one_line(first['msg'])}", path) from None
    for key, values in space.grid.items():
        if not values:
            raise UserError(f"grid.{key}: no values to try", path)
        if not all(part.isidentifier() for part in key.split(".")):
            raise UserError(f"grid key {key!r} is not a dotted recipe key like calibration.count", path)
    return space


def variants(space: Space) -> list[dict[str, Any]]:
    """The trials' recipe changes, in a stable order: every combination, or a seeded sample of them."""
    keys = list(space.grid)
    combos = [dict(zip(keys, values, strict=True)) for values in itertools.product(*space.grid.values())]
    if space.random is not None and space.random.trials < len(combos):
        picked = sorted(random.Random(space.random.seed).sample(range(len(combos)), space.random.trials))
        combos = [combos[i] for i in picked]
    return combos


def apply(recipe: dict, variant: dict[str, Any]) -> dict:
    """`recipe` (a Recipe.model_dump()) with the variant's dotted keys set; the result is validated by the caller."""
    out = json.loads(json.dumps(recipe, default=str))
    for key, value in variant.items():
        node = out
        *parents, leaf = key.split(".")
        for part in parents:
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
        node[leaf] = value
    return out


def label(variant: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in variant.items()) or "defaults"
