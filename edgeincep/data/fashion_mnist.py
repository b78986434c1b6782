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


def export_folders(out: Path, *, calib_per_class: int = 50, val_limit: int | None = None, seed: int = 0,
                   source: Path = DEBIAN_DIR) -> dict[str, int]:
    """Write `out/calib` (balanced, from train) and `out/val` (test split, all 10k unless limited)."""
    tr_x, tr_y = load_split("train", source)
    te_x, te_y = load_split("test", source)
    counts = {"calib": write_folder(tr_x, tr_y, balanced_indices(tr_y, calib_per_class, seed), out / "calib", "train")}
    val_idx = np.arange(len(te_y)) if val_limit is None else balanced_indices(te_y, val_limit // 10, seed)
    counts["val"] = write_folder(te_x, te_y, val_idx, out / "val", "test")
    return counts
