"""Per-layer attribution: every layer named by its PyTorch module, and a deliberately broken layer found where it is."""
from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from edgeincep.attribution.layers import attribute, layers, model_explorer_node_data, worst
from edgeincep.attribution.names import module_path
from edgeincep.models.registry import create_model

BROKEN = "/repeat_2/repeat_2.3/branch1/branch1.1/conv/Conv"


def test_module_paths_follow_torch_scopes():
    assert module_path("/repeat_1/repeat_1.3/branch1/branch1.0/conv/Conv") == "repeat_1.3.branch1.0.conv"
    assert module_path("/conv2d_1a/conv/Conv") == "conv2d_1a.conv"
    assert module_path("/last_linear/Gemm") == "last_linear"
    assert module_path("/features/features.10/branch1/branch1.1/conv/Conv") == "features.10.branch1.1.conv"
    assert module_path("Conv_12") is None


def test_every_layer_of_the_export_is_a_module_of_the_pytorch_model(reference_fp32):
    state = create_model("inception_resnet_v1", width=0.125, num_classes=10).state_dict()
    ls = layers(reference_fp32)
    assert len(ls) == 134
    for layer in ls:
        assert f"{layer.module}.weight" in state, layer
    # Upstream links follow the graph: the stem's second conv reads the first.
    by = {la.module: la for la in ls}
    assert by["conv2d_2a.conv"].upstream == ("conv2d_1a.conv",)


@pytest.fixture(scope="module")
def broken_int8(build_int8, tmp_path_factory):
    """Our ONNX Runtime INT8 model with one layer's weight scale tripled: an INT8-only fault in one module."""
    art = build_int8("onnxruntime")
    model = onnx.load(str(art.path))
    producer = {o: n for n in model.graph.node for o in n.output}
    inits = {t.name: t for t in model.graph.initializer}
    conv = next(n for n in model.graph.node if n.name == BROKEN)
    dq = producer[conv.input[1]]
    scale = inits[dq.input[1]]
    scale.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(scale) * 3, scale.name))
    out = tmp_path_factory.mktemp("broken") / "broken.onnxruntime.int8.onnx"
    onnx.save(model, str(out))
    return art.path, out


def test_a_deliberately_broken_layer_is_attributed_to_its_module(reference_fp32, reference_calib, broken_int8):
    good, bad = broken_int8
    rec = attribute(reference_fp32, {"good": ("onnxruntime", good), "broken": ("onnxruntime", bad)},
                    reference_calib.x[:16])
    (first, own), *_ = worst(rec, "broken", 3)
    assert first == "repeat_2.3.branch1.1.conv" and own < 10
    assert rec["artifacts"]["good"][first]["own_sqnr_db"] > 20
    # Upstream of the fault the two artifacts are one model: the same numbers.
    assert rec["artifacts"]["broken"]["repeat_2.2.branch0.conv"] == rec["artifacts"]["good"]["repeat_2.2.branch0.conv"]


def test_openvino_layers_are_found_by_the_onnx_names_its_ir_keeps(reference_fp32, reference_calib, tmp_path):
    """An IR converted from an FP32 ONNX with one layer's weights doubled: only that module adds noise."""
    import openvino as ov

    model = onnx.load(str(reference_fp32))
    inits = {t.name: t for t in model.graph.initializer}
    conv = next(n for n in model.graph.node if n.name == BROKEN)
    w = inits[conv.input[1]]
    w.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(w) * 2, w.name))
    onnx.save(model, str(tmp_path / "broken.onnx"))
    ov.save_model(ov.convert_model(str(tmp_path / "broken.onnx")), str(tmp_path / "broken.xml"), compress_to_fp16=False)
    rec = attribute(reference_fp32, {"ir": ("openvino", tmp_path / "broken.xml")}, reference_calib.x[:8])
    col = rec["artifacts"]["ir"]
    broken = "repeat_2.3.branch1.1.conv"
    assert worst(rec, "ir", 1)[0][0] == broken
    # Upstream of it the IR is FP32 itself; downstream, layers inherit its error (low sqnr_db) and pass it on.
    # The layer reading its output directly re-weighs that error (a doubled channel no longer cancels as it
    # did), so it shows some of its own; no other layer does.
    assert all(v["own_sqnr_db"] > 60 for m, v in col.items() if m.startswith(("conv2d_", "repeat_1.")))
    assert col["repeat_2.4.branch0.conv"]["sqnr_db"] < 40
    readers = {la.module for la in layers(reference_fp32) if broken in la.upstream}
    assert readers == {"repeat_2.3.branch1.2.conv"}
    assert all(v["own_sqnr_db"] > 20 for m, v in col.items() if m != broken and m not in readers)


