"""The networks have the paper's structure: block counts, residual scales, grids, channels."""
from __future__ import annotations

import pytest
import torch

from edgeincep.core.errors import UserError
from edgeincep.models import create_model, list_models
from edgeincep.models.inception_resnet import Block8, Block17, Block35
from edgeincep.models.stats import model_stats


def _blocks(model, cls):
    return [m for m in model.modules() if type(m) is cls]


def test_registry_lists_every_family_and_variant():
    assert {"inception_v4", "inception_resnet_v1", "inception_resnet_v1_cls", "inception_resnet_v2",
            "inception_resnet_v2_paper"} <= set(list_models())


def test_unknown_model_suggests_close_names():
    with pytest.raises(UserError, match="did you mean inception_v4"):
        create_model("inceptoin_v4")


@pytest.mark.parametrize("size", [74, 32])
def test_input_below_75_px_is_refused(size):
    with pytest.raises(UserError, match="at least 75 px"):
        create_model("inception_v4", input_size=size)


def test_released_inception_resnet_v2_has_10_20_9_plus_1_blocks_with_scales():
    with torch.device("meta"):
        m = create_model("inception_resnet_v2")
    assert [b.scale for b in _blocks(m, Block35)] == [0.17] * 10
    assert [b.scale for b in _blocks(m, Block17)] == [0.10] * 20
    c = _blocks(m, Block8)
    assert [b.scale for b in c] == [0.20] * 9 + [1.0]
    assert all(isinstance(b.act, torch.nn.ReLU) for b in c[:-1]) and isinstance(c[-1].act, torch.nn.Identity)


def test_paper_inception_resnet_v2_is_5_10_5_and_projections_restore_depth():
    with torch.device("meta"):
        m = create_model("inception_resnet_v2_paper")
    depths = []
    for cls, n in ((Block35, 5), (Block17, 10), (Block8, 5)):
        blocks = _blocks(m, cls)
        assert len(blocks) == n
        depths.append(blocks[0].conv2d.out_channels)
        assert all(b.conv2d.out_channels == depths[-1] for b in blocks)
    assert depths == [384, 1152, 2144]


def test_inception_resnet_v1_is_5_10_5_plus_1():
    with torch.device("meta"):
        m = create_model("inception_resnet_v1")
    assert (len(_blocks(m, Block35)), len(_blocks(m, Block17)), len(_blocks(m, Block8))) == (5, 10, 6)
    assert [b.conv2d.out_channels for b in (_blocks(m, Block35)[0], _blocks(m, Block17)[0], _blocks(m, Block8)[0])] \
        == [256, 896, 1792]


def test_inception_v4_grids_follow_the_paper_at_299():
    with torch.device("meta"):
        m = create_model("inception_v4")
        x = torch.empty(1, 3, 299, 299)
        shapes = []
        for layer in m.features:
            x = layer(x)
            shapes.append(tuple(x.shape[1:]))
    assert shapes[5] == (384, 35, 35)      # stem output
    assert shapes[10] == (1024, 17, 17)    # Reduction-A
    assert shapes[18] == (1536, 8, 8)      # Reduction-B
    assert shapes[21] == (1536, 8, 8)


def test_inception_v4_cost_matches_paper():
    st = model_stats("inception_v4")
    assert st["params"] == 42_679_816
    assert 12.0e9 < st["macs"] < 12.5e9  # paper: about 12.3 GMACs


@pytest.mark.parametrize("name", ["inception_v4", "inception_resnet_v1", "inception_resnet_v1_cls",
                                  "inception_resnet_v2", "inception_resnet_v2_paper"])
@pytest.mark.parametrize("size", [75, 99])
def test_narrow_variants_run_at_small_sizes_with_any_class_count(name, size):
    m = create_model(name, width=0.125, num_classes=7)
    with torch.inference_mode():
        out = m(torch.randn(2, 3, size, size))
    assert out.shape == (2, 7)
    assert torch.isfinite(out).all()


def test_width_multiplier_shrinks_channels_to_multiples_of_8():
    m = create_model("inception_resnet_v2", width=0.125, num_classes=10)
    convs = [mod for mod in m.modules() if isinstance(mod, torch.nn.Conv2d)]
    assert all(c.out_channels % 8 == 0 for c in convs)
    assert sum(p.numel() for p in m.parameters()) < 1.5e6


def test_in_chans_changes_the_first_conv():
    m = create_model("inception_v4", width=0.125, in_chans=1, num_classes=3)
    assert m.features[0].conv.in_channels == 1
