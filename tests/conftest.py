"""Shared fixtures: the parity fixtures, small real image folders, a CLI runner."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from edgeincep.cli import main
from edgeincep.paths import DEFAULT_CALIBRATION

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
def fmnist_val(tmp_path_factory) -> Path:
    """A balanced 500-image slice of the Fashion-MNIST test split, as class folders."""
    from edgeincep.data import fashion_mnist as fm

    if not (fm.DEBIAN_DIR / "t10k-images-idx3-ubyte.gz").exists():
        pytest.skip("Debian package dataset-fashion-mnist is not installed (apt-get install dataset-fashion-mnist)")
    x, y = fm.load_split("test")
    out = tmp_path_factory.mktemp("fmnist") / "val"
    fm.write_folder(x, y, fm.balanced_indices(y, 50, seed=0), out, "test")
    return out
