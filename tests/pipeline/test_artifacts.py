"""A bare file becomes an Artifact one way: its build's record if readable, else its backend reads the file."""
from __future__ import annotations

import shutil

import pytest

from edgeincep.core.artifact import sidecar_path
from edgeincep.core.errors import UserError
from edgeincep.pipeline.artifacts import artifact_for_file


def test_an_openvino_ir_without_its_record_is_int8_by_its_content_not_its_name(openvino_int8, tmp_path):
    xml = tmp_path / "renamed.xml"
    shutil.copy(openvino_int8.path, xml)
    shutil.copy(openvino_int8.path.with_suffix(".bin"), xml.with_suffix(".bin"))
    for device in (None, "intel"):
        art = artifact_for_file(xml, device)
        assert (art.target, art.precision, art.path) == ("openvino", "int8", xml)


def test_a_tflite_is_litert_s_unless_a_device_asks_for_the_edge_tpu(tflite_int8, tmp_path):
    path = tmp_path / "model.tflite"
    shutil.copy(tflite_int8.path, path)
    assert (artifact_for_file(path).target, artifact_for_file(path).precision) == ("tflite", "int8")
    assert artifact_for_file(path, "coral").target == "edgetpu"
    assert artifact_for_file(path, "rpi").target in ("executorch", "tflite")


def test_a_damaged_record_is_ignored_and_the_file_read(reference_fp32, tmp_path):
    path = tmp_path / "m.onnx"
    shutil.copy(reference_fp32, path)
    sidecar_path(path).write_text("{not json")
    art = artifact_for_file(path)
    assert (art.target, art.precision) == ("onnxruntime", "fp32")


def test_a_file_of_another_kind_is_one_error_naming_it(reference_fp32, tmp_path):
    with pytest.raises(UserError, match=r"an intel bundle takes \.xml, not a '\.onnx' file"):
        artifact_for_file(reference_fp32, "intel")
    (tmp_path / "m.engine").write_bytes(b"x")
    with pytest.raises(UserError, match=r"m.engine: unknown artifact type '.engine'"):
        artifact_for_file(tmp_path / "m.engine")
