"""Will this INT8 .tflite map onto the Coral Edge TPU? A static check, op by op.

`edgetpu_compiler` exists only in Coral's own apt repository, so most machines cannot ask it.
This check applies what Coral documents instead: the supported-operations table (with each op's
known limitations), the model requirements (8-bit tensors, constant sizes, at most three
dimensions larger than 1, one subgraph) and the op versions the last compiler (16.0, 2021)
accepts. The compiler maps ops in graph order and cuts the graph once, at the first op it cannot
map: that op and everything after it run on the CPU. The report names that point.
"""
from __future__ import annotations

from collections import Counter

import numpy as np

from edgeincep.litert.graph import Graph, Op

# Coral's supported-operations table. Value: (highest op version, limitation checked below or "").
# The version ceilings are the ones TensorFlow Lite's builtin resolver registered in mid-2021, the
# release line the last Edge TPU compiler was built against; a newer version is reported by that
# compiler as "Operation version not supported".
SUPPORTED: dict[str, tuple[int, str]] = {
    "ADD": (4, ""), "AVERAGE_POOL_2D": (3, "no fused activation"), "CONCATENATION": (3, "no fused activation"),
    "CONV_2D": (6, "same dilation in x and y"), "DEPTHWISE_CONV_2D": (6, "same dilation in x and y"),
    "EXPAND_DIMS": (1, ""), "FULLY_CONNECTED": (9, "default weights format, one-dimensional output"),
    "L2_NORMALIZATION": (2, ""), "LOGISTIC": (3, ""), "LSTM": (4, "unidirectional only"),
    "MAXIMUM": (4, ""), "MAX_POOL_2D": (3, "no fused activation"), "MEAN": (3, "reduce along x and/or y only"),
    "MINIMUM": (4, ""), "MUL": (5, ""), "PACK": (3, "not along the batch dimension"),
    "PAD": (4, "pad along x and/or y only"), "PRELU": (1, ""), "QUANTIZE": (3, ""),
    "REDUCE_MAX": (3, "not along the batch dimension"), "REDUCE_MIN": (3, "not along the batch dimension"),
    "RELU": (3, ""), "RELU6": (3, ""), "RELU_N1_TO_1": (1, ""), "RESHAPE": (1, ""),
    "RESIZE_BILINEAR": (4, ""), "RESIZE_NEAREST_NEIGHBOR": (4, ""), "RSQRT": (2, ""), "SLICE": (5, ""),
    "SOFTMAX": (3, "one-dimensional input of at most 16,000 elements"), "SPACE_TO_DEPTH": (2, ""),
    "SPLIT": (4, "not along the batch dimension"), "SQUARED_DIFFERENCE": (2, ""), "SQUEEZE": (2, ""),
    "STRIDED_SLICE": (6, ""), "SUB": (5, ""), "SUM": (2, "not along the batch dimension"), "TANH": (3, ""),
    "TRANSPOSE": (5, ""), "TRANSPOSE_CONV": (3, ""),
}
EIGHT_BIT = {"INT8", "UINT8"}
SOFTMAX_MAX = 16_000


def _activation(op: Op) -> str | None:
    fused = op.options.get("fusedActivationFunction", 0)
    return None if not fused else f"fused activation ({fused}) is not supported on {op.name}"


def _axes(graph: Graph, op: Op) -> list[int] | None:
    if len(op.inputs) < 2:
        return None
    data = graph.constant(op.inputs[1])
    if data is None:
        return None
    rank = len(graph.tensors[op.inputs[0]].shape)
    return sorted(int(a) % rank for a in np.asarray(data).ravel())


def _limitation(graph: Graph, op: Op) -> str | None:
    """The documented limitation this op breaks, or None."""
    name = op.name
    if name in ("AVERAGE_POOL_2D", "MAX_POOL_2D", "CONCATENATION"):
        return _activation(op)
    if name in ("CONV_2D", "DEPTHWISE_CONV_2D"):
        dh, dw = op.options.get("dilationHFactor", 1), op.options.get("dilationWFactor", 1)
        return None if dh == dw else f"dilation {dh}x{dw} differs between y and x"
    if name == "FULLY_CONNECTED":
        if op.options.get("weightsFormat", 0):
            return "weights are not in the default format"
        out = graph.tensors[op.outputs[0]].shape
        return None if sum(d > 1 for d in out) <= 1 else f"output {out} is not one-dimensional"
    if name == "MEAN":
        axes = _axes(graph, op)
        return None if axes is not None and set(axes) <= {1, 2} else f"reduces over axes {axes} (only y/x map)"
    if name in ("SUM", "REDUCE_MAX", "REDUCE_MIN"):
        axes = _axes(graph, op)
        return None if axes is not None and 0 not in axes else "reduces over the batch dimension"
    if name == "PAD":
        pads = graph.constant(op.inputs[1]) if len(op.inputs) > 1 else None
        if pads is None:
            return "padding is not a constant"
        pads = np.asarray(pads).reshape(-1, 2)
        rank = len(pads)
        other = [i for i in range(rank) if i not in (rank - 3, rank - 2) and pads[i].any()]
        return None if not other else f"pads dimension(s) {other} (only y/x map)"
    if name == "SOFTMAX":
        shape = graph.tensors[op.inputs[0]].shape
        n = int(np.prod(shape)) if shape else 0
        if sum(d > 1 for d in shape) > 1 or n > SOFTMAX_MAX:
            return f"input {shape} is not one-dimensional with at most {SOFTMAX_MAX:,} elements"
    return None


