"""Fashion-MNIST (Zalando, MIT licence) from Debian's `dataset-fashion-mnist` into image folders.

Calibration images come from the training split and validation images from the test split, so
the two never overlap. Class folder names are ordered by `labels.txt`, which keeps the
dataset's own label indices.
"""
from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
from PIL import Image

from edgeincep.core.errors import DataError
from edgeincep.fsutil import ensure_writable_dir, write_text_atomic

DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
CLASS_NAMES = ["tshirt_top", "trouser", "pullover", "dress", "coat",
               "sandal", "shirt", "sneaker", "bag", "ankle_boot"]
FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
INSTALL_HINT = ("install it with `apt-get install dataset-fashion-mnist` (Debian/Ubuntu), or put the four "
                "*-ubyte.gz files from github.com/zalandoresearch/fashion-mnist in a folder and pass --source")


def read_idx(path: Path) -> np.ndarray:
    try:
        with gzip.open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise DataError(f"Fashion-MNIST file missing; {INSTALL_HINT}", path) from None
    except (OSError, EOFError) as e:
        raise DataError(f"corrupt idx.gz file ({e})", path) from None
    if len(data) < 4 or data[:2] != b"\x00\x00" or data[2] != 0x08:
        raise DataError("not an unsigned-byte idx file", path)
    ndim = data[3]
    dims = struct.unpack(f">{ndim}I", data[4:4 + 4 * ndim])
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise DataError(f"truncated idx file: {body.size} bytes for shape {dims}", path)
    return body.reshape(dims)


def load_split(split: str, source: Path = DEBIAN_DIR) -> tuple[np.ndarray, np.ndarray]:
    """(N, 28, 28) uint8 images and (N,) labels."""
    images, labels = FILES[split]
    if not source.is_dir():
        raise DataError(f"Fashion-MNIST not found; {INSTALL_HINT}", source)
    return read_idx(source / images), read_idx(source / labels)


def balanced_indices(labels: np.ndarray, per_class: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    picks = [rng.permutation(np.flatnonzero(labels == c))[:per_class] for c in range(len(CLASS_NAMES))]
    return np.sort(np.concatenate(picks))


def write_folder(images: np.ndarray, labels: np.ndarray, indices: np.ndarray, out: Path, split: str) -> int:
    """PNG files `<class>/<split>_<index>.png`; the index keeps provenance visible."""
    ensure_writable_dir(out)
    for name in CLASS_NAMES:
        (out / name).mkdir(exist_ok=True)
    for i in indices:
        Image.fromarray(images[i], "L").save(out / CLASS_NAMES[labels[i]] / f"{split}_{i:05d}.png", optimize=True)
    write_text_atomic(out / "labels.txt", "\n".join(CLASS_NAMES) + "\n")
    return len(indices)


def folder_indices(root: Path, split: str = "train") -> set[int]:
    """The `split` indices of the images a `write_folder` call put under `root`: what a later pick must avoid."""
    return {int(p.stem.split("_")[1]) for p in root.glob(f"*/{split}_*.png")}


def held_out_indices(labels: np.ndarray, per_class: int, seed: int, exclude: set[int]) -> np.ndarray:
    """A balanced, seeded pick of `per_class` indices per class, none of them in `exclude`."""
    rng = np.random.default_rng(seed)
    picks = [[i for i in rng.permutation(np.flatnonzero(labels == c)) if int(i) not in exclude][:per_class]
             for c in range(len(CLASS_NAMES))]
    return np.sort(np.concatenate([np.asarray(p, dtype=np.int64) for p in picks]))


def export_folders(out: Path, *, calib_per_class: int = 50, val_limit: int | None = None, seed: int = 0,
                   probe_per_class: int = 200, train_per_class: int = 500,
                   source: Path = DEBIAN_DIR, shipped_calibration: Path | None = None) -> dict[str, int]:
    """Write `out/calib` (balanced, from train), `out/val` (test split, all 10k unless limited), and two more
    held-out pieces of the train split: `out/probe` (what the escalation ladder scores its rungs on) and
    `out/train` (quantization-aware fine-tuning). The four never share an image, and none of probe/train is an
    image of the shipped calibration set or, pixel for pixel, of the test split."""
    import hashlib

    tr_x, tr_y = load_split("train", source)
    te_x, te_y = load_split("test", source)
    calib_idx = balanced_indices(tr_y, calib_per_class, seed)
    counts = {"calib": write_folder(tr_x, tr_y, calib_idx, out / "calib", "train")}
    val_idx = np.arange(len(te_y)) if val_limit is None else balanced_indices(te_y, val_limit // 10, seed)
    counts["val"] = write_folder(te_x, te_y, val_idx, out / "val", "test")
    test_pixels = {hashlib.sha256(img.tobytes()).digest() for img in te_x}
    exclude = {int(i) for i in calib_idx}
    exclude |= {i for i, img in enumerate(tr_x) if hashlib.sha256(img.tobytes()).digest() in test_pixels}
    if shipped_calibration is not None and shipped_calibration.is_dir():
        exclude |= folder_indices(shipped_calibration)
    probe_idx = held_out_indices(tr_y, probe_per_class, seed + 1, exclude)
    counts["probe"] = write_folder(tr_x, tr_y, probe_idx, out / "probe", "train")
    train_idx = held_out_indices(tr_y, train_per_class, seed + 2, exclude | {int(i) for i in probe_idx})
    counts["train"] = write_folder(tr_x, tr_y, train_idx, out / "train", "train")
    return counts
