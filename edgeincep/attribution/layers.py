"""Each layer's INT8 error, per backend, measured at tensors FP32 and the INT8 artifact share.

Layers are found in each artifact by what survives its conversion: ONNX Runtime's and ModelOpt's Q/DQ
graphs keep the ONNX node names, OpenVINO's IR names the op that ends a layer after the ONNX node, and a
.tflite (renamed throughout by onnx2tf and TensorFlow) holds the layer's weights. The FP32 ONNX and the
artifact are both run with those layer outputs exposed, on the same images, and compared: `sqnr_db` is
the layer output's signal-to-noise ratio against FP32 (the error accumulated up to there), `own_sqnr_db`
the SQNR of the noise the layer adds itself (its noise power minus the worst of its inputs'), so a layer
whose quantization is bad stands out wherever it sits. Each row is named by the PyTorch module (names.py).
"""
from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from edgeincep.attribution.names import module_path
from edgeincep.registry import get_backend

LAYER_OPS = ("Conv", "Gemm", "MatMul")


@dataclass(frozen=True)
class Layer:
    node: str      # the FP32 ONNX node; backends keep its name
    op: str
    module: str    # the PyTorch module path
    tensor: str    # its output in the FP32 ONNX
    upstream: tuple[str, ...]  # modules of the layers that feed it (through non-layer ops)


def layers(fp32: Path) -> list[Layer]:
    """The weighted layers of the FP32 ONNX in graph order, each with the upstream layers that feed it."""
    graph = onnx.load(str(fp32), load_external_data=False).graph
    producer = {o: n for n in graph.node for o in n.output}

    def feeding(tensor: str, seen: set[str]) -> set[str]:
        node = producer.get(tensor)
        if node is None or tensor in seen:
            return set()
        seen.add(tensor)
        if node.op_type in LAYER_OPS:
            return {node.name}
        out: set[str] = set()
        for i in node.input:
            out |= feeding(i, seen)
        return out

    out = []
    for n in graph.node:
        module = module_path(n.name) if n.op_type in LAYER_OPS else None
        if module is None:
            continue
        feeds = feeding(n.input[0], set())
        out.append(Layer(n.name, n.op_type, module, n.output[0],
                         tuple(sorted(m for m in (module_path(f) for f in feeds) if m))))
    return out


def noise_ratio(ref: np.ndarray, got: np.ndarray) -> float:
    """Noise power over signal power (0: identical)."""
    ref = ref.astype(np.float64)
    return float(np.sum((ref - got) ** 2) / max(float(np.sum(ref ** 2)), 1e-30))


EXACT_DB = 200.0  # what an output identical to FP32 is given (JSON has no infinity)


def _db(noise: float) -> float:
    return EXACT_DB if noise <= 10 ** (-EXACT_DB / 10) else float(-10 * np.log10(noise))


def run_onnx(model: onnx.ModelProto, tensors: list[str], x: np.ndarray, *, optimize: bool) -> dict[str, np.ndarray]:
    import onnxruntime as ort

    have = {o.name for o in model.graph.output}
    produced = {o for n in model.graph.node for o in n.output}
    for t in tensors:
        if t in produced and t not in have:
            model.graph.output.append(onnx.helper.make_empty_tensor_value_info(t))
    so = ort.SessionOptions()
    so.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimize
                                   else ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
    so.log_severity_level = 3
    with tempfile.TemporaryDirectory(prefix="edgeincep-attr-") as tmp:
        path = Path(tmp) / "model.onnx"
        onnx.save(model, str(path))
        sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    feed_name = sess.get_inputs()[0].name
    runs = [sess.run(None, {feed_name: x[i:i + 1]}) for i in range(len(x))]
    return {name: np.concatenate([r[j] for r in runs]) for j, name in enumerate(names) if name in tensors}


def onnx_layer_outputs(path: Path, ls: list[Layer], x: np.ndarray) -> dict[str, tuple[str, np.ndarray]]:
    """Per module: (FP32 tensor name, values) of the node that kept the layer's name in a Q/DQ ONNX, run as
    written (the Q/DQ pairs simulate what the fused INT8 kernels compute; an optimised session would fold
    them away). Where a Q -> DQ pair follows the node, its DQ output is read: ONNX Runtime's quantizer folds
    a Relu into the Q's range and gives the Conv the Relu's output name, so the raw Conv output is not yet
    what FP32's tensor of that name holds; the dequantized value, which the next layer reads, is."""
    model = onnx.load(str(path))
    by_name = {n.name: n for n in model.graph.node}
    consumers: dict[str, list] = {}
    for n in model.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)

    def dequantized(tensor: str) -> str:
        q = consumers.get(tensor, [])
        if len(q) == 1 and q[0].op_type == "QuantizeLinear":
            dq = consumers.get(q[0].output[0], [])
            if dq and all(d.op_type == "DequantizeLinear" for d in dq):
                return dq[0].output[0]
        return tensor

    produced = {o for n in model.graph.node for o in n.output}
    wanted = {}
    for layer in ls:
        if layer.node not in by_name:
            continue
        # The FP32 output's own name where the file still produces it (a rewrite that moved a pool after this
        # Conv gave the Conv a new output and the pool the old name, which keeps its meaning), else the node's.
        name = layer.tensor if layer.tensor in produced else by_name[layer.node].output[0]
        wanted[layer.module] = (name, dequantized(name))
    values = run_onnx(model, [read for _, read in wanted.values()], x, optimize=False)
    return {m: (name, values[read]) for m, (name, read) in wanted.items() if read in values}


