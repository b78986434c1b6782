"""The ExecuTorch backend: the network rebuilt from the verified ONNX, PT2E INT8 lowered to XNNPACK, the float
fallback by PyTorch module, and the Raspberry Pi bundle that needs no torch (arm64 under qemu).

The contract every backend meets (build and cache, predictor, metadata, drift, bundle --check on the host, a
damaged file) is tests/backends/test_contract.py; this is what is ExecuTorch's own.
"""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import onnx
import prerequisites
import pytest

from edgeincep.bundle import emulate
from edgeincep.core.errors import UserError
from edgeincep.pipeline.bundle_stage import write_artifact_bundle
from edgeincep.recipes import Recipe
from edgeincep.registry import get_backend
from edgeincep.validate.metrics import sqnr_db
from edgeincep.validate.ort import OrtPredictor

ELF_MACHINE = {b"\xb7\x00": "aarch64", b"\x3e\x00": "x86_64"}  # e_machine, little-endian, at byte 18


@pytest.fixture(scope="module")
def backend():
    b = get_backend("executorch")
    reason = b.unavailable_reason()
    if reason:  # `make install` installs ExecuTorch: missing it is a broken set-up, not a reason to skip
        prerequisites.missing(f"the executorch backend cannot run: {reason}")
    return b


@pytest.fixture(scope="module")
def int8(backend, build_int8):
    return build_int8("executorch")


@pytest.fixture(scope="module")
def bundle(int8, tmp_path_factory):
    return write_artifact_bundle(int8, "rpi", {}, Recipe(), tmp_path_factory.mktemp("et-rpi")).folder


def test_the_network_is_rebuilt_from_the_onnx_weights_and_checked_against_onnx_runtime(reference_fp32, reference_calib,
                                                                                       tmp_path):
    import torch

    from edgeincep.backends.executorch.convert import module_from_onnx

    x = reference_calib.x[:4]
    model = module_from_onnx(reference_fp32, x)
    with torch.inference_mode():
        got = model(torch.from_numpy(x)).numpy()
    assert np.abs(got - OrtPredictor(reference_fp32).predict(x)).max() < 1e-4
    # A file whose weights are not the network's is refused, naming the file and the weight.
    proto = onnx.load(str(reference_fp32))
    dropped = proto.graph.initializer[5].name
    del proto.graph.initializer[5]
    bad = tmp_path / "bad.fp32.onnx"
    onnx.save(proto, str(bad))
    with pytest.raises(UserError, match=f"lacks 1 weights of inception_resnet_v1 \\(e.g. {dropped}\\)") as e:
        module_from_onnx(bad, x)
    assert str(bad) in str(e.value)


def test_int8_is_delegated_to_xnnpack_and_records_what_the_bundle_compares(int8):
    d = int8.meta["delegation"]
    assert int8.fmt == "pte-xnnpack" and d["delegated_ops"] > 100 and d["delegates"] >= 1
    q = int8.meta["output_quantization"]
    assert q["scale"] > 0 and -128 <= q["zero_point"] <= 127
    assert int8.meta["edgeincep"]["edgeincep.model"] == "inception_resnet_v1"


def test_the_fp32_reference_pte_is_exact(backend, reference_fp32, reference_calib, tmp_path):
    (fp32,) = backend.references(reference_fp32, Recipe(), tmp_path)
    assert fp32.precision == "fp32" and fp32.path.suffix == ".pte"
    x = reference_calib.x[:8]
    ref = OrtPredictor(reference_fp32).predict(x)
    assert sqnr_db(ref, backend.load(fp32).predict(x)) > 80


