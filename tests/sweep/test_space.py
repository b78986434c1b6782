"""The sweep's search space: a grid of dotted recipe keys, or a seeded sample of it."""
from __future__ import annotations

import pytest

from edgeincep.core.errors import UserError
from edgeincep.sweep.space import apply, load_space, variants


def write(tmp_path, text):
    (tmp_path / "grid.yaml").write_text(text)
    return tmp_path / "grid.yaml"


def test_every_combination_in_a_stable_order(tmp_path):
    space = load_space(write(tmp_path, "grid:\n  calibration.count: [100, 300]\n  calibration.method: [minmax, entropy]\n"))
    assert variants(space) == [{"calibration.count": 100, "calibration.method": "minmax"},
                               {"calibration.count": 100, "calibration.method": "entropy"},
                               {"calibration.count": 300, "calibration.method": "minmax"},
                               {"calibration.count": 300, "calibration.method": "entropy"}]


def test_a_random_search_is_a_seeded_sample_of_the_grid(tmp_path):
    text = ("grid:\n  calibration.count: [50, 100, 200, 300]\n  onnxruntime.per_channel: [true, false]\n"
            "random: {trials: 3, seed: 7}\n")
    a, b = variants(load_space(write(tmp_path, text))), variants(load_space(write(tmp_path, text)))
    assert a == b and len(a) == 3 and len({tuple(v.items()) for v in a}) == 3


def test_apply_sets_nested_keys_without_touching_the_base():
    base = {"calibration": {"count": 300, "method": "minmax"}, "onnxruntime": {"per_channel": True}}
    out = apply(base, {"calibration.count": 50, "onnxruntime.per_channel": False})
    assert out == {"calibration": {"count": 50, "method": "minmax"}, "onnxruntime": {"per_channel": False}}
    assert base["calibration"]["count"] == 300


@pytest.mark.parametrize(("text", "message"), [
    ("grid: {}\n", "grid: Dictionary should have at least 1 item"),
    ("grid:\n  calibration.count: []\n", "grid.calibration.count: no values to try"),
    ("grid:\n  'calibration count': [1]\n", "is not a dotted recipe key"),
    ("grid:\n  calibration.count: [1]\nrandom: {trials: 0}\n", "random.trials: Input should be greater than or equal to 1"),
    ("grid: [\n", "sweep grid is not valid YAML"),
])
def test_a_bad_grid_is_one_error_naming_the_file(tmp_path, text, message):
    with pytest.raises(UserError, match=message) as e:
        load_space(write(tmp_path, text))
    assert str(e.value).startswith(str(tmp_path / "grid.yaml")) and "\n" not in str(e.value)
