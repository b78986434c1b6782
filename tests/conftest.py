"""Shared fixtures: the parity fixtures, small real image folders, a CLI runner."""
from __future__ import annotations

import json
import os
import secrets
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from prerequisites import require_fashion_mnist

from edgeincep.cli import main
from edgeincep.data import fashion_mnist as fm
from edgeincep.export.onnx import preprocess_from_metadata, read_metadata
from edgeincep.paths import DEFAULT_CALIBRATION
from edgeincep.pipeline.export_stage import run_export
from edgeincep.quantize.calibration import load_calibration
from edgeincep.recipes import Recipe
from edgeincep.registry import get_backend

REFERENCE = Path(__file__).parent / "fixtures" / "reference"

torch.set_num_threads(2)
# Hermetic runs: the escalation ladder's default probe and training splits (`make data`'s) are not looked for in
# this checkout, so a test behaves the same whether or not `make data` ran here; tests that want them pass them.
os.environ["EDGEINCEP_DATA_DIR"] = str(Path(__file__).parent / "no-data-dir")


@pytest.fixture(scope="session", autouse=True)
def ray_auth(tmp_path_factory):
    """One throwaway Ray token for the whole session (Ray's token authentication, its default for clusters):
    Ray reads its auth settings once per process, so every runtime this process starts or joins, local or a
    loopback cluster, and every CLI it runs must use the same."""
    token = tmp_path_factory.mktemp("ray-auth") / "auth_token"
    token.write_text(secrets.token_hex(32))
    env = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token), "RAY_USAGE_STATS_ENABLED": "0"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    yield
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    return REFERENCE


@pytest.fixture()
def labelled_dir(tmp_path) -> Path:
    """Three real Fashion-MNIST images per class, copied from the shipped calibration set."""
    root = tmp_path / "imgs"
    for cls in sorted(p for p in DEFAULT_CALIBRATION.iterdir() if p.is_dir()):
        (root / cls.name).mkdir(parents=True)
        for f in sorted(cls.glob("*.png"))[:3]:
            shutil.copy(f, root / cls.name / f.name)
    return root


class Cli:
    def __init__(self):
        self.runner = CliRunner()

    def __call__(self, *args: str):
        return self.runner.invoke(main, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture()
def cli() -> Cli:
    return Cli()


@pytest.fixture(scope="session")
def fashion_mnist_test() -> tuple[np.ndarray, np.ndarray]:
    """The 10,000-image Fashion-MNIST test split (images, labels) from Debian's dataset-fashion-mnist."""
    require_fashion_mnist()
    return fm.load_split("test")


@pytest.fixture(scope="session")
def fmnist_val(tmp_path_factory, fashion_mnist_test) -> Path:
    """A balanced 500-image slice of the Fashion-MNIST test split, as class folders."""
    x, y = fashion_mnist_test
    out = tmp_path_factory.mktemp("fmnist") / "val"
    fm.write_folder(x, y, fm.balanced_indices(y, 50, seed=0), out, "test")
    return out


@pytest.fixture(scope="session")
def fmnist_val_full(tmp_path_factory, fashion_mnist_test) -> Path:
    """All 10,000 images of the Fashion-MNIST test split as class folders: what `make data` writes as
    data/fashion-mnist/val, made here so the slow full-set tests need nothing but Debian's dataset."""
    x, y = fashion_mnist_test
    out = tmp_path_factory.mktemp("fmnist-full") / "val"
    fm.write_folder(x, y, list(range(len(y))), out, "test")
    return out


# One export of the reference Inception-ResNet-v1 and one build per backend, shared by every test that needs
# a real artifact (a TensorFlow conversion or an NNCF run costs seconds to tens of seconds).
@pytest.fixture(scope="session")
def reference_fp32(tmp_path_factory) -> Path:
    return run_export("inception_resnet_v1", weights="reference", out_dir=tmp_path_factory.mktemp("reference")).path


@pytest.fixture(scope="session")
def reference_calib(reference_fp32):
    pre = preprocess_from_metadata(read_metadata(reference_fp32))
    # The recipe defaults (300 images, seed 0), so a pipeline run over the same directory reuses these builds.
    return load_calibration(DEFAULT_CALIBRATION, pre, count=300, seed=0)


@pytest.fixture(scope="session")
def build_int8(reference_fp32, reference_calib):
    """build_int8(name, **recipe) -> the backend's INT8 artifact of the reference model, built once per session and
    recipe (beside the FP32 ONNX, as a pipeline run would); skips with the reason where the backend cannot run."""
    cache: dict = {}

    def build(name: str, **recipe):
        backend = get_backend(name)
        reason = backend.unavailable_reason()
        if reason:
            pytest.skip(f"{name}: {reason}")
        key = (name, json.dumps(recipe, sort_keys=True))
        if key not in cache:
            out = reference_fp32.parent if not recipe else reference_fp32.parent / f"{name}-{len(cache)}"
            cache[key] = backend.build(reference_fp32, reference_calib, Recipe.model_validate(recipe), out)
        return cache[key]

    return build


# The reference model's INT8 artifacts of the bundle-making backends (bundle and deploy tests).
@pytest.fixture(scope="session")
def tflite_int8(build_int8):
    return build_int8("tflite")


@pytest.fixture(scope="session")
def edgetpu_int8(build_int8):
    return build_int8("edgetpu")


@pytest.fixture(scope="session")
def openvino_int8(build_int8):
    # Fast bias correction: the full one costs ~30 s here and the bundle tests need an INT8 IR, not its best accuracy.
    return build_int8("openvino", openvino={"fast_bias_correction": True})