@pytest.mark.slow  # two more PT2E calibrations and a lowering (about 4 minutes): `make test-slow`
def test_layers_are_ranked_by_pytorch_module_and_the_worst_kept_in_float_bring_int8_closer_to_fp32(
        backend, int8, reference_fp32, reference_calib, tmp_path):
    from edgeincep.models.registry import create_model

    ranked = backend.rank_layers(int8, reference_fp32, reference_calib, Recipe(), reference_calib.x[:8])
    modules = dict(create_model("inception_resnet_v1", num_classes=10, width=0.125).named_modules())
    assert len(ranked) > 50 and all(type(modules[p]).__name__ in ("Conv2d", "Linear") for p in ranked)
    kept = backend.build_keeping_float(reference_fp32, reference_calib, Recipe(), tmp_path, ranked[:4])
    assert kept.meta["float_modules"] == ranked[:4] and kept.path.read_bytes() != int8.path.read_bytes()
    x = reference_calib.x[:64]
    ref = OrtPredictor(reference_fp32).predict(x)
    plain, fewer = backend.load(int8).predict(x), backend.load(kept).predict(x)
    assert sqnr_db(ref, fewer) > sqnr_db(ref, plain)


def test_the_rpi_bundle_needs_only_numpy_and_pillow_and_reproduces_the_python_runtime_bit_for_bit(bundle, tmp_path):
    reqs = [ln for ln in (bundle / "requirements.txt").read_text().splitlines() if ln and not ln.startswith("#")]
    assert sorted(r.split("==")[0] for r in reqs) == ["numpy", "pillow"]
    runner = json.loads((bundle / "manifest.json").read_text())["runner"]
    for arch, lib in runner["libraries"].items():
        assert ELF_MACHINE[(bundle / lib).read_bytes()[18:20]] == arch
    # The host's python runs the bundle's own x86-64 library: logits identical to ExecuTorch's Python runtime.
    done = subprocess.run([sys.executable, "run.py", "--check"], cwd=bundle, capture_output=True, text=True,
                          timeout=300, check=False)
    assert done.returncode == 0 and "bit-identical" in done.stdout, done.stdout + done.stderr[-2000:]


def test_a_missing_runtime_library_is_one_line_not_a_traceback(bundle, tmp_path):
    import shutil

    broken = tmp_path / "bundle"
    shutil.copytree(bundle, broken)
    (broken / "lib" / "x86_64" / "libexecutorch_backend_xnnpack.so").unlink()
    done = subprocess.run([sys.executable, "run.py", "--check"], cwd=broken, capture_output=True, text=True,
                          timeout=300, check=False)
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("error: cannot load libet_runner.so:")


@pytest.mark.parametrize("board", list(emulate.BOARDS))
def test_the_rpi_bundle_passes_its_check_as_arm64_code_with_no_torch_on_the_board(bundle, board):
    reason = emulate.unavailable_reason()
    if reason:
        prerequisites.missing(f"the arm64 proof cannot run: {reason}")
    done = emulate.run_emulated(emulate.BOARDS[board], [str(bundle / "run.py"), "--check"], bundle)
    assert done.returncode == 0, done.stdout + done.stderr[-2000:]
    assert "check (executorch): 6/6 samples match the host" in done.stdout
    no_torch = emulate.run_emulated(emulate.BOARDS[board], ["-c", "import torch"], bundle)
    assert no_torch.returncode != 0 and "No module named 'torch'" in no_torch.stderr


@pytest.mark.slow
@pytest.mark.parametrize("model", ["inception_resnet_v1", "inception_resnet_v2", "inception_v4"])
def test_reference_models_pass_the_drift_budget_on_the_full_validation_set(backend, tmp_path, model,
                                                                          fmnist_val_full):
    from edgeincep.pipeline.run import run_pipeline

    report = run_pipeline(model, weights="reference", target="executorch", val_dir=fmnist_val_full, calib_dir=None,
                          out_dir=tmp_path / "out", threads=2)
    int8 = next(a for a in report["validation"]["artifacts"] if a["precision"] == "int8")
    assert report["validation"]["images"]["count"] == 10_000 and report["passed"]
    assert int8["drift"]["top1_drop_points"] <= 0.5 and int8["drift"]["top1_agreement"] >= 0.99
    assert "of" in int8["executed_precision"] and int8["bundle"]["folder"]
    boards = int8["bundle"]["emulated"]["boards"]
    assert all(b["top1_agreement_host_int8"] >= 0.99 for b in boards.values())