def folded_chain(fp32: onnx.ModelProto, tensor: str) -> list[str]:
    """The tensor and what single-consumer elementwise ops (Relu, Mul, Add of a constant) make of it: a converter
    may fold any of them into the layer, so the layer's output in its file is one of these."""
    consumers: dict[str, list] = {}
    for n in fp32.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    inits = {t.name for t in fp32.graph.initializer}
    consts = inits | {o for n in fp32.graph.node if n.op_type == "Constant" for o in n.output}
    out = [tensor]
    while True:
        nxt = consumers.get(out[-1], [])
        if len(nxt) != 1 or nxt[0].op_type not in ("Relu", "Mul", "Add", "Clip"):
            return out
        others = [i for i in nxt[0].input if i != out[-1]]
        if any(i and i not in consts for i in others):
            return out  # a residual Add joins another branch: no longer this layer's own output
        out.append(nxt[0].output[0])


def attribute(fp32: Path, artifacts: dict[str, tuple[str, Path]], x: np.ndarray) -> dict:
    """Per layer and artifact (name -> (target, path)), on images `x`:
    `sqnr_db`, the layer output against FP32 (error accumulated up to there), and `own_sqnr_db`, the SQNR of
    the noise the layer added itself (its noise power minus the worst of its inputs'): low means this layer's
    quantization hurts, wherever it sits."""
    ls = layers(fp32)
    got = {}
    skipped = {}
    for name, (target, path) in artifacts.items():
        outs = get_backend(target).layer_outputs(Path(path), Path(fp32), ls, x)
        if outs is None:
            skipped[name] = f"{target}: no way to find its layers is known"
        elif not outs:
            skipped[name] = "no layer of the FP32 model kept its name in this file"
        else:
            got[name] = outs
    tensors = sorted({t for outs in got.values() for t, _ in outs.values()})
    ref = run_onnx(onnx.load(str(fp32)), tensors, x, optimize=False) if tensors else {}
    columns = {}
    for name, outs in got.items():
        noise = {m: noise_ratio(ref[t], v) for m, (t, v) in outs.items() if t in ref and ref[t].shape == v.shape}
        column = {}
        for layer in ls:
            if layer.module not in noise:
                continue
            upstream = [noise[m] for m in layer.upstream if m in noise]
            own = max(noise[layer.module] - max(upstream, default=0.0), 0.0)
            column[layer.module] = {"node": layer.node, "tensor": outs[layer.module][0],
                                    "sqnr_db": _db(noise[layer.module]), "own_sqnr_db": _db(own)}
        columns[name] = column
    return {"images": len(x), "layers": [{"module": la.module, "node": la.node, "op": la.op} for la in ls],
            "artifacts": columns, "skipped": skipped}


def worst(record: dict, artifact: str, n: int = 10) -> list[tuple[str, float]]:
    """The n modules whose own noise is largest for one artifact."""
    col = record["artifacts"][artifact]
    return sorted(((m, v["own_sqnr_db"]) for m, v in col.items()), key=lambda kv: kv[1])[:n]


def worst_modules(record: dict, per_artifact: int = 12) -> list[str]:
    """The union of each artifact's worst layers, in graph order (the rows a heat map shows)."""
    picked = set()
    for col in record["artifacts"].values():
        picked |= {m for m, _ in sorted(col.items(), key=lambda kv: kv[1]["own_sqnr_db"])[:per_artifact]}
    return [la["module"] for la in record["layers"] if la["module"] in picked]


def model_explorer_node_data(record: dict, artifact: str) -> dict:
    """Google Model Explorer node data (GraphNodeData) for one artifact over the FP32 ONNX graph: each layer's
    SQNR keyed by its ONNX node name, red for the lowest, green for the highest. The client attaches a result
    to the node whose id is the key, or to the producer of an output whose `tensor_name` metadata is the key;
    its ONNX adapter (model-explorer-onnx) takes the node name as the id and writes no `tensor_name`, so output
    tensor names would attach nowhere."""
    results = {}
    for v in record["artifacts"][artifact].values():
        results[v["node"]] = {"value": round(float(v["sqnr_db"]), 3)}
    return {"results": results, "gradient": [{"stop": 0, "bgColor": "#d73027"}, {"stop": 0.5, "bgColor": "#fee08b"},
                                             {"stop": 1, "bgColor": "#1a9850"}]}
