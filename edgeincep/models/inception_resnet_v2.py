"""Inception-ResNet-v2: the released TF-slim layout (timm names) and the paper's layout.

Released (`inception_resnet_v2`, what `inception_resnet_v2.tf_in1k` holds): a stem ending
in Mixed-5b (320 ch) -> 10 x Block35 (0.17) -> Mixed-6a (1088) -> 20 x Block17 (0.10) ->
Mixed-7a (2080) -> 9 x Block8 (0.20) + Block8 (1.0, no ReLU) -> 1x1 conv 1536 -> pool -> linear.

Paper (`inception_resnet_v2_paper`, Fig. 15): Inception-v4's stem (384 ch) -> 5 x IR-A ->
Reduction-A (k,l,m,n = 256,256,384,384) -> 10 x IR-B -> Reduction-B -> 5 x IR-C -> pool -> linear.
"""
from __future__ import annotations

import torch
from torch import nn

from edgeincep.models.inception_resnet import Block8, Block17, Block35, repeat
from edgeincep.models.inception_v4 import Mixed3a, Mixed4a, Mixed5a, ReductionA
from edgeincep.models.layers import ConcatBranches, ConvBnAct, Width, avg_pool_3x3_same, max_pool_3x3_s2
from edgeincep.models.registry import register_model


class Mixed5b(ConcatBranches):
    """Released stem's last split (-> 320): 1x1 96 | 1x1 48 -> 5x5 64 | 1x1 64 -> 3x3 96 -> 3x3 96 | avg -> 1x1 64."""

    def __init__(self, in_ch: int, w: Width):
        super().__init__(in_ch, {
            "branch0": ConvBnAct(in_ch, w(96), 1),
            "branch1": nn.Sequential(ConvBnAct(in_ch, w(48), 1), ConvBnAct(w(48), w(64), 5, padding=2)),
            "branch2": nn.Sequential(
                ConvBnAct(in_ch, w(64), 1), ConvBnAct(w(64), w(96), 3, padding=1),
                ConvBnAct(w(96), w(96), 3, padding=1),
            ),
            "branch3": nn.Sequential(avg_pool_3x3_same(), ConvBnAct(in_ch, w(64), 1)),
        })


class ReductionBv2(ConcatBranches):
    """17 -> 8 (Fig. 18): 1x1 256 -> 3x3/2 384 | 1x1 256 -> 3x3/2 288 | 1x1 256 -> 3x3 288 -> 3x3/2 320 | max-pool."""

    def __init__(self, in_ch: int, w: Width):
        super().__init__(in_ch, {
            "branch0": nn.Sequential(ConvBnAct(in_ch, w(256), 1), ConvBnAct(w(256), w(384), 3, stride=2)),
            "branch1": nn.Sequential(ConvBnAct(in_ch, w(256), 1), ConvBnAct(w(256), w(288), 3, stride=2)),
            "branch2": nn.Sequential(
                ConvBnAct(in_ch, w(256), 1), ConvBnAct(w(256), w(288), 3, padding=1),
                ConvBnAct(w(288), w(320), 3, stride=2),
            ),
            "branch3": max_pool_3x3_s2(),
        })


def _ir_a(ch: int, w: Width, scale: float) -> Block35:
    return Block35(ch, w, a=32, b=(32, 32), c=(32, 48, 64), scale=scale)


def _ir_b(ch: int, w: Width, scale: float) -> Block17:
    return Block17(ch, w, a=192, b=(128, 160, 192), scale=scale)


def _ir_c(ch: int, w: Width, scale: float, relu: bool = True) -> Block8:
    return Block8(ch, w, a=192, b=(192, 224, 256), scale=scale, relu=relu)


