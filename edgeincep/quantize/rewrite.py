"""Exact graph rewrites that make an INT8 graph cheaper to run without changing what it computes.

`pool_after_pointwise_conv`: Inception's pool branches average 3x3 windows of a wide tensor
(384/1024/1536 channels) and then narrow it with a 1x1 convolution (to 96/128/256). Both are linear
maps, one spatial and one across channels, so they commute: Conv1x1(AvgPool(x)) == AvgPool(Conv1x1(x)).
With count_include_pad=0 every window's weights sum to one, so the bias passes through unchanged,
and the activation after the convolution stays after both. Pooling the narrow tensor instead of the
wide one matters for ONNX Runtime's INT8 kernels: on full-size Inception-v4 at 299 px its
QLinearAveragePool took 9.7 of 30.4 ms (14 pools), where the float AveragePool takes 0.7 ms.
"""
from __future__ import annotations

import onnx
from onnx import helper


def _attrs(node: onnx.NodeProto) -> dict:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _is_windowed_mean(node: onnx.NodeProto) -> bool:
    a = _attrs(node)
    return (node.op_type == "AveragePool" and a.get("count_include_pad", 0) == 0 and a.get("ceil_mode", 0) == 0
            and list(a.get("strides", [1, 1])) == [1, 1] and "auto_pad" not in a)


def _is_pointwise_conv(node: onnx.NodeProto) -> bool:
    a = _attrs(node)
    return (node.op_type == "Conv" and list(a.get("kernel_shape", [])) == [1, 1] and a.get("group", 1) == 1
            and list(a.get("strides", [1, 1])) == [1, 1] and not any(a.get("pads", [0, 0, 0, 0]))
            and list(a.get("dilations", [1, 1])) == [1, 1] and "auto_pad" not in a)


def pool_after_pointwise_conv(model: onnx.ModelProto) -> int:
    """Swap every stride-1 AveragePool (count_include_pad=0) that feeds only a 1x1 Conv; returns how many.

    The tensor names downstream keep their meaning: the pool now writes the convolution's old output.
    """
    g = model.graph
    nodes = list(g.node)  # live references: edited in place, reordered once at the end
    consumers: dict[str, list[int]] = {}
    for k, n in enumerate(nodes):
        for name in n.input:
            consumers.setdefault(name, []).append(k)
    outputs = {o.name for o in g.output}
    order = list(range(len(nodes)))
    swapped = 0
    for i, pool in enumerate(nodes):
        if not _is_windowed_mean(pool) or pool.output[0] in outputs:
            continue
        users = consumers.get(pool.output[0], [])
        if len(users) != 1 or not _is_pointwise_conv(nodes[users[0]]):
            continue
        j = users[0]
        conv = nodes[j]
        pooled_in, conv_out = pool.input[0], conv.output[0]
        narrow = f"{conv_out}__before_pool"
        conv.input[0] = pooled_in
        conv.output[0] = narrow
        pool.input[0] = narrow
        pool.output[0] = conv_out
        # Topological order: the convolution now runs where the pool ran, and the pool where it ran.
        a, b = order.index(i), order.index(j)
        order[a], order[b] = order[b], order[a]
        swapped += 1
    if swapped:
        reordered = [onnx.NodeProto() for _ in order]
        for dst, k in zip(reordered, order, strict=True):
            dst.CopyFrom(nodes[k])
        del g.node[:]
        g.node.extend(reordered)
        # Shapes recorded for the old intermediate tensors no longer hold: shape inference redoes them.
        keep = {o.name for o in g.output} | {i.name for i in g.input}
        for vi in [vi for vi in g.value_info if vi.name not in keep]:
            g.value_info.remove(vi)
    return swapped