def _tensor_problems(graph: Graph) -> list[str]:
    problems = []
    for t in graph.tensors:
        if t.constant:  # weights and biases: the compiler lays these out itself
            continue
        if any(d < 0 for d in t.signature):
            problems.append(f"tensor '{t.name}' has a dynamic shape {t.signature}")
        if sum(d > 1 for d in t.shape[:-3]) > 0:
            problems.append(f"tensor '{t.name}' {t.shape}: only the 3 innermost dimensions may exceed 1")
        if t.dtype not in EIGHT_BIT:
            problems.append(f"activation tensor '{t.name}' is {t.dtype}, not 8-bit")
    return problems


def check(graph: Graph) -> dict:
    """The compatibility report: per-op verdicts, the first op that would split the graph, tensor rules."""
    verdicts = []
    for op in graph.ops:
        if op.name not in SUPPORTED:
            verdicts.append((op, "unsupported operation"))
            continue
        ceiling, _ = SUPPORTED[op.name]
        if op.version > ceiling:
            verdicts.append((op, f"version {op.version} is newer than the compiler's {ceiling}"))
            continue
        bad_io = [graph.tensors[i].dtype for i in op.inputs + op.outputs
                  if i >= 0 and not graph.tensors[i].constant and graph.tensors[i].dtype not in EIGHT_BIT]
        if bad_io:
            verdicts.append((op, f"{'/'.join(sorted(set(bad_io)))} activations (the Edge TPU is 8-bit only)"))
            continue
        verdicts.append((op, _limitation(graph, op) or "ok"))
    first_bad = next((op for op, v in verdicts if v != "ok"), None)
    table = Counter((op.name, op.version, v) for op, v in verdicts)
    inputs = [graph.tensors[i] for i in graph.inputs]
    outputs = [graph.tensors[i] for i in graph.outputs]
    tensor_problems = _tensor_problems(graph)
    if graph.subgraphs != 1:
        tensor_problems.append(f"{graph.subgraphs} subgraphs: the compiler maps only the first")
    warnings = [f"{kind} '{t.name}' is {t.dtype}; Coral's runtime and examples expect UINT8"
                for kind, ts in (("input", inputs), ("output", outputs)) for t in ts if t.dtype != "UINT8"]
    on_tpu = first_bad.index if first_bad else len(graph.ops)
    return {
        "ops_total": len(graph.ops),
        "ops_mappable_before_split": on_tpu,
        "split_at": None if first_bad is None else {"index": first_bad.index, "op": first_bad.name,
                                                    "reason": dict((o.index, v) for o, v in verdicts)[first_bad.index]},
        "ops": [{"op": name, "version": ver, "count": n, "status": v}
                for (name, ver, v), n in sorted(table.items())],
        "tensor_problems": tensor_problems[:20] + ([f"... and {len(tensor_problems) - 20} more"]
                                                  if len(tensor_problems) > 20 else []),
        "inputs": [{"name": t.name, "shape": t.shape, "dtype": t.dtype} for t in inputs],
        "outputs": [{"name": t.name, "shape": t.shape, "dtype": t.dtype} for t in outputs],
        "warnings": warnings,
        "compatible": first_bad is None and not tensor_problems,
        "basis": "Coral supported-operations table and model requirements; op-version ceilings of the "
                 "TFLite release line the last edgetpu_compiler (16.0) was built against",
    }


def summary(report: dict) -> str:
    if report["compatible"]:
        return f"all {report['ops_total']} ops can map to the Edge TPU"
    parts = []
    if report["split_at"]:
        s = report["split_at"]
        parts.append(f"{report['ops_mappable_before_split']}/{report['ops_total']} ops before the split at op "
                     f"#{s['index']} {s['op']} ({s['reason']}); the rest runs on the CPU")
    if report["tensor_problems"]:
        parts.append(f"{len(report['tensor_problems'])} tensor problem(s), first: {report['tensor_problems'][0]}")
    return "; ".join(parts)