class _Head(nn.Module):
    """Global average pool -> dropout (keep 0.8) -> linear, under the classifier's own name."""

    classifier_name = "classif"

    def _init_head(self, num_features: int, num_classes: int, drop_rate: float) -> None:
        self.num_features = num_features
        self.num_classes = num_classes
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.head_drop = nn.Dropout(drop_rate)
        self.classif = nn.Linear(num_features, num_classes) if num_classes > 0 else nn.Identity()

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.global_pool(x).flatten(1)
        if pre_logits:
            return x
        return self.classif(self.head_drop(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


class InceptionResnetV2(_Head, nn.Module):
    """The released layout; block counts are arguments so a test can build a shallow twin."""

    def __init__(self, num_classes: int = 1000, in_chans: int = 3, width: float = 1.0, drop_rate: float = 0.2,
                 depths: tuple[int, int, int] = (10, 20, 9)):
        super().__init__()
        w = Width(width)
        self.conv2d_1a = ConvBnAct(in_chans, w(32), 3, stride=2)
        self.conv2d_2a = ConvBnAct(w(32), w(32), 3)
        self.conv2d_2b = ConvBnAct(w(32), w(64), 3, padding=1)
        self.maxpool_3a = max_pool_3x3_s2()
        self.conv2d_3b = ConvBnAct(w(64), w(80), 1)
        self.conv2d_4a = ConvBnAct(w(80), w(192), 3)
        self.maxpool_5a = max_pool_3x3_s2()
        self.mixed_5b = Mixed5b(w(192), w)
        ch = self.mixed_5b.out_channels
        self.repeat = repeat(depths[0], lambda: _ir_a(ch, w, 0.17))
        self.mixed_6a = ReductionA(ch, w, k=256, l=256, m=384, n=384)
        ch = self.mixed_6a.out_channels
        self.repeat_1 = repeat(depths[1], lambda: _ir_b(ch, w, 0.10))
        self.mixed_7a = ReductionBv2(ch, w)
        ch = self.mixed_7a.out_channels
        self.repeat_2 = repeat(depths[2], lambda: _ir_c(ch, w, 0.20))
        self.block8 = _ir_c(ch, w, 1.0, relu=False)
        self.conv2d_7b = ConvBnAct(ch, w(1536), 1)
        self._init_head(w(1536), num_classes, drop_rate)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv2d_2b(self.conv2d_2a(self.conv2d_1a(x)))
        x = self.conv2d_4a(self.conv2d_3b(self.maxpool_3a(x)))
        x = self.mixed_5b(self.maxpool_5a(x))
        x = self.mixed_6a(self.repeat(x))
        x = self.mixed_7a(self.repeat_1(x))
        x = self.block8(self.repeat_2(x))
        return self.conv2d_7b(x)


class InceptionResnetV2Paper(_Head, nn.Module):
    """The paper's Fig. 15 layout: 5 / 10 / 5 blocks on Inception-v4's stem.

    The paper's figures disagree with themselves about channel totals (Reduction-A gives
    1152 while the IR-B projection says 1154; Reduction-B's total appears as 2144 and 2146),
    so every residual projection here restores whatever depth actually arrives: 384, 1152
    and 2144 at full width. No public checkpoint uses this layout.
    """

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
        self.stem = nn.Sequential(*stem)
        ch = stem[-1].out_channels
        self.blocks_a = repeat(5, lambda: _ir_a(ch, w, 0.17))
        self.reduction_a = ReductionA(ch, w, k=256, l=256, m=384, n=384)
        ch = self.reduction_a.out_channels
        self.blocks_b = repeat(10, lambda: _ir_b(ch, w, 0.10))
        self.reduction_b = ReductionBv2(ch, w)
        ch = self.reduction_b.out_channels
        self.blocks_c = repeat(5, lambda: _ir_c(ch, w, 0.20))
        self._init_head(ch, num_classes, drop_rate)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.reduction_a(self.blocks_a(self.stem(x)))
        x = self.reduction_b(self.blocks_b(x))
        return self.blocks_c(x)


@register_model(
    classifier="classif",
    first_conv="conv2d_1a.conv",
    crop_pct=0.8975,
    hub_ids=("hf-hub:timm/inception_resnet_v2.tf_in1k",),
    # Cadene's pretrainedmodels file names the classifier last_linear.
    key_aliases={"last_linear.": "classif."},
    paper="Inception-ResNet-v2 as released: 10/20/9+1 blocks, 1088/2080 ch; timm key names",
    export_rtol=1e-3,
)
def inception_resnet_v2(**kwargs) -> InceptionResnetV2:
    return InceptionResnetV2(**kwargs)


@register_model(
    classifier="classif",
    first_conv="stem.0.conv",
    crop_pct=0.8975,
    paper="Inception-ResNet-v2 as in the paper's Fig. 15: 5/10/5 blocks on the v4 stem",
)
def inception_resnet_v2_paper(**kwargs) -> InceptionResnetV2Paper:
    return InceptionResnetV2Paper(**kwargs)
