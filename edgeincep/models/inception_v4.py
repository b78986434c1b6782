"""Inception-v4 (Szegedy et al. 2016, Figs. 3-9), with timm's state_dict names.

Layout: stem (Figs. 3) -> 4 x Inception-A -> Reduction-A -> 7 x Inception-B ->
Reduction-B -> 3 x Inception-C -> average pool -> dropout (keep 0.8) -> linear.
All stages live in one `features` Sequential (indices 0..21) so that timm's
`inception_v4.tf_in1k` and Cadene's `inceptionv4` checkpoints load with strict=True.
"""
from __future__ import annotations

import torch
from torch import nn

from edgeincep.models.layers import (
    ConcatBranches,
    ConvBnAct,
    Width,
    avg_pool_3x3_same,
    conv_1x3,
    conv_1x7,
    conv_3x1,
    conv_7x1,
    max_pool_3x3_s2,
)
from edgeincep.models.registry import register_model


class Mixed3a(ConcatBranches):
    """Stem split 1: 3x3/2 max-pool V | 3x3/2 conv 96 V (the pool comes first in the concat)."""

    def __init__(self, in_ch: int, w: Width):
        super().__init__(in_ch, {"maxpool": max_pool_3x3_s2(), "conv": ConvBnAct(in_ch, w(96), 3, stride=2)})


class Mixed4a(ConcatBranches):
    """Stem split 2: 1x1 64 -> 3x3 96 V | 1x1 64 -> 7x1 64 -> 1x7 64 -> 3x3 96 V."""

    def __init__(self, in_ch: int, w: Width):
        super().__init__(in_ch, {
            "branch0": nn.Sequential(ConvBnAct(in_ch, w(64), 1), ConvBnAct(w(64), w(96), 3)),
            "branch1": nn.Sequential(
                ConvBnAct(in_ch, w(64), 1), conv_1x7(w(64), w(64)), conv_7x1(w(64), w(64)),
                ConvBnAct(w(64), w(96), 3),
            ),
        })


class Mixed5a(ConcatBranches):
    """Stem split 3: 3x3/2 conv 192 V | 3x3/2 max-pool V (the conv comes first)."""

    def __init__(self, in_ch: int, w: Width):
        super().__init__(in_ch, {"conv": ConvBnAct(in_ch, w(192), 3, stride=2), "maxpool": max_pool_3x3_s2()})


class InceptionA(ConcatBranches):
    """35x35 grid (Fig. 4): 1x1 96 | 1x1 64 -> 3x3 96 | 1x1 64 -> 3x3 96 -> 3x3 96 | avg -> 1x1 96."""

    def __init__(self, in_ch: int, w: Width):
        super().__init__(in_ch, {
            "branch0": ConvBnAct(in_ch, w(96), 1),
            "branch1": nn.Sequential(ConvBnAct(in_ch, w(64), 1), ConvBnAct(w(64), w(96), 3, padding=1)),
            "branch2": nn.Sequential(
                ConvBnAct(in_ch, w(64), 1), ConvBnAct(w(64), w(96), 3, padding=1),
                ConvBnAct(w(96), w(96), 3, padding=1),
            ),
            "branch3": nn.Sequential(avg_pool_3x3_same(), ConvBnAct(in_ch, w(96), 1)),
        })


class ReductionA(ConcatBranches):
    """35 -> 17 (Fig. 7), filter counts (k, l, m, n): 3x3/2 n V | 1x1 k -> 3x3 l -> 3x3/2 m V | max-pool."""

    def __init__(self, in_ch: int, w: Width, k: int, l: int, m: int, n: int):
        super().__init__(in_ch, {
            "branch0": ConvBnAct(in_ch, w(n), 3, stride=2),
            "branch1": nn.Sequential(
                ConvBnAct(in_ch, w(k), 1), ConvBnAct(w(k), w(l), 3, padding=1),
                ConvBnAct(w(l), w(m), 3, stride=2),
            ),
            "branch2": max_pool_3x3_s2(),
        })


class InceptionB(ConcatBranches):
    """17x17 grid (Fig. 5) with factorised 7x7 convolutions."""

    def __init__(self, in_ch: int, w: Width):
        super().__init__(in_ch, {
            "branch0": ConvBnAct(in_ch, w(384), 1),
            "branch1": nn.Sequential(
                ConvBnAct(in_ch, w(192), 1), conv_1x7(w(192), w(224)), conv_7x1(w(224), w(256)),
            ),
            "branch2": nn.Sequential(
                ConvBnAct(in_ch, w(192), 1), conv_7x1(w(192), w(192)), conv_1x7(w(192), w(224)),
                conv_7x1(w(224), w(224)), conv_1x7(w(224), w(256)),
            ),
            "branch3": nn.Sequential(avg_pool_3x3_same(), ConvBnAct(in_ch, w(128), 1)),
        })


