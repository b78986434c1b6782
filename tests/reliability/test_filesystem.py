"""Catalogue rows for outputs that cannot be written: a read-only mount and a full filesystem per stage.

Mechanism: a real tmpfs, mounted in a private mount namespace (`unshare -rm`) around one CLI process,
so root's permission bypass does not matter (a read-only mount refuses root too) and the disk really
fills (ENOSPC from the kernel, not a simulation). What the process left on the tmpfs is copied out
afterwards and checked: no partial artifact, no temp file.
"""
from __future__ import annotations

import pytest
from reliability_support import TINY_EXPORT, assert_one_error_line, check_artifacts, mount_prefix, run_args, run_cli


def test_output_dir_read_only_mount(tmp_path):
    out = tmp_path / "ro"
    proc = run_cli([*TINY_EXPORT, "--out", out], tmp_path, "ro",
                   prefix=mount_prefix(out, "ro,size=1m", tmp_path / "snap"))
    assert_one_error_line(proc, 7, rf"error: {out}: output directory is not writable")


def test_output_dir_full_during_export(tmp_path):
    disk = tmp_path / "disk"
    proc = run_cli([*TINY_EXPORT, "--out", disk / "o"], tmp_path, "full",
                   prefix=mount_prefix(disk, "size=1m", tmp_path / "snap"))
    assert_one_error_line(proc, 7, r"error: .*/o/inception_resnet_v1_cls\.75px\.fp32\.onnx: could not write "
                                   r"\(No space left on device\)")
    left = tmp_path / "snap" / "o"
    assert check_artifacts(left) == [] and not list(left.glob("*.onnx"))


def test_output_dir_full_during_onnxruntime_quantize(tmp_path, split_images):
    # 2.7 MB: room for the 2.0 MB FP32 export and its record, not for the 0.9 MB INT8 model as well
    disk = tmp_path / "disk"
    proc = run_cli(run_args("onnxruntime", split_images, disk / "o"), tmp_path, "full",
                   prefix=mount_prefix(disk, "size=2700k", tmp_path / "snap"))
    assert_one_error_line(proc, 7, r"error: .*\.onnxruntime\.int8\.onnx: could not write \(No space left on device\)")
    left = tmp_path / "snap" / "o"
    assert check_artifacts(left) == []
    assert (left / "inception_resnet_v1.75px.fp32.onnx").is_file() and not list(left.glob("*int8*"))


@pytest.mark.slow  # an NNCF build to the point of saving: ~30 s on 2 cores; runs in `make test-slow`
def test_output_dir_full_during_openvino_save(tmp_path, split_images):
    disk = tmp_path / "disk"
    proc = run_cli(run_args("openvino", split_images, disk / "o"), tmp_path, "full",
                   prefix=mount_prefix(disk, "size=2700k", tmp_path / "snap"))
    # OpenVINO's C++ writer raises RuntimeError("basic_ios::clear: iostream error"); backends/openvino/backend.py maps it.
    assert_one_error_line(proc, 7, r"error: .*openvino\.(int8|fp32)\.xml: cannot write the OpenVINO IR .*KB free")
    left = tmp_path / "snap" / "o"
    assert check_artifacts(left) == []
    assert not list(left.glob("*openvino*"))
