"""The pool/1x1-conv swap is exact where it applies and is left alone where it would not be."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgeincep.pipeline.export_stage import run_export
from edgeincep.quantize.rewrite import pool_after_pointwise_conv


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    s = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return s.run(None, {s.get_inputs()[0].name: x})[0]


def _pool_conv(count_include_pad: int = 0, second_user: bool = False) -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((4, 8, 1, 1)).astype(np.float32), "w")
    b = numpy_helper.from_array(rng.standard_normal(4).astype(np.float32), "b")
    nodes = [helper.make_node("AveragePool", ["x"], ["p"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[1, 1],
                              count_include_pad=count_include_pad),
             helper.make_node("Conv", ["p", "w", "b"], ["c"], kernel_shape=[1, 1]),
             helper.make_node("Relu", ["c"], ["y"])]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 6, 6])]
    if second_user:
        outputs.append(helper.make_tensor_value_info("p", TensorProto.FLOAT, [1, 8, 6, 6]))
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 6, 6])],
                          outputs, initializer=[w, b])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def test_swap_is_exact_for_windowed_means_before_a_pointwise_conv():
    x = np.random.default_rng(1).standard_normal((1, 8, 6, 6)).astype(np.float32)
    m = _pool_conv()
    before = _run(m, x)
    assert pool_after_pointwise_conv(m) == 1
    assert [n.op_type for n in m.graph.node] == ["Conv", "AveragePool", "Relu"]
    onnx.checker.check_model(m, full_check=True)
    np.testing.assert_allclose(_run(m, x), before, atol=1e-5)


@pytest.mark.parametrize("case", ["count_include_pad", "pool_output_used_twice"])
def test_pools_whose_swap_would_change_the_result_are_left_alone(case):
    # With padding counted, the pool averages the conv's bias with zeros at the border: not the same.
    m = _pool_conv(count_include_pad=1) if case == "count_include_pad" else _pool_conv(second_user=True)
    assert pool_after_pointwise_conv(m) == 0
    assert [n.op_type for n in m.graph.node] == ["AveragePool", "Conv", "Relu"]


def test_inception_v4_pool_branches_all_swap_and_the_logits_stay(tmp_path, labelled_dir):
    fp32 = run_export("inception_v4", weights="reference", out_dir=tmp_path).path
    from edgeincep.data.folders import load_array, scan_folder
    from edgeincep.export.onnx import preprocess_from_metadata, read_metadata

    x, _ = load_array(scan_folder(labelled_dir), preprocess_from_metadata(read_metadata(fp32)))
    m = onnx.load(str(fp32))
    before = _run(m, x)
    assert pool_after_pointwise_conv(m) == 14  # 4 x Inception-A, 7 x B, 3 x C
    np.testing.assert_allclose(_run(m, x), before, atol=1e-4, rtol=1e-4)
