"""TFLite's rungs of the escalation ladder: layers kept in float through the quantizer's denylist (what TensorFlow's
quantization debugger does), ranked by per-layer attribution; and 16x8 quantization (int16 activations)."""
from __future__ import annotations

import numpy as np

from edgeincep.litert.convert import float_islands
from edgeincep.recipes import Recipe
from edgeincep.registry import get_backend
from edgeincep.validate import metrics as M
from edgeincep.validate.ort import OrtPredictor

TFL = get_backend("tflite")


def _sqnr(art, fp32, x) -> float:
    return M.sqnr_db(OrtPredictor(fp32).predict(x), TFL.load(art).predict(x))


def test_the_most_damaged_layers_stay_float_and_the_rest_stays_int8(reference_fp32, reference_calib, tflite_int8,
                                                                      tmp_path):
    x = reference_calib.x[:8]
    ranked = TFL.rank_layers(tflite_int8, reference_fp32, reference_calib, Recipe(), x)
    assert len(ranked) > 100 and len(set(ranked)) == len(ranked)  # every weighted layer, each once
    art = TFL.build_keeping_float(reference_fp32, reference_calib, Recipe(), tmp_path, ranked[:3])
    assert art.meta["float_nodes"] == ranked[:3]
    islands = float_islands(art.path.read_bytes())
    assert 3 <= len(islands) < 20  # those layers (and what fuses into them) compute in float, nothing else
    assert not float_islands(tflite_int8.path.read_bytes())
    held = reference_calib.x[100:164]
    assert _sqnr(art, reference_fp32, held) > _sqnr(tflite_int8, reference_fp32, held) - 0.5


def test_the_layers_it_keeps_in_float_are_named_by_their_pytorch_modules(reference_fp32, reference_calib, tflite_int8):
    from edgeincep.attribution.layers import layers

    ranked = TFL.rank_layers(tflite_int8, reference_fp32, reference_calib, Recipe(), reference_calib.x[:4])
    modules = TFL.layer_modules(tflite_int8, reference_fp32, ranked)
    weighted = {la.module: la.op for la in layers(reference_fp32)}
    # one module per tensor, each a different weighted layer of the FP32 model, every one of them named
    assert set(modules) == set(ranked) and len(set(modules.values())) == len(ranked)
    assert all(weighted.get(m) in ("Conv", "Gemm") for m in modules.values())
    assert len(ranked) == sum(op in ("Conv", "Gemm") for op in weighted.values())
    # onnx2tf's names carry no module path: the tensor names alone would not tell
    assert not any(m in t for t, m in modules.items())


def test_16x8_keeps_activations_in_int16_and_tracks_fp32_far_closer(reference_fp32, reference_calib, tflite_int8,
                                                                    tmp_path):
    art = TFL.build(reference_fp32, reference_calib, Recipe.model_validate({"tflite": {"activations": "int16"}}),
                    tmp_path)
    assert art.fmt == "tflite-16x8-float32-io" and art.precision == "int8"
    from edgeincep.litert.graph import read_graph

    g = read_graph(art.path)
    conv_out = {g.tensors[op.outputs[0]].dtype for op in g.ops if op.name == "CONV_2D"}
    assert conv_out == {"INT16"}
    held = reference_calib.x[100:164]
    gain = _sqnr(art, reference_fp32, held) - _sqnr(tflite_int8, reference_fp32, held)
    assert gain > 10, gain  # 256x finer activations: tens of dB
    assert np.isfinite(gain)
