"""Quantization-aware fine-tuning: the fake-quantized model computes on the builders' INT8 grid, and its Q/DQ ONNX
export computes what it computes."""
from __future__ import annotations

import numpy as np
import onnx
import torch

from edgeincep.escalation.qat import FakeQuant, QatConfig, export_qdq, fine_tune
from edgeincep.pipeline.model_source import load_model
from edgeincep.validate import metrics as M


def test_qat_export_is_qdq_onnx_that_onnx_runtime_runs_like_the_fake_quantized_model(tmp_path, reference_calib):
    from edgeincep.validate.ort import OrtPredictor

    model = load_model("inception_resnet_v1", "reference").model
    x = reference_calib.x
    labels = np.arange(len(x)) % 10
    res = fine_tune(model, x[:64], x[64:192], labels[64:192], QatConfig(steps=3, batch_size=8), check_x=x[192:256])
    wrappers = [m for m in res.model.modules() if isinstance(m, FakeQuant)]
    assert wrappers and all(w.active and not w.observing for w in wrappers)
    assert all(0 <= w.zero <= 255 and w.scale > 0 for w in wrappers)
    # weights sit on a symmetric per-channel int8 grid
    w = wrappers[5]
    q = w._weight().detach() / w.frozen_weight_scale.view(-1, *([1] * (w.inner.weight.dim() - 1)))
    assert torch.allclose(q, q.round(), atol=1e-3) and q.abs().max() <= 127.001
    path = export_qdq(res, tmp_path / "m.qat.qdq.onnx", x, {"edgeincep.model": "inception_resnet_v1"})
    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "Conv"} <= ops
    with torch.inference_mode():
        torch_out = res.model(torch.from_numpy(x[192:256])).numpy()
    ort_out = OrtPredictor(path).predict(x[192:256])
    # the same grid in both; what differs is float accumulation order and a rounding tie here and there
    assert M.sqnr_db(torch_out, ort_out) > 30
    assert (ort_out.argmax(1) == torch_out.argmax(1)).mean() >= 0.95
    # the untouched model is untouched
    assert not any(isinstance(m, FakeQuant) for m in model.modules())
