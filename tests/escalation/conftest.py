"""Held-out Fashion-MNIST folders for the ladder: a probe split and a training split, both from the train split and
disjoint from the shipped calibration images (what `make data` writes as data/fashion-mnist/probe and /train)."""
from __future__ import annotations

import pytest
from prerequisites import require_fashion_mnist

from edgeincep.data import fashion_mnist as fm
from edgeincep.paths import DEFAULT_CALIBRATION


@pytest.fixture(scope="session")
def fmnist_train_split():
    require_fashion_mnist()
    x, y = fm.load_split("train")
    shipped = fm.folder_indices(DEFAULT_CALIBRATION)
    return x, y, shipped


@pytest.fixture(scope="session")
def probe_dir(tmp_path_factory, fmnist_train_split):
    x, y, shipped = fmnist_train_split
    out = tmp_path_factory.mktemp("probe") / "probe"
    fm.write_folder(x, y, fm.held_out_indices(y, 30, seed=11, exclude=shipped), out, "train")
    return out


@pytest.fixture(scope="session")
def train_dir(tmp_path_factory, fmnist_train_split, probe_dir):
    x, y, shipped = fmnist_train_split
    used = shipped | fm.folder_indices(probe_dir)
    out = tmp_path_factory.mktemp("train") / "train"
    fm.write_folder(x, y, fm.held_out_indices(y, 20, seed=12, exclude=used), out, "train")
    return out
