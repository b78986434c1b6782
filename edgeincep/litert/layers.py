"""Where a .tflite's layers are, for per-layer attribution (edgeincep.attribution): by the weights they hold.

onnx2tf and TensorFlow rename every tensor, so a .tflite keeps no ONNX names to find a layer by.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx

from edgeincep.attribution.layers import Layer, folded_chain, noise_ratio, run_onnx


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
    options = {m: folded_chain(model, by_node[module_node[m]].output[0]) for m in got}
    ref = run_onnx(model, sorted({t for c in options.values() for t in c}), x, optimize=False)
    out = {}
    for m, values in got.items():
        fits = [(t, noise_ratio(ref[t], values)) for t in options[m] if t in ref and ref[t].shape == values.shape]
        if fits:
            out[m] = (min(fits, key=lambda kv: kv[1])[0], values)
    return out
