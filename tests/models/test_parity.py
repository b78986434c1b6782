"""Our definitions reproduce timm's and facenet-pytorch's networks exactly.

The fixtures hold each reference model's state_dict names and shapes, a deterministic
weight rule, and the reference libraries' own outputs on a fixed noise input.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from edgeincep.models import create_model
from edgeincep.models.stats import count_params
from edgeincep.models.synthetic import synthetic_state_dict

CASES = {
    # name: (fixture, input size, logits atol, extra output, extra atol, param count)
    "inception_v4": ("inception_v4", 299, 0.1, "features", 0.1, 42_679_816),
    "inception_resnet_v2": ("inception_resnet_v2", 299, 2e-3, "features", 3e-3, 55_843_464),
    "inception_resnet_v1": ("inception_resnet_v1", 160, 1e-3, "embedding", 1e-5, 27_910_327),
}


def _fixture(reference_dir, name):
    return json.loads((reference_dir / f"{name}.state_dict.json").read_text())


def _loaded(reference_dir, name, fixture):
    info = _fixture(reference_dir, fixture)
    entries = [(e["key"], e["shape"]) for e in info["state_dict"]]
    model = create_model(name, num_classes=info["state_dict"][-1]["shape"][0])
    weights = synthetic_state_dict(entries)
    model.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()}, strict=True)
    return model, info, weights


def _noise(size):
    return torch.from_numpy(np.random.default_rng(12345).standard_normal((2, 3, size, size)).astype(np.float32))


@pytest.mark.parametrize("name", list(CASES))
def test_state_dict_names_and_shapes_match_reference(reference_dir, name):
    info = _fixture(reference_dir, CASES[name][0])
    model = create_model(name, num_classes=info["state_dict"][-1]["shape"][0])
    ours = {k: list(v.shape) for k, v in model.state_dict().items()}
    theirs = {e["key"]: e["shape"] for e in info["state_dict"]}
    assert ours == theirs
    assert count_params(model) == CASES[name][5] == info["num_params"]


@pytest.mark.parametrize("name", list(CASES))
def test_weight_rule_reimplementation_matches_fixture_sums(reference_dir, name):
    _, info, weights = _loaded(reference_dir, name, CASES[name][0])
    for e in info["state_dict"]:
        assert float(weights[e["key"]].astype(np.float64).sum()) == pytest.approx(e["rule_sum"], rel=1e-6, abs=1e-6)


@pytest.mark.parametrize("name", list(CASES))
def test_outputs_match_reference_library(reference_dir, name):
    fixture, size, atol, extra, extra_atol, _ = CASES[name]
    model, _, _ = _loaded(reference_dir, name, fixture)
    with torch.inference_mode():
        feats = model.forward_features(_noise(size))
        logits = model.forward_head(feats).numpy()
        pre = model.forward_head(feats, pre_logits=True).numpy()
    np.testing.assert_allclose(logits, np.load(reference_dir / f"{fixture}.logits.npy"), atol=atol, rtol=0)
    np.testing.assert_allclose(pre, np.load(reference_dir / f"{fixture}.{extra}.npy"), atol=extra_atol, rtol=0)


def test_facenet_embedding_model_without_logits_layer(reference_dir):
    """classify=False in facenet: the same weights minus `logits.*` give the normalised embedding."""
    _model, _, weights = _loaded(reference_dir, "inception_resnet_v1", "inception_resnet_v1")
    emb_model = create_model("inception_resnet_v1", num_classes=0)
    emb_model.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items() if not k.startswith("logits.")})
    with torch.inference_mode():
        emb = emb_model(_noise(160)).numpy()
    np.testing.assert_allclose(emb, np.load(reference_dir / "inception_resnet_v1.embedding.npy"), atol=1e-5, rtol=0)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-6)
