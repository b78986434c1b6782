"""Shared fixtures: the parity fixtures, small real image folders, a CLI runner."""
from __future__ import annotations

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
from edgeincep.targets.base import get_target

REFERENCE = Path(__file__).parent / "fixtures" / "reference"

torch.set_num_threads(2)


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


# One export and one set of .tflite conversions of the reference Inception-ResNet-v1, shared by the TFLite,
# Edge TPU and device-bundle tests (each conversion costs seconds of TensorFlow).
@pytest.fixture(scope="session")
def tflite_fp32_onnx(tmp_path_factory) -> Path:
    return run_export("inception_resnet_v1", weights="reference", out_dir=tmp_path_factory.mktemp("tflite")).path


@pytest.fixture(scope="session")
def tflite_calib(tflite_fp32_onnx):
    pre = preprocess_from_metadata(read_metadata(tflite_fp32_onnx))
    # The recipe defaults (300 images, seed 0), so a pipeline run over the same directory reuses these builds.
    return load_calibration(DEFAULT_CALIBRATION, pre, count=300, seed=0)


@pytest.fixture(scope="session")
def tflite_floats(tflite_fp32_onnx) -> dict:
    arts = get_target("tflite").references(tflite_fp32_onnx, Recipe(), tflite_fp32_onnx.parent)
    return {a.precision: a for a in arts}


@pytest.fixture(scope="session")
def tflite_int8(tflite_fp32_onnx, tflite_calib):
    return get_target("tflite").build(tflite_fp32_onnx, tflite_calib, Recipe(), tflite_fp32_onnx.parent)


@pytest.fixture(scope="session")
def edgetpu_int8(tflite_fp32_onnx, tflite_calib):
    return get_target("edgetpu").build(tflite_fp32_onnx, tflite_calib, Recipe(), tflite_fp32_onnx.parent)
