"""Building blocks shared by the three networks.

Every convolution in the paper is conv -> BatchNorm -> ReLU, except the linear 1x1
projection that closes each residual block. BN eps is 1e-3, as in the TF-slim
checkpoints that timm and facenet-pytorch ported.
"""
from __future__ import annotations

import torch
from torch import nn

BN_EPS = 1e-3


class ConvBnAct(nn.Module):
    """conv (no bias) -> BN -> ReLU; submodule names `conv`/`bn` match timm and facenet keys.

    `padding=0` is the paper's "V" (valid); same-padded convs pass it explicitly.
    """

    def __init__(self, in_ch: int, out_ch: int, kernel_size, stride=1, padding=0):
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, kernel_size, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(out_ch, eps=BN_EPS)
        self.act = nn.ReLU(inplace=True)
        self.out_channels = out_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


def conv_1x7(in_ch: int, out_ch: int) -> ConvBnAct:
    return ConvBnAct(in_ch, out_ch, (1, 7), padding=(0, 3))


def conv_7x1(in_ch: int, out_ch: int) -> ConvBnAct:
    return ConvBnAct(in_ch, out_ch, (7, 1), padding=(3, 0))


def conv_1x3(in_ch: int, out_ch: int) -> ConvBnAct:
    return ConvBnAct(in_ch, out_ch, (1, 3), padding=(0, 1))


def conv_3x1(in_ch: int, out_ch: int) -> ConvBnAct:
    return ConvBnAct(in_ch, out_ch, (3, 1), padding=(1, 0))


def max_pool_3x3_s2() -> nn.MaxPool2d:
    return nn.MaxPool2d(3, stride=2)


def avg_pool_3x3_same() -> nn.AvgPool2d:
    # count_include_pad=False: border averages ignore the padding, as in TF-slim's SAME avg pool.
    return nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)


def out_channels(module: nn.Module) -> int:
    """Channels a branch produces: the last conv's out channels (pools keep their input's)."""
    if isinstance(module, ConvBnAct):
        return module.out_channels
    if isinstance(module, nn.Sequential):
        for layer in reversed(module):
            if isinstance(layer, (ConvBnAct, nn.Sequential)):
                return out_channels(layer)
    raise TypeError(f"cannot infer output channels of {type(module).__name__}")


class Width:
    """Scales the paper's filter counts for narrow (edge-sized) variants.

    Counts are rounded to a multiple of 8 (int8 kernels vectorise on multiples of 8/16),
    never below 8, so a 1/8-width net keeps every branch.
    """

    def __init__(self, multiplier: float = 1.0, divisor: int = 8):
        if not 0 < multiplier <= 4:
            raise ValueError(f"width multiplier must be in (0, 4], got {multiplier}")
        self.multiplier = multiplier
        self.divisor = divisor

    def __call__(self, channels: int) -> int:
        if self.multiplier == 1.0:
            return channels
        d = self.divisor
        return max(d, int(channels * self.multiplier / d + 0.5) * d)


class ResidualBlock(nn.Module):
    """Inception-ResNet block: act(x + scale * project(concat(branches))).

    The projection is a linear 1x1 conv with bias and no BN (paper Sec. 3.2); it restores
    the input depth so the sum is defined. `scale` damps the residual (Sec. 3.3): without it
    networks with >1000 filters "died" early in training.
    """

    def __init__(self, in_ch: int, branches: dict[str, nn.Module], scale: float, relu: bool = True):
        super().__init__()
        self.scale = scale
        for name, branch in branches.items():
            self.add_module(name, branch)
        self.branch_names = list(branches)
        concat = sum(out_channels(b) for b in branches.values())
        self.conv2d = nn.Conv2d(concat, in_ch, kernel_size=1, stride=1, bias=True)
        self.act = nn.ReLU() if relu else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.cat([getattr(self, n)(x) for n in self.branch_names], 1)
        out = self.conv2d(out)
        return self.act(out * self.scale + x)


class ConcatBranches(nn.Module):
    """Runs named branches on one input and concatenates their outputs (channel axis)."""

    def __init__(self, in_ch: int, branches: dict[str, nn.Module]):
        super().__init__()
        for name, branch in branches.items():
            self.add_module(name, branch)
        self.branch_names = list(branches)
        self.out_channels = sum(
            in_ch if isinstance(b, nn.MaxPool2d) else out_channels(b) for b in branches.values()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([getattr(self, n)(x) for n in self.branch_names], 1)
