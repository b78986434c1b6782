"""Recipes are validated; every problem names the file, the key and what is wrong."""
from __future__ import annotations

import pytest

from edgeincep.core.errors import UserError
from edgeincep.paths import RECIPES_DIR
from edgeincep.recipes import find_recipe, load_recipe_file


def _write(tmp_path, text):
    p = tmp_path / "r.yaml"
    p.write_text(text)
    return p


def test_shipped_recipes_are_valid():
    files = sorted(RECIPES_DIR.glob("*.yaml"))
    assert files
    for f in files:
        load_recipe_file(f)


def test_lookup_falls_back_to_the_target_default():
    r = find_recipe("inception_v4", "onnxruntime")
    assert r.source.endswith("default.onnxruntime.yaml") and r.budget.max_top1_drop == 0.5


@pytest.mark.parametrize("text,match", [
    ("calibration: {count: 0}", "recipe key 'calibration.count': Input should be greater than or equal to 1"),
    ("calibration: {method: kl}", "recipe key 'calibration.method'"),
    ("budget: {max_top1_drop: lots}", "recipe key 'budget.max_top1_drop'"),
    ("calibraton: {count: 10}", "recipe key 'calibraton': Extra inputs are not permitted"),
    ("input_size: 32", "recipe key 'input_size'"),
    ("budget: [1, 2]", "recipe key 'budget'"),
    ("- a\n- b", "recipe must be a mapping"),
    ("calibration: {count: 3\n", "recipe is not valid YAML at line"),
])
def test_bad_recipes_are_one_line_errors_naming_file_and_key(tmp_path, text, match):
    path = _write(tmp_path, text)
    with pytest.raises(UserError, match=match) as e:
        load_recipe_file(path)
    assert str(path) in str(e.value) and "\n" not in str(e.value)


def test_missing_recipe_file(tmp_path):
    with pytest.raises(UserError, match="recipe file not found"):
        load_recipe_file(tmp_path / "nope.yaml")


def test_empty_recipe_means_defaults(tmp_path):
    assert load_recipe_file(_write(tmp_path, "")).calibration.count == 300
