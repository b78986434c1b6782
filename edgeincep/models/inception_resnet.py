"""Residual blocks shared by Inception-ResNet-v1 and -v2 (paper Figs. 10-13, 16-19).

The two networks use the same three block shapes with different filter counts, so each
block is one class taking those counts. Submodule names (branch0, branch1, conv2d) are
the ones timm and facenet-pytorch use.
"""
from __future__ import annotations

from torch import nn

from edgeincep.models.layers import ConvBnAct, ResidualBlock, Width, conv_1x3, conv_1x7, conv_3x1, conv_7x1


class Block35(ResidualBlock):
    """IR-A, 35x35 grid: 1x1 a | 1x1 b0 -> 3x3 b1 | 1x1 c0 -> 3x3 c1 -> 3x3 c2 -> linear 1x1."""

    def __init__(self, in_ch: int, w: Width, a: int, b: tuple[int, int], c: tuple[int, int, int], scale: float):
        super().__init__(in_ch, {
            "branch0": ConvBnAct(in_ch, w(a), 1),
            "branch1": nn.Sequential(ConvBnAct(in_ch, w(b[0]), 1), ConvBnAct(w(b[0]), w(b[1]), 3, padding=1)),
            "branch2": nn.Sequential(
                ConvBnAct(in_ch, w(c[0]), 1), ConvBnAct(w(c[0]), w(c[1]), 3, padding=1),
                ConvBnAct(w(c[1]), w(c[2]), 3, padding=1),
            ),
        }, scale)


class Block17(ResidualBlock):
    """IR-B, 17x17 grid: 1x1 a | 1x1 b0 -> 1x7 b1 -> 7x1 b2 -> linear 1x1."""

    def __init__(self, in_ch: int, w: Width, a: int, b: tuple[int, int, int], scale: float):
        super().__init__(in_ch, {
            "branch0": ConvBnAct(in_ch, w(a), 1),
            "branch1": nn.Sequential(
                ConvBnAct(in_ch, w(b[0]), 1), conv_1x7(w(b[0]), w(b[1])), conv_7x1(w(b[1]), w(b[2])),
            ),
        }, scale)


class Block8(ResidualBlock):
    """IR-C, 8x8 grid: 1x1 a | 1x1 b0 -> 1x3 b1 -> 3x1 b2 -> linear 1x1.

    The released checkpoints end with one extra Block8 at scale 1.0 and no ReLU, so the
    features reaching the classifier can be negative.
    """

    def __init__(self, in_ch: int, w: Width, a: int, b: tuple[int, int, int], scale: float, relu: bool = True):
        super().__init__(in_ch, {
            "branch0": ConvBnAct(in_ch, w(a), 1),
            "branch1": nn.Sequential(
                ConvBnAct(in_ch, w(b[0]), 1), conv_1x3(w(b[0]), w(b[1])), conv_3x1(w(b[1]), w(b[2])),
            ),
        }, scale, relu=relu)


def repeat(n: int, make) -> nn.Sequential:
    return nn.Sequential(*[make() for _ in range(n)])
