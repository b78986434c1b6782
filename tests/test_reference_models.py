"""The committed reference models are real: they load, and reach their cards' accuracy."""
from __future__ import annotations

import re

import pytest

from edgeincep.data.folders import select_images
from edgeincep.paths import REFERENCE_MODELS_DIR
from edgeincep.pipeline.export_stage import run_export
from edgeincep.pipeline.validate_stage import validate

MODELS = ["inception_resnet_v2", "inception_v4", "inception_resnet_v1"]


def _card_top1(name: str) -> float:
    card = (REFERENCE_MODELS_DIR / f"{name}.fmnist.w0125.md").read_text()
    return float(re.search(r"FP32 top-1 \(10k test\) \| \*\*([\d.]+)%\*\*", card).group(1)) / 100


@pytest.mark.parametrize("name", MODELS)
def test_card_states_at_least_92_percent(name):
    assert _card_top1(name) >= 0.92


@pytest.mark.parametrize("name", MODELS)
def test_fp32_accuracy_is_reproduced_on_a_500_image_subset(name, tmp_path, fmnist_val):
    exported = run_export(name, weights="reference", out_dir=tmp_path)
    record = validate(exported.path, [], select_images(fmnist_val, None))
    top1 = record["reference"]["top1"]
    # 500 images: the binomial standard error at 93% is 1.1 points; 3.5 points is > 3 sigma
    assert abs(top1 - _card_top1(name)) < 0.035, f"{name}: {top1:.2%} vs card {_card_top1(name):.2%}"
    assert record["class_names"][0] == "tshirt_top"


@pytest.mark.slow
@pytest.mark.parametrize("name", MODELS)
def test_fp32_accuracy_on_the_full_10k_test_set_matches_the_card(name, tmp_path, fashion_mnist_test):
    from edgeincep.data import fashion_mnist as fm

    fm.export_folders(tmp_path / "fm", calib_per_class=1)
    exported = run_export(name, weights="reference", out_dir=tmp_path)
    record = validate(exported.path, [], select_images(tmp_path / "fm" / "val", None))
    assert record["images"]["count"] == 10_000
    assert abs(record["reference"]["top1"] - _card_top1(name)) < 0.002
