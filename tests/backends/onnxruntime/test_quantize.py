"""ONNX Runtime INT8: the right formats, every calibration method really used, memory-bounded."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from edgeincep.backends.onnxruntime.quantize import (
    OrtQuantConfig,
    compute_ranges,
    preprocess_for_quantization,
    quantize_onnx,
)
from edgeincep.export.onnx import build_metadata, export_onnx, read_metadata, run_onnx
from edgeincep.models import create_model
from edgeincep.models.synthetic import apply_synthetic_weights
from edgeincep.paths import DEFAULT_CALIBRATION
from edgeincep.quantize.calibration import load_calibration


@pytest.fixture(scope="module")
def fp32(tmp_path_factory) -> Path:
    model = apply_synthetic_weights(create_model("inception_resnet_v1_cls", width=0.125, num_classes=10))
    calib = load_calibration(DEFAULT_CALIBRATION, model.spec.preprocess.__class__(input_size=75), count=4)
    path = tmp_path_factory.mktemp("fp32") / "m.75px.fp32.onnx"
    export_onnx(model, path, input_size=75, verify_images=calib.x, metadata=build_metadata(
        model.spec, model, 75, class_names=None, checkpoint_sha256=None, width=0.125))
    return path


@pytest.fixture(scope="module")
def calib(fp32):
    from edgeincep.export.onnx import preprocess_from_metadata

    return load_calibration(DEFAULT_CALIBRATION, preprocess_from_metadata(read_metadata(fp32)), count=24, seed=3)


def _initializers(model):
    return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}


def _zero_points(model, op):
    inits = _initializers(model)
    return [inits[n.input[2]] for n in model.graph.node if n.op_type == op and len(n.input) > 2 and n.input[2] in inits]


def test_u8s8_has_uint8_activations_and_per_channel_int8_weights(tmp_path, fp32, calib):
    out = tmp_path / "q.onnx"
    info = quantize_onnx(fp32, out, calib, OrtQuantConfig(), metadata=read_metadata(fp32))
    model = onnx.load(str(out))
    q_zps = _zero_points(model, "QuantizeLinear")
    assert q_zps and all(z.dtype == np.uint8 for z in q_zps)
    inits = _initializers(model)
    weight_dqs = [n for n in model.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in inits
                  and inits[n.input[0]].dtype == np.int8 and inits[n.input[0]].ndim == 4]
    assert weight_dqs and all(inits[n.input[1]].ndim == 1 and inits[n.input[1]].size > 1 for n in weight_dqs)
    assert info["format"] == "qdq-u8s8" and info["calibration_images"] == 24
    meta = read_metadata(out)
    assert meta["edgeincep.model"] == "inception_resnet_v1_cls" and "qdq-u8s8, minmax" in meta["edgeincep.quantization"]
    y = run_onnx(out, calib.x[:4])
    assert y.shape == (4, 10) and np.isfinite(y).all()


def test_s8s8_is_symmetric_int8(tmp_path, fp32, calib):
    out = tmp_path / "s.onnx"
    quantize_onnx(fp32, out, calib, OrtQuantConfig(fmt="s8s8"))
    zps = _zero_points(onnx.load(str(out)), "QuantizeLinear")
    assert zps and all(z.dtype == np.int8 and not z.any() for z in zps)


def _ranges(fp32, calib, tmp_path, **kw):
    pre = preprocess_for_quantization(fp32, tmp_path / "pre.onnx")
    data = compute_ranges(pre, calib, OrtQuantConfig(**kw), tmp_path)
    return {k: (float(np.asarray(v.range_value[0]).min()), float(np.asarray(v.range_value[1]).max()))
            for k, v in data.data.items()}


def test_chunked_minmax_calibration_equals_one_pass(tmp_path, fp32, calib):
    assert _ranges(fp32, calib, tmp_path, chunk=4) == _ranges(fp32, calib, tmp_path, chunk=24)


@pytest.mark.parametrize("method", ["entropy", "percentile"])
def test_histogram_methods_really_narrow_the_ranges(tmp_path, fp32, calib, method):
    minmax = _ranges(fp32, calib, tmp_path, method="minmax")
    other = _ranges(fp32, calib, tmp_path, method=method, num_bins=256, percentile=99.9)
    widths = [(minmax[k][1] - minmax[k][0], other[k][1] - other[k][0]) for k in minmax if k in other]
    narrower = sum(o < m * 0.999 for m, o in widths)
    assert narrower > len(widths) // 2, f"{method} left most ranges at min/max"


def test_float_nodes_stay_float(tmp_path, fp32, calib):
    first = tmp_path / "a.onnx"
    quantize_onnx(fp32, first, calib, OrtQuantConfig())
    graph = onnx.load(str(first)).graph
    convs = [n.name for n in graph.node if n.op_type == "Conv"]
    keep = convs[5]
    out = tmp_path / "b.onnx"
    quantize_onnx(fp32, out, calib, OrtQuantConfig(exclude_nodes=[keep]))
    graph = onnx.load(str(out)).graph
    producer = {o: n for n in graph.node for o in n.output}
    node = next(n for n in graph.node if n.name == keep)
    inits = _initializers(onnx.load(str(out)))
    assert node.input[1] not in producer and inits[node.input[1]].dtype == np.float32  # weight stays float
    assert read_metadata(out)["edgeincep.float_nodes"] == keep


def test_unknown_method_or_format_is_a_user_error():
    from edgeincep.core.errors import UserError

    with pytest.raises(UserError, match="unknown calibration method"):
        OrtQuantConfig(method="kl")
    with pytest.raises(UserError, match="unknown ONNX Runtime INT8 format"):
        OrtQuantConfig(fmt="u8u8")
