"""Inception-ResNet-v1 (paper Figs. 14, 10-13) with facenet-pytorch's state_dict names.

Stem (3x3/2 32 V, 3x3 32 V, 3x3 64, max-pool, 1x1 80, 3x3 192 V, 3x3/2 256 V) ->
5 x IR-A (0.17) -> Reduction-A (k,l,m,n = 192,192,256,384 -> 896) -> 10 x IR-B (0.10) ->
Reduction-B (-> 1792) -> 5 x IR-C (0.20) + IR-C (1.0, no ReLU) -> pool.

Two heads:
- `inception_resnet_v1` is facenet's: linear 1792->512 (no bias) -> BatchNorm1d, then either
  a `logits` layer (num_classes > 0, e.g. 8631 for VGGFace2) or an L2-normalised 512-d face
  embedding (num_classes=0). The public VGGFace2 / CASIA-WebFace files load into it.
- `inception_resnet_v1_cls` is a plain classifier: pool -> dropout -> linear (`last_linear`).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from edgeincep.models.inception_resnet import Block8, Block17, Block35, repeat
from edgeincep.models.inception_v4 import ReductionA
from edgeincep.models.layers import ConcatBranches, ConvBnAct, Width, max_pool_3x3_s2
from edgeincep.models.registry import register_model

EMBEDDING_DIM = 512


class ReductionBv1(ConcatBranches):
    """17 -> 8 (Fig. 12): 1x1 256 -> 3x3/2 384 | 1x1 256 -> 3x3/2 256 | 1x1 256 -> 3x3 256 -> 3x3/2 256 | max-pool."""

    def __init__(self, in_ch: int, w: Width):
        super().__init__(in_ch, {
            "branch0": nn.Sequential(ConvBnAct(in_ch, w(256), 1), ConvBnAct(w(256), w(384), 3, stride=2)),
            "branch1": nn.Sequential(ConvBnAct(in_ch, w(256), 1), ConvBnAct(w(256), w(256), 3, stride=2)),
            "branch2": nn.Sequential(
                ConvBnAct(in_ch, w(256), 1), ConvBnAct(w(256), w(256), 3, padding=1),
                ConvBnAct(w(256), w(256), 3, stride=2),
            ),
            "branch3": max_pool_3x3_s2(),
        })


class InceptionResnetV1Trunk(nn.Module):
    def __init__(self, in_chans: int, w: Width):
        super().__init__()
        self.conv2d_1a = ConvBnAct(in_chans, w(32), 3, stride=2)
        self.conv2d_2a = ConvBnAct(w(32), w(32), 3)
        self.conv2d_2b = ConvBnAct(w(32), w(64), 3, padding=1)
        self.maxpool_3a = max_pool_3x3_s2()
        self.conv2d_3b = ConvBnAct(w(64), w(80), 1)
        self.conv2d_4a = ConvBnAct(w(80), w(192), 3)
        self.conv2d_4b = ConvBnAct(w(192), w(256), 3, stride=2)
        ch = w(256)
        self.repeat_1 = repeat(5, lambda: Block35(ch, w, a=32, b=(32, 32), c=(32, 32, 32), scale=0.17))
        self.mixed_6a = ReductionA(ch, w, k=192, l=192, m=256, n=384)
        ch = self.mixed_6a.out_channels
        self.repeat_2 = repeat(10, lambda: Block17(ch, w, a=128, b=(128, 128, 128), scale=0.10))
        self.mixed_7a = ReductionBv1(ch, w)
        ch = self.mixed_7a.out_channels
        self.repeat_3 = repeat(5, lambda: Block8(ch, w, a=192, b=(192, 192, 192), scale=0.20))
        self.block8 = Block8(ch, w, a=192, b=(192, 192, 192), scale=1.0, relu=False)
        self.num_features = ch

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv2d_2b(self.conv2d_2a(self.conv2d_1a(x)))
        x = self.conv2d_4b(self.conv2d_4a(self.conv2d_3b(self.maxpool_3a(x))))
        x = self.mixed_6a(self.repeat_1(x))
        x = self.mixed_7a(self.repeat_2(x))
        return self.block8(self.repeat_3(x))


class InceptionResnetV1(InceptionResnetV1Trunk):
    """facenet-pytorch's head: 512-d bottleneck + BN, then logits or an L2-normalised embedding."""

    def __init__(self, num_classes: int = 8631, in_chans: int = 3, width: float = 1.0, drop_rate: float = 0.6):
        super().__init__(in_chans, Width(width))
        self.num_classes = num_classes
        self.avgpool_1a = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(drop_rate)
        self.last_linear = nn.Linear(self.num_features, EMBEDDING_DIM, bias=False)
        self.last_bn = nn.BatchNorm1d(EMBEDDING_DIM, eps=1e-3)
        if num_classes > 0:
            self.logits = nn.Linear(EMBEDDING_DIM, num_classes)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.last_bn(self.last_linear(self.dropout(self.avgpool_1a(x).flatten(1))))
        if pre_logits or self.num_classes == 0:
            return F.normalize(x, p=2, dim=1)
        return self.logits(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


class InceptionResnetV1Classifier(InceptionResnetV1Trunk):
    """The paper's plain head: global average pool -> dropout (keep 0.8) -> linear."""

    def __init__(self, num_classes: int = 1000, in_chans: int = 3, width: float = 1.0, drop_rate: float = 0.2):
        super().__init__(in_chans, Width(width))
        self.num_classes = num_classes
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.head_drop = nn.Dropout(drop_rate)
        self.last_linear = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.global_pool(x).flatten(1)
        return x if pre_logits else self.last_linear(self.head_drop(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


# facenet-pytorch preprocesses with fixed_image_standardization: (x*255 - 127.5) / 128,
# i.e. mean 0.5 and std 128/255 on [0, 1] inputs; face crops are already tight (crop_pct 1).
_FACENET = dict(input_size=160, mean=(0.5, 0.5, 0.5), std=(128 / 255,) * 3, crop_pct=1.0, interpolation="bilinear")


@register_model(
    classifier="logits",
    first_conv="conv2d_1a.conv",
    num_classes=8631,
    hub_ids=("facenet:vggface2", "facenet:casia-webface"),
    paper="Inception-ResNet-v1, 5/10/5 blocks (Fig. 14); facenet-pytorch key names, 512-d embedding head",
    **_FACENET,
)
def inception_resnet_v1(**kwargs) -> InceptionResnetV1:
    return InceptionResnetV1(**kwargs)


@register_model(
    classifier="last_linear",
    first_conv="conv2d_1a.conv",
    paper="Inception-ResNet-v1, 5/10/5 blocks (Fig. 14), plain pool -> linear classifier",
)
def inception_resnet_v1_cls(**kwargs) -> InceptionResnetV1Classifier:
    return InceptionResnetV1Classifier(**kwargs)
