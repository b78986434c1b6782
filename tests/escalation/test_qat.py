"""Quantization-aware fine-tuning: the fake-quantized model computes on the builders' INT8 grid, and its Q/DQ ONNX
export computes what it computes."""
from __future__ import annotations

import numpy as np
import onnx
import torch

from edgeincep.escalation.qat import FakeQuant, QatConfig, export_qdq, fine_tune
from edgeincep.pipeline.model_source import load_model
from edgeincep.quantize.saturation import u8s8_saturates
from edgeincep.validate import metrics as M


def test_qat_export_is_qdq_onnx_that_onnx_runtime_runs_like_the_fake_quantized_model(tmp_path, reference_calib):
    from edgeincep.validate.ort import OrtPredictor

    model = load_model("inception_resnet_v1", "reference").model
    x = reference_calib.x
    labels = np.arange(len(x)) % 10
    res = fine_tune(model, x[:64], x[64:192], labels[64:192], QatConfig(steps=3, batch_size=8), check_x=x[192:256])
    assert res.steps_done == 3
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
    # The file as written (Q/DQ around float ops) is the fake-quantized model: the same grid in both, and what
    # differs is float accumulation order and a rounding tie here and there.
    as_written = OrtPredictor(path, optimize=False).predict(x[192:256])
    assert M.sqnr_db(torch_out, as_written) > 30
    assert (as_written.argmax(1) == torch_out.argmax(1)).mean() >= 0.95
    # ONNX Runtime's fused integer kernels compute that grid exactly where the CPU accumulates 8-bit products in
    # 32 bits (VNNI, Arm), and clip them in 16 bits where it has no VNNI (measured here under qemu's Haswell:
    # 15.8 dB): the detector that makes a run say so must agree with what the kernels do.
    fused = OrtPredictor(path).predict(x[192:256])
    assert (M.sqnr_db(torch_out, fused) > 30) == (not u8s8_saturates())
    # the untouched model is untouched
    assert not any(isinstance(m, FakeQuant) for m in model.modules())
    # ONNX Runtime takes the file as its own artifact, and runs its convolutions as QLinearConv
    import onnxruntime as ort

    from edgeincep.core.artifact import QatArtifacts
    from edgeincep.registry import get_backend

    art = get_backend("onnxruntime").adopt_qdq(QatArtifacts(path, path, {}), tmp_path / "adopted")
    assert art.fmt == "onnx-qdq-u8s8" and art.sidecar().is_file()
    assert np.array_equal(get_backend("onnxruntime").load(art).predict(x[192:200]), OrtPredictor(path).predict(x[192:200]))
    so = ort.SessionOptions()
    so.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(str(art.path), so, providers=["CPUExecutionProvider"])
    fused = [n.op_type for n in onnx.load(str(tmp_path / "optimized.onnx")).graph.node]
    # a convolution whose output QAT quantized (the next convolution reads it) fuses; one feeding an add or a
    # concat stays a float Conv between DequantizeLinears, as the Q/DQ says
    graph = onnx.load(str(path)).graph
    readers = {}
    for n in graph.node:
        for i in n.input:
            readers.setdefault(i, []).append(n)

    def quantized(t):
        nxt = readers.get(t, [])
        return bool(nxt) and all(r.op_type == "QuantizeLinear" or (r.op_type == "Relu" and quantized(r.output[0]))
                                 for r in nxt)

    expected = sum(1 for n in graph.node if n.op_type == "Conv" and quantized(n.output[0]))
    assert expected > 0 and fused.count("QLinearConv") >= expected


def test_fine_tuning_starts_no_step_after_the_deadline_and_says_how_many_ran(reference_calib):
    model = load_model("inception_resnet_v1", "reference").model
    x = reference_calib.x
    res = fine_tune(model, x[:16], x[16:48], np.arange(32) % 10, QatConfig(steps=50, batch_size=4), check_x=x[:8],
                    deadline=0.0)
    assert res.steps_done == 0 and res.history == []
