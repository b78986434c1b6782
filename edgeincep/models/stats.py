"""Parameter and multiply-accumulate counts, computed on the meta device (no memory, no math)."""
from __future__ import annotations

import torch
from torch import nn

from edgeincep.models.registry import create_model


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, input_size: int, in_chans: int = 3) -> int:
    """MACs of one image: convolutions and linear layers (what dominates; pools/adds are ignored)."""
    total = 0

    def conv_hook(m: nn.Conv2d, _inp, out):
        nonlocal total
        k = m.kernel_size[0] * m.kernel_size[1] * (m.in_channels // m.groups)
        total += out.shape[1] * out.shape[2] * out.shape[3] * k

    def linear_hook(m: nn.Linear, _inp, out):
        nonlocal total
        total += m.in_features * m.out_features

    handles = []
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            handles.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            handles.append(m.register_forward_hook(linear_hook))
    try:
        with torch.no_grad():
            model(torch.empty(1, in_chans, input_size, input_size, device=next(model.parameters()).device))
    finally:
        for h in handles:
            h.remove()
    return total


def model_stats(name: str, input_size: int | None = None, width: float = 1.0, num_classes: int | None = None) -> dict:
    with torch.device("meta"):
        model = create_model(name, width=width, num_classes=num_classes)
    size = input_size or model.spec.preprocess.input_size
    return {"params": count_params(model), "macs": count_macs(model, size), "input_size": size}
