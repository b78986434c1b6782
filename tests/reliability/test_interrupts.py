"""Catalogue rows for Ctrl-C (SIGINT) and kill -9 in the middle of export, ORT quantize and OpenVINO conversion.

Each test starts `python -m edgeincep` for real, waits for a sign that the stage is under way (a file the
stage creates, or the stage's own output), signals it, and checks: SIGINT exits 130 with the one
`interrupted` line and no traceback; no artifact is partial (every ONNX passes the checker, every IR
loads, every record parses); the stage's final file is absent, proving the signal landed inside the
stage; and a rerun exits 0 with whole artifacts and no temp file left. After kill -9 the rerun must
also sweep the dead run's temp file rather than leave it beside the artifacts.
"""
from __future__ import annotations

import os
import signal
from pathlib import Path

import onnx
import pytest
from reliability_support import TINY_EXPORT, Proc, assert_one_error_line, check_artifacts, run_args, run_cli

FP32 = "inception_resnet_v1_cls.75px.fp32.onnx"
REF_FP32 = "inception_resnet_v1.75px.fp32.onnx"
ORT_INT8 = "inception_resnet_v1.75px.onnxruntime.int8.onnx"
OV_INT8 = "inception_resnet_v1.75px.openvino.int8.xml"
TFL_INT8 = "inception_resnet_v1.75px.tflite.int8.tflite"


def parts(out, final: str) -> list:
    return list(out.glob(f".{final}.*.part"))


def rerun_is_clean(args, tmp_path, out, finals: list[str]) -> None:
    proc = run_cli(args, tmp_path, "rerun")
    assert proc.p.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    assert check_artifacts(out) == []  # whole artifacts, and the dead run's temp files swept
    for name in finals:
        assert (out / name).is_file(), name


def test_sigint_during_export(tmp_path):
    out = tmp_path / "o"
    args = [*TINY_EXPORT, "--out", out]
    proc = Proc(args, tmp_path, "first")
    proc.wait_for("the export's temp file", lambda: out.is_dir() and bool(parts(out, FP32)))
    proc.p.send_signal(signal.SIGINT)
    proc.wait()
    assert_one_error_line(proc, 130, r"^interrupted: no partial artifact was kept$")
    assert check_artifacts(out) == [] and not (out / FP32).exists()
    rerun_is_clean(args, tmp_path, out, [FP32])


def test_sigkill_during_export(tmp_path):
    out = tmp_path / "o"
    args = [*TINY_EXPORT, "--out", out]
    proc = Proc(args, tmp_path, "first")
    proc.wait_for("the export's temp file", lambda: out.is_dir() and bool(parts(out, FP32)))
    proc.p.kill()
    proc.wait()
    assert not (out / FP32).exists()
    assert parts(out, FP32)  # the dead writer's temp file: hidden, never taken for the artifact
    rerun_is_clean(args, tmp_path, out, [FP32])


def test_sigint_during_onnxruntime_quantize(tmp_path, split_images):
    out = tmp_path / "o"
    args = run_args("onnxruntime", split_images, out)
    proc = Proc(args, tmp_path, "first")
    # quantize_onnx's work folder (in TMPDIR) exists from the pre-pass through calibration to the write
    proc.wait_for("ORT quantization to start", lambda: bool(list(proc.tmpdir.glob("edgeincep-ortq-*"))))
    proc.p.send_signal(signal.SIGINT)
    proc.wait()
    assert_one_error_line(proc, 130, r"^interrupted: no partial artifact was kept$")
    assert check_artifacts(out) == []
    assert (out / REF_FP32).is_file() and not (out / ORT_INT8).exists()
    assert not list(proc.tmpdir.glob("edgeincep-ortq-*"))  # its work folder went with it
    rerun_is_clean(args, tmp_path, out, [REF_FP32, ORT_INT8, ORT_INT8 + ".json", "report.json"])


