"""ONNX export is checked against PyTorch and lands atomically, or not at all."""
from __future__ import annotations

import json
from collections import Counter

import numpy as np
import onnx
import pytest
import torch

from edgeincep.core.errors import ExportMismatchError, OutputError
from edgeincep.data.folders import load_array, scan_folder
from edgeincep.export.fold import fold_batchnorm
from edgeincep.export.onnx import build_metadata, export_onnx, read_metadata, run_onnx
from edgeincep.models import create_model
from edgeincep.models.synthetic import apply_synthetic_weights


@pytest.fixture(scope="module")
def small():
    return apply_synthetic_weights(create_model("inception_resnet_v2", width=0.125, num_classes=10))


@pytest.fixture()
def images(labelled_dir, small):
    x, _ = load_array(scan_folder(labelled_dir), small.spec.preprocess, input_size=75)
    return x[:6]


def _meta(model, size=75):
    return build_metadata(model.spec, model, size, class_names=[f"c{i}" for i in range(10)],
                          checkpoint_sha256="ab" * 32, width=0.125)


def test_fold_batchnorm_preserves_outputs(small, images):
    folded = fold_batchnorm(small)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    with torch.inference_mode():
        a, b = small(torch.from_numpy(images)), folded(torch.from_numpy(images))
    torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_export_is_verified_dynamic_batch_and_carries_metadata(tmp_path, small, images):
    path = tmp_path / "out" / "m.onnx"
    res = export_onnx(small, path, input_size=75, verify_images=images, metadata=_meta(small))
    assert res.max_abs_diff <= res.tolerance and res.top1_agreement == 1.0
    proto = onnx.load(str(path))
    assert proto.opset_import[0].version >= 17
    ops = Counter(n.op_type for n in proto.graph.node)
    assert "BatchNormalization" not in ops and "Identity" not in ops and ops["Conv"] > 200
    meta = read_metadata(path)
    assert meta["edgeincep.model"] == "inception_resnet_v2"
    assert json.loads(meta["edgeincep.preprocess"])["input_size"] == 75
    assert json.loads(meta["edgeincep.labels"])[3] == "c3"
    assert meta["edgeincep.checkpoint_sha256"] == "ab" * 32
    out = run_onnx(path, np.concatenate([images, images[:1]]))  # batch of 7: the batch axis is dynamic
    assert out.shape == (7, 10)
    assert list(path.parent.iterdir()) == [path]


def test_export_beyond_tolerance_leaves_no_file(tmp_path, small, images):
    with pytest.raises(ExportMismatchError, match="export discarded"):
        export_onnx(small, tmp_path / "out" / "m.onnx", input_size=75, verify_images=images, metadata=_meta(small),
                    rtol=0.0)
    assert list((tmp_path / "out").iterdir()) == []


def test_embedding_model_exports_an_embedding_output(tmp_path, images):
    model = apply_synthetic_weights(create_model("inception_resnet_v1", width=0.125, num_classes=0))
    path = tmp_path / "e.onnx"
    export_onnx(model, path, input_size=75, verify_images=images, metadata=_meta(model))
    assert onnx.load(str(path)).graph.output[0].name == "embedding"


def test_unwritable_output_directory(tmp_path, small, images):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OutputError, match="cannot create output directory"):
        export_onnx(small, blocker / "sub" / "m.onnx", input_size=75, verify_images=images, metadata=_meta(small))
