"""Which layers suffer most from INT8: per-node quantization noise, measured once on ONNX.

Every backend starts from the same FP32 ONNX, so ranking its nodes once serves every
target's fallback. For each activation tensor that the QDQ model quantizes we measure the
SQNR between its value before and after the Q/DQ pair (ONNX Runtime's qdq_loss_debug), and
blame the nodes that consume it: keeping those in float removes that noise from their path.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import onnx


def _weighted_consumers(graph) -> dict[str, list[str]]:
    """Float tensor name -> Conv/Gemm nodes that read it through a Q -> DQ pair.

    Node names are those of the model handed to quantize_static, which is what its
    nodes_to_exclude expects.
    """
    producer = {o: n for n in graph.node for o in n.output}
    out: dict[str, list[str]] = {}
    for node in graph.node:
        if node.op_type not in ("Conv", "Gemm", "MatMul"):
            continue
        dq = producer.get(node.input[0])
        if dq is None or dq.op_type != "DequantizeLinear":
            continue
        q = producer.get(dq.input[0])
        if q is None or q.op_type != "QuantizeLinear":
            continue
        out.setdefault(q.input[0], []).append(node.name)
    return out


def rank_nodes(fp32_onnx: Path, qdq_onnx: Path, x: np.ndarray) -> list[tuple[str, float]]:
    """[(Conv/Gemm node name, SQNR dB of its quantized input)] from most to least damaged."""
    from onnxruntime.quantization.qdq_loss_debug import (
        collect_activations,
        compute_signal_to_quantization_noice_ratio,
        create_activation_matching,
        modify_model_output_intermediate_tensors,
    )

    graph = onnx.load(str(qdq_onnx), load_external_data=False).graph
    input_name = graph.input[0].name
    feeds = [{input_name: x[i:i + 1]} for i in range(len(x))]
    consumers = _weighted_consumers(graph)
    with tempfile.TemporaryDirectory(prefix="edgeincep-sens-") as tmp:
        aug = Path(tmp) / "qdq_aug.onnx"
        modify_model_output_intermediate_tensors(str(qdq_onnx), str(aug))
        acts = collect_activations(str(aug), iter(feeds))
    matching = create_activation_matching(acts)
    ranked: dict[str, float] = {}
    for tensor, match in matching.items():
        if tensor not in consumers:
            continue
        sqnr = float(compute_signal_to_quantization_noice_ratio(match["pre_qdq"], match["post_qdq"]))
        for node in consumers[tensor]:
            ranked[node] = min(ranked.get(node, np.inf), sqnr)
    return sorted(ranked.items(), key=lambda kv: kv[1])