def model_explorer_graph(fp32) -> dict:
    """The graph Model Explorer's ONNX adapter builds from the file, as its server sends it to the browser."""
    from model_explorer.utils import convert_adapter_response
    from model_explorer_onnx.main import ONNXAdapter

    return convert_adapter_response(ONNXAdapter().convert(str(fp32), {}))["graphs"][0]


def attached(data: dict, graph: dict) -> set[str]:
    """The keys the client attaches: a key is a node id, or the `tensor_name` of one of a node's outputs
    (the web app's rule, processNodeDataProviderDataForGraph)."""
    ids = {n["id"] for n in graph["nodes"]}
    by_tensor = {a["value"]: n["id"] for n in graph["nodes"] for md in n.get("outputsMetadata") or []
                 for a in md["attrs"] if a["key"] == "tensor_name"}
    return {k for k in data["results"] if by_tensor.get(k, k) in ids}


def test_model_explorer_node_data_attaches_to_every_layer_in_the_real_client(
        reference_fp32, reference_calib, broken_int8, tflite_int8, openvino_int8):
    arts = {"broken": ("onnxruntime", broken_int8[1]), "tflite": ("tflite", tflite_int8.path),
            "openvino": ("openvino", openvino_int8.path)}
    rec = attribute(reference_fp32, arts, reference_calib.x[:4])
    graph = model_explorer_graph(reference_fp32)
    for name in arts:
        data = json.loads(json.dumps(model_explorer_node_data(rec, name)))
        assert len(data["results"]) == len(rec["artifacts"][name]) > 100
        assert attached(data, graph) == set(data["results"]), name
        assert all(np.isfinite(v["value"]) for v in data["results"].values())
    assert data["gradient"][0]["stop"] == 0 and data["gradient"][-1]["stop"] == 1
    # what the files held before: output tensor names, which the ONNX adapter maps to no node
    assert not attached({"results": {v["tensor"]: {} for v in rec["artifacts"]["broken"].values()}}, graph)


def test_cli_writes_the_table_json_html_and_model_explorer_data(cli, reference_fp32, broken_int8, tmp_path):
    res = cli("attribute", reference_fp32, broken_int8[1], "--count", "8", "--json", tmp_path / "a.json",
              "--html", tmp_path / "a.html", "--model-explorer", tmp_path / "me")
    assert res.exit_code == 0, res.output
    assert "repeat_2.3.branch1.1.conv" in res.output
    rec = json.loads((tmp_path / "a.json").read_text())
    assert rec["images"] == 8 and list(rec["artifacts"]) == ["onnxruntime"]
    page = (tmp_path / "a.html").read_text()
    assert page.count("data:image/png;base64,") == 1 and "repeat_2.3.branch1.1.conv" in page
    assert (tmp_path / "me" / "onnxruntime.node_data.json").is_file()


def test_cli_refuses_bad_input_with_one_line(cli, reference_fp32, tmp_path):
    res = cli("attribute", tmp_path / "missing.onnx", reference_fp32)
    assert res.exit_code == 2 and "missing.onnx: FP32 ONNX not found" in res.output
    res = cli("attribute", reference_fp32, tmp_path / "nope.onnx")
    assert res.exit_code == 2 and "nope.onnx: artifact not found" in res.output
    res = cli("attribute", reference_fp32, reference_fp32, "--count", "0")
    assert res.exit_code == 2 and "--count must be at least 1" in res.output


def test_tflite_layers_are_matched_by_their_weights_and_a_broken_one_is_found(reference_fp32, reference_calib,
                                                                               tflite_int8, tmp_path):
    """onnx2tf and TensorFlow rename every tensor; layers are matched by the weights they hold. One CONV_2D's
    weight scales tripled (an INT8-only fault) shows in exactly that module."""
    from edgeincep.litert.layers import match_tflite_layers
    from edgeincep.litert.rewrite import load, pack

    ls = layers(reference_fp32)
    matched = match_tflite_layers(tflite_int8.path, reference_fp32, ls)
    assert set(matched) == {la.module for la in ls} and len(set(matched.values())) == len(ls)
    data = tflite_int8.path.read_bytes()
    model = load(data)
    op = model.subgraphs[0].operators[matched["repeat_2.3.branch1.1.conv"]]
    q = model.subgraphs[0].tensors[op.inputs[1]].quantization
    q.scale = [s * 3 for s in q.scale]
    broken = tmp_path / "broken.tflite"
    broken.write_bytes(pack(model, len(data)))
    rec = attribute(reference_fp32, {"good": ("tflite", tflite_int8.path), "broken": ("tflite", broken)},
                    reference_calib.x[:8])
    assert worst(rec, "broken", 1)[0][0] == "repeat_2.3.branch1.1.conv"
    assert rec["artifacts"]["good"]["repeat_2.3.branch1.1.conv"]["own_sqnr_db"] > 20
