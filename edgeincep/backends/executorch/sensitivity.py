"""Which modules suffer most from INT8, measured on the PT2E graph itself (the float fallback's ranking).

The same measure as the ONNX backends' (validate.sensitivity): for every convolution or linear layer that
reads a quantized activation, the SQNR between that activation before its quantize and after its
dequantize, on a few calibration images. Here the graph is the converted PT2E model, so the quantization
parameters are exactly those the .pte carries, and each layer is named by its PyTorch module path, which
is what the quantizer's filter keeps in float.
"""
from __future__ import annotations

import numpy as np


def _module_path(node) -> str | None:
    stack = node.meta.get("nn_module_stack") or {}
    return list(stack.values())[-1][0] if stack else None


def rank_modules(converted, x: np.ndarray) -> list[tuple[str, float]]:
    """[(module path, SQNR dB of its quantized input)] from most to least damaged."""
    import torch
    from torch.fx import Interpreter

    weighted = {torch.ops.aten.conv2d.default, torch.ops.aten.linear.default}
    dq_ops = {torch.ops.quantized_decomposed.dequantize_per_tensor.default,
              torch.ops.quantized_decomposed.dequantize_per_tensor.tensor}
    q_ops = {torch.ops.quantized_decomposed.quantize_per_tensor.default,
             torch.ops.quantized_decomposed.quantize_per_tensor.tensor}
    # dequantize node -> (float tensor node before the quantize, the modules reading it)
    pairs: dict = {}
    for node in converted.graph.nodes:
        if node.target not in weighted:
            continue
        dq = node.args[0]
        if getattr(dq, "target", None) not in dq_ops or getattr(dq.args[0], "target", None) not in q_ops:
            continue
        path = _module_path(node)
        if path:
            pairs.setdefault(dq, (dq.args[0].args[0], []))[1].append(path)
    wanted = set(pairs) | {src for src, _ in pairs.values()}
    signal: dict = {}
    noise: dict = {}

    class Capture(Interpreter):
        def run_node(self, n):
            out = super().run_node(n)
            if n in wanted:
                self.values[n] = out
            return out

    with torch.inference_mode():
        for i in range(len(x)):
            cap = Capture(converted)
            cap.values = {}
            cap.run(torch.from_numpy(x[i:i + 1]))
            for dq, (src, _) in pairs.items():
                ref, got = cap.values[src].double(), cap.values[dq].double()
                signal[dq] = signal.get(dq, 0.0) + float((ref ** 2).sum())
                noise[dq] = noise.get(dq, 0.0) + float(((ref - got) ** 2).sum())
    ranked: dict[str, float] = {}
    for dq, (_, paths) in pairs.items():
        sqnr = 10 * np.log10(signal[dq] / noise[dq]) if noise[dq] > 0 else np.inf
        for p in paths:
            ranked[p] = min(ranked.get(p, np.inf), float(sqnr))
    return sorted(ranked.items(), key=lambda kv: kv[1])
