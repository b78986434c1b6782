"""Fold inference-mode BatchNorm into the preceding conv / linear before export.

Folding in PyTorch (instead of relying on an exporter pass) gives the same clean graph from
either ONNX exporter, and every later quantizer sees one Conv per conv-BN-ReLU unit.
"""
from __future__ import annotations

import copy

from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval, fuse_linear_bn_eval

from edgeincep.models.layers import ConvBnAct


def fold_batchnorm(model: nn.Module) -> nn.Module:
    folded = copy.deepcopy(model).eval()
    for m in folded.modules():
        if isinstance(m, ConvBnAct) and isinstance(m.bn, nn.BatchNorm2d):
            m.conv = fuse_conv_bn_eval(m.conv, m.bn)
            m.bn = nn.Identity()
    # facenet's embedding head: Linear(1792, 512, bias=False) -> BatchNorm1d(512)
    if isinstance(getattr(folded, "last_bn", None), nn.BatchNorm1d) and isinstance(
        getattr(folded, "last_linear", None), nn.Linear
    ):
        folded.last_linear = fuse_linear_bn_eval(folded.last_linear, folded.last_bn)
        folded.last_bn = nn.Identity()
    return folded
