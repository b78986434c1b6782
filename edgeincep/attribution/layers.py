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

LAYER_OPS = ("Conv", "Gemm", "MatMul")


@dataclass(frozen=True)
class Layer:
    node: str      # the FP32 ONNX node; backends keep its name
    op: str
    module: str    # the PyTorch module path
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
        out.append(Layer(n.name, n.op_type, module,
                         tuple(sorted(m for m in (module_path(f) for f in feeds) if m))))
    return out


def _noise(ref: np.ndarray, got: np.ndarray) -> float:
    """Noise power over signal power (0: identical)."""
    ref = ref.astype(np.float64)
    return float(np.sum((ref - got) ** 2) / max(float(np.sum(ref ** 2)), 1e-30))


EXACT_DB = 200.0  # what an output identical to FP32 is given (JSON has no infinity)


def _db(noise: float) -> float:
    return EXACT_DB if noise <= 10 ** (-EXACT_DB / 10) else float(-10 * np.log10(noise))


def _run_ort(model: onnx.ModelProto, tensors: list[str], x: np.ndarray, *, optimize: bool) -> dict[str, np.ndarray]:
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

    wanted = {layer.module: (by_name[layer.node].output[0], dequantized(by_name[layer.node].output[0]))
              for layer in ls if layer.node in by_name}
    values = _run_ort(model, [read for _, read in wanted.values()], x, optimize=False)
    return {m: (name, values[read]) for m, (name, read) in wanted.items() if read in values}


def openvino_layer_outputs(xml: Path, ls: list[Layer], x: np.ndarray) -> dict[str, tuple[str, np.ndarray]]:
    """Per module: the output of the IR op that kept the layer's ONNX name (OpenVINO's frontend names the op that
    ends a Conv, its bias Add, after the ONNX node, with the ONNX output tensor's name), on the CPU plugin in f32."""
    import openvino as ov
    import openvino.properties.hint as hints

    core = ov.Core()
    model = core.read_model(str(xml))
    ops = {op.get_friendly_name(): op for op in model.get_ordered_ops()}
    wanted = {}
    for layer in ls:
        op = ops.get(layer.node)
        if op is not None:
            names = sorted(op.output(0).get_names())
            if names:
                wanted[layer.module] = names[0]
    ports = model.add_outputs(list(wanted.values())) if wanted else []
    compiled = core.compile_model(model, "CPU", {hints.inference_precision: ov.Type.f32})
    request = compiled.create_infer_request()
    got: dict[str, list[np.ndarray]] = {m: [] for m in wanted}
    outs = [compiled.output(port.any_name) for port in ports]
    for i in range(len(x)):
        res = request.infer({0: x[i:i + 1]})
        for m, out in zip(wanted, outs, strict=True):
            got[m].append(np.array(res[out]))
    return {m: (wanted[m], np.concatenate(v)) for m, v in got.items()}


def _chain(fp32: onnx.ModelProto, tensor: str) -> list[str]:
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


def match_tflite_layers(path: Path, fp32: Path, ls: list[Layer]) -> dict[str, int]:
    """Module -> index of the .tflite operator (CONV_2D, FULLY_CONNECTED) holding its weights.

    onnx2tf and TensorFlow rename every tensor, so the names say nothing reliable: an operator is matched to
    the ONNX layer of the same weight shape whose weights it holds, per output channel (mean cosine > 0.999
    after dequantizing; per-channel cosine does not care about per-channel scales)."""
    from ai_edge_litert.interpreter import Interpreter

    from edgeincep.litert.graph import read_graph

    model = onnx.load(str(fp32), load_external_data=False)
    by_node = {n.name: n for n in model.graph.node}
    weights = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
    candidates: dict[tuple, list[tuple[Layer, np.ndarray]]] = {}
    for layer in ls:
        w = weights.get(by_node[layer.node].input[1])
        if w is None:
            continue
        if w.ndim == 4:
            w = w.transpose(0, 2, 3, 1)  # OIHW -> OHWI, TFLite's filter layout
        elif layer.op == "Gemm" and not any(a.name == "transB" and a.i for a in by_node[layer.node].attribute):
            w = w.T
        candidates.setdefault(w.shape, []).append((layer, w.reshape(w.shape[0], -1)))
    graph = read_graph(path)
    scales = {d["index"]: d["quantization_parameters"]["scales"]
              for d in Interpreter(model_path=str(path)).get_tensor_details()}
    matched: dict[str, int] = {}
    for op in graph.ops:
        if op.name not in ("CONV_2D", "FULLY_CONNECTED") or len(op.inputs) < 2:
            continue
        q = graph.constant(op.inputs[1])
        if q is None:
            continue
        w = q.astype(np.float64).reshape(q.shape[0], -1)
        if len(scales.get(op.inputs[1], [])):
            w = w * np.asarray(scales[op.inputs[1]]).reshape(-1, 1)
        best, score = None, 0.999
        for layer, ref in candidates.get(tuple(q.shape), []):
            cos = np.sum(ref * w, 1) / (np.linalg.norm(ref, axis=1) * np.linalg.norm(w, axis=1) + 1e-30)
            if float(np.mean(cos)) > score:
                best, score = layer, float(np.mean(cos))
        if best is not None:
            matched[best.module] = op.index
    return matched


