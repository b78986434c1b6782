"""`edgeincep train`: a seeded, reproducible run writes a self-describing checkpoint and card; --init
starts from given weights (fine-tuning, or a second cycle) and the card keeps the whole chain."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from edgeincep.core.errors import UserError
from edgeincep.data import fashion_mnist as fm
from edgeincep.model_card import write_card
from edgeincep.models.weights import build_with_weights
from edgeincep.train import TrainConfig, train

NAMES = list(fm.CLASS_NAMES)


@pytest.fixture(scope="module")
def small_split(fashion_mnist_test):
    x, y = fashion_mnist_test
    return x[:64], y[:64], x[64:96], y[64:96]


def _cfg(**kw) -> TrainConfig:
    base = dict(model="inception_resnet_v1_cls", width=0.125, input_size=75, epochs=1, batch_size=32, lr=0.05,
                seed=3, threads=2)
    return TrainConfig(**{**base, **kw})


def _weights(path) -> dict[str, torch.Tensor]:
    return build_with_weights("inception_resnet_v1_cls", str(path)).model.state_dict()


@pytest.fixture(scope="module")
def first(small_split, tmp_path_factory):
    """One seeded run shared by the tests below, with its card."""
    out = tmp_path_factory.mktemp("first") / "first.safetensors"
    facts = train(_cfg(seed=1), *small_split, NAMES, out)
    write_card(out.with_suffix(".md"), out, facts)
    return out, facts


def test_checkpoint_carries_labels_width_and_preprocessing(first):
    out, facts = first
    loaded = build_with_weights("inception_resnet_v1_cls", str(out))
    meta = loaded.checkpoint.metadata
    assert meta["model"] == "inception_resnet_v1_cls" and float(meta["width"]) == 0.125
    assert '"input_size": 75' in meta["preprocess"] and "ankle_boot" in meta["labels"]
    assert loaded.model.spec.num_classes == 10
    assert len(facts["history"]) == 1 and 0.0 <= facts["top1"] <= 1.0


def test_same_seed_gives_identical_weights(first, small_split, tmp_path):
    again = tmp_path / "again.safetensors"
    train(_cfg(seed=1), *small_split, NAMES, again)
    wa, wb = _weights(first[0]), _weights(again)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_init_starts_from_the_given_weights_not_from_scratch(first, small_split, tmp_path):
    first = first[0]
    # A vanishing learning rate leaves the weights where --init put them; from scratch they would
    # be the seed's fresh initialisation.
    second = tmp_path / "second.safetensors"
    facts = train(_cfg(seed=2, lr=1e-12, init=str(first)), *small_split, NAMES, second)
    w1, w2 = _weights(first), _weights(second)
    convs = [k for k in w1 if k.endswith("conv.weight")]
    assert convs and all(torch.allclose(w1[k], w2[k], atol=1e-6) for k in convs)
    assert facts["init"]["source"] == "first.safetensors" and facts["init"]["reinitialised"] == []


def test_init_with_another_class_count_reinitialises_only_the_classifier(first, small_split, tmp_path):
    x, y, vx, vy = small_split
    first = first[0]
    keep = (y < 3)
    vkeep = (vy < 3)
    facts = train(_cfg(lr=1e-12, batch_size=8, init=str(first)), x[keep], y[keep], vx[vkeep], vy[vkeep], NAMES[:3],
                  tmp_path / "three.safetensors")
    assert facts["init"]["reinitialised"] == ["last_linear.bias", "last_linear.weight"]
    assert build_with_weights("inception_resnet_v1_cls", str(tmp_path / "three.safetensors")).model.spec.num_classes == 3


def test_card_of_a_second_stage_embeds_the_first_stage_card(first, small_split, tmp_path):
    first = first[0]
    second = tmp_path / "second.safetensors"
    facts = train(_cfg(init=str(first)), *small_split, NAMES, second)
    write_card(tmp_path / "second.md", second, facts, first.with_suffix(".md"))
    card = (tmp_path / "second.md").read_text()
    assert "--init first.safetensors --out second.safetensors" in card
    assert "## Starting weights" in card and "--out first.safetensors" in card
    assert np.char.count(card, "| epoch |") == 2


def test_fewer_images_than_one_batch_is_a_user_error(small_split, tmp_path):
    x, y, vx, vy = small_split
    with pytest.raises(UserError, match="fewer than one batch of 32"):
        train(_cfg(), x[:10], y[:10], vx, vy, NAMES, tmp_path / "never.safetensors")
    assert not (tmp_path / "never.safetensors").exists()


def test_distillation_loss_vanishes_when_the_student_already_matches_its_teacher(first):
    from edgeincep.train import _loss, _teachers

    cfg = _cfg(teachers=(str(first[0]),), distill_alpha=1.0)
    (teacher,) = _teachers(cfg, 10)
    x = torch.randn(4, 3, 75, 75)
    with torch.no_grad():
        same = _loss(teacher(x), torch.zeros(4, dtype=torch.long), [teacher], x, cfg)
        other = _loss(torch.zeros(4, 10), torch.zeros(4, dtype=torch.long), [teacher], x, cfg)
    assert abs(float(same)) < 1e-5 and float(other) > 1e-3


def test_teacher_with_another_class_count_is_refused(first):
    from edgeincep.train import _teachers

    with pytest.raises(UserError, match="has 10 classes, the data has 3"):
        _teachers(_cfg(teachers=(str(first[0]),)), 3)