def test_sigkill_during_onnxruntime_quantize(tmp_path, split_images):
    out = tmp_path / "o"
    args = run_args("onnxruntime", split_images, out)
    proc = Proc(args, tmp_path, "first")
    proc.wait_for("the INT8 model's temp file", lambda: out.is_dir() and bool(parts(out, ORT_INT8)))
    proc.p.kill()
    proc.wait()
    assert not (out / ORT_INT8).exists() and parts(out, ORT_INT8)
    rerun_is_clean(args, tmp_path, out, [REF_FP32, ORT_INT8, ORT_INT8 + ".json", "report.json"])


@pytest.mark.slow  # two NNCF builds and a rerun: ~50 s on 2 cores; runs in `make test-slow`
def test_sigint_then_sigkill_during_openvino_conversion(tmp_path, split_images):
    """Both signals in one test: each OpenVINO build costs ~10 s, and the second starts from the first's leftovers."""
    out = tmp_path / "o"
    args = run_args("openvino", split_images, out)
    for sig, name in ((signal.SIGINT, "first"), (signal.SIGKILL, "second")):
        proc = Proc(args, tmp_path, name)
        # NNCF prints its statistics-collection progress while quantizing: the IR is being built, not yet saved
        proc.wait_for("NNCF quantization", lambda proc=proc: "Statistics collection" in proc.stdout)
        proc.p.send_signal(sig)
        proc.wait()
        if sig == signal.SIGINT:
            assert_one_error_line(proc, 130, r"^interrupted: no partial artifact was kept$")
        assert check_artifacts(out) == []  # killed while quantizing: the IR's temp folder did not exist yet
        assert (out / REF_FP32).is_file() and not (out / OV_INT8).exists()
        assert not (out / OV_INT8).with_suffix(".bin").exists()
    rerun_is_clean(args, tmp_path, out, [REF_FP32, OV_INT8, OV_INT8 + ".json", "report.json"])


def test_kill_between_artifact_rename_and_record_write(tmp_path, cli):
    """A rebuild killed after renaming its new file into place but before writing its record leaves the OLD
    record beside the NEW bytes. Rebuilding with the old settings must not take those bytes as up to date.

    The kill window is a few microseconds, so the state it leaves is made directly: the file of a real
    opset-18 export put in place, as os.replace would, under the record of a real opset-17 export.
    (The record's sha256 of each output, checked by edgeincep/cache.py lookup, is what catches it.)"""
    a, b = tmp_path / "a", tmp_path / "b"
    assert cli(*TINY_EXPORT, "--opset", "17", "--out", a).exit_code == 0
    assert cli(*TINY_EXPORT, "--opset", "18", "--out", b).exit_code == 0
    os.replace(b / FP32, a / FP32)
    res = cli(*TINY_EXPORT, "--opset", "17", "--out", a)
    assert res.exit_code == 0, res.stderr
    assert onnx.load(str(a / FP32), load_external_data=False).opset_import[0].version == 17


def _processes_mentioning(text: str) -> list[int]:
    found = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if text in (d / "cmdline").read_bytes().decode(errors="replace"):
                    found.append(int(d.name))
            except OSError:
                pass
    return found


def test_sigkill_during_tflite_conversion_leaves_no_orphan_converter(tmp_path, split_images):
    """TensorFlow's work runs in child processes; killing the pipeline takes them down too (PR_SET_PDEATHSIG)
    instead of leaving gigabytes converting for nobody."""
    import time

    out = tmp_path / "o"
    args = run_args("tflite", split_images, out)
    proc = Proc(args, tmp_path, "first")
    workers = tmp_path / "tmp"
    proc.wait_for("the TFLite conversion child", lambda: bool(_processes_mentioning(f"{workers}/edgeincep-tflite-")))
    proc.p.kill()
    proc.wait()
    end = time.monotonic() + 10
    while _processes_mentioning(f"{workers}/edgeincep-tflite-") and time.monotonic() < end:
        time.sleep(0.05)
    assert _processes_mentioning(f"{workers}/edgeincep-tflite-") == []
    assert not (out / TFL_INT8).exists()
    rerun_is_clean(args, tmp_path, out, [REF_FP32, TFL_INT8, TFL_INT8 + ".json", "report.json"])