def tflite_layer_outputs(path: Path, fp32: Path, ls: list[Layer], x: np.ndarray) -> dict[str, tuple[str, np.ndarray]]:
    """Per module: the output of the .tflite operator holding its weights (match_tflite_layers), dequantized and
    read against whichever of the ONNX layer's output and its folded successors (activation, scale) it
    computes: the one it is closest to."""
    from ai_edge_litert.interpreter import Interpreter

    from edgeincep.device.runner import dequantize, quantize
    from edgeincep.litert.graph import read_graph

    graph = read_graph(path)
    matched = {m: graph.ops[i].outputs[0] for m, i in match_tflite_layers(path, fp32, ls).items()}
    import warnings

    with warnings.catch_warnings():  # "for debugging purposes only": reading intermediate tensors is the point
        warnings.simplefilter("ignore", UserWarning)
        it = Interpreter(model_path=str(path), experimental_preserve_all_tensors=True, num_threads=1)
    it.allocate_tensors()
    details = {d["index"]: d for d in it.get_tensor_details()}
    inp = it.get_input_details()[0]
    rows: dict[str, list[np.ndarray]] = {m: [] for m in matched}
    for i in range(len(x)):
        it.set_tensor(inp["index"], quantize(np.ascontiguousarray(x[i:i + 1].transpose(0, 2, 3, 1)), inp))
        it.invoke()
        for m, t in matched.items():
            v = dequantize(it.get_tensor(t), details[t])
            rows[m].append(v.transpose(0, 3, 1, 2) if v.ndim == 4 else v)
    got = {m: np.concatenate(v) for m, v in rows.items()}
    model = onnx.load(str(fp32))
    by_node = {n.name: n for n in model.graph.node}
    module_node = {la.module: la.node for la in ls}
    options = {m: _chain(model, by_node[module_node[m]].output[0]) for m in got}
    ref = _run_ort(model, sorted({t for c in options.values() for t in c}), x, optimize=False)
    out = {}
    for m, values in got.items():
        fits = [(t, _noise(ref[t], values)) for t in options[m] if t in ref and ref[t].shape == values.shape]
        if fits:
            out[m] = (min(fits, key=lambda kv: kv[1])[0], values)
    return out


def artifact_layer_outputs(target: str, path: Path, fp32: Path, ls: list[Layer], x: np.ndarray):
    """The layer outputs of a backend's artifact by module; None where no way to match its layers is known."""
    if target == "openvino":
        return openvino_layer_outputs(path, ls, x)
    if Path(path).suffix == ".tflite":
        return tflite_layer_outputs(path, fp32, ls, x)
    if Path(path).suffix == ".onnx":
        return onnx_layer_outputs(path, ls, x)
    return None


def attribute(fp32: Path, artifacts: dict[str, tuple[str, Path]], x: np.ndarray) -> dict:
    """Per layer and artifact (name -> (target, path)), on images `x`:
    `sqnr_db`, the layer output against FP32 (error accumulated up to there), and `own_sqnr_db`, the SQNR of
    the noise the layer added itself (its noise power minus the worst of its inputs'): low means this layer's
    quantization hurts, wherever it sits."""
    ls = layers(fp32)
    got = {}
    skipped = {}
    for name, (target, path) in artifacts.items():
        outs = artifact_layer_outputs(target, Path(path), Path(fp32), ls, x)
        if outs is None:
            skipped[name] = f"{target}: no way to match its layers to the ONNX model's is known"
        elif not outs:
            skipped[name] = "no layer of the FP32 model kept its name in this file"
        else:
            got[name] = outs
    tensors = sorted({t for outs in got.values() for t, _ in outs.values()})
    ref = _run_ort(onnx.load(str(fp32)), tensors, x, optimize=False) if tensors else {}
    columns = {}
    for name, outs in got.items():
        noise = {m: _noise(ref[t], v) for m, (t, v) in outs.items() if t in ref and ref[t].shape == v.shape}
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


def model_explorer_node_data(record: dict, artifact: str) -> dict:
    """Google Model Explorer node data (GraphNodeData) for one artifact over the FP32 ONNX graph: each layer's
    SQNR keyed by its output tensor name (Model Explorer matches it to the node that outputs it), red for
    the lowest, green for the highest."""
    results = {}
    for v in record["artifacts"][artifact].values():
        results[v["tensor"]] = {"value": round(float(v["sqnr_db"]), 3)}
    return {"results": results, "gradient": [{"stop": 0, "bgColor": "#d73027"}, {"stop": 0.5, "bgColor": "#fee08b"},
                                             {"stop": 1, "bgColor": "#1a9850"}]}