class ReductionB(ConcatBranches):
    """17 -> 8 (Fig. 8): 1x1 192 -> 3x3/2 192 V | 1x1 256 -> 1x7 256 -> 7x1 320 -> 3x3/2 320 V | max-pool."""

    def __init__(self, in_ch: int, w: Width):
        super().__init__(in_ch, {
            "branch0": nn.Sequential(ConvBnAct(in_ch, w(192), 1), ConvBnAct(w(192), w(192), 3, stride=2)),
            "branch1": nn.Sequential(
                ConvBnAct(in_ch, w(256), 1), conv_1x7(w(256), w(256)), conv_7x1(w(256), w(320)),
                ConvBnAct(w(320), w(320), 3, stride=2),
            ),
            "branch2": max_pool_3x3_s2(),
        })


class InceptionC(nn.Module):
    """8x8 grid (Fig. 6): two branches end in parallel 1x3 / 3x1 pairs that are concatenated."""

    def __init__(self, in_ch: int, w: Width):
        super().__init__()
        self.branch0 = ConvBnAct(in_ch, w(256), 1)
        self.branch1_0 = ConvBnAct(in_ch, w(384), 1)
        self.branch1_1a = conv_1x3(w(384), w(256))
        self.branch1_1b = conv_3x1(w(384), w(256))
        self.branch2_0 = ConvBnAct(in_ch, w(384), 1)
        self.branch2_1 = conv_3x1(w(384), w(448))
        self.branch2_2 = conv_1x3(w(448), w(512))
        self.branch2_3a = conv_1x3(w(512), w(256))
        self.branch2_3b = conv_3x1(w(512), w(256))
        self.branch3 = nn.Sequential(avg_pool_3x3_same(), ConvBnAct(in_ch, w(256), 1))
        self.out_channels = w(256) * 6

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.branch1_0(x)
        x2 = self.branch2_2(self.branch2_1(self.branch2_0(x)))
        return torch.cat([
            self.branch0(x),
            self.branch1_1a(x1), self.branch1_1b(x1),
            self.branch2_3a(x2), self.branch2_3b(x2),
            self.branch3(x),
        ], 1)


class InceptionV4(nn.Module):
    def __init__(self, num_classes: int = 1000, in_chans: int = 3, width: float = 1.0, drop_rate: float = 0.2):
        super().__init__()
        w = Width(width)
        stem = [
            ConvBnAct(in_chans, w(32), 3, stride=2),
            ConvBnAct(w(32), w(32), 3),
            ConvBnAct(w(32), w(64), 3, padding=1),
        ]
        stem.append(Mixed3a(w(64), w))
        stem.append(Mixed4a(stem[-1].out_channels, w))
        stem.append(Mixed5a(stem[-1].out_channels, w))
        layers = stem
        for _ in range(4):
            layers.append(InceptionA(layers[-1].out_channels, w))
        layers.append(ReductionA(layers[-1].out_channels, w, k=192, l=224, m=256, n=384))
        for _ in range(7):
            layers.append(InceptionB(layers[-1].out_channels, w))
        layers.append(ReductionB(layers[-1].out_channels, w))
        for _ in range(3):
            layers.append(InceptionC(layers[-1].out_channels, w))
        self.features = nn.Sequential(*layers)
        self.num_features = layers[-1].out_channels
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.head_drop = nn.Dropout(drop_rate)  # paper: keep probability 0.8
        self.num_classes = num_classes
        self.last_linear = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.global_pool(x).flatten(1)
        if pre_logits:
            return x
        return self.last_linear(self.head_drop(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


@register_model(
    classifier="last_linear",
    first_conv="features.0.conv",
    crop_pct=0.875,
    hub_ids=("hf-hub:timm/inception_v4.tf_in1k",),
    paper="Inception-v4, 4/7/3 blocks (Fig. 9); timm/Cadene key names",
    # 22 plain stages amplify float rounding most (reference README: ~2e-3 of logit scale)
    export_rtol=1e-2,
)
def inception_v4(**kwargs) -> InceptionV4:
    return InceptionV4(**kwargs)
