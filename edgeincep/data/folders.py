"""Image folders: a class-per-subfolder tree (labelled) or a flat folder (unlabelled).

One loader serves calibration and validation. Bad files are either one error that lists
them all, or (skip_bad) skipped and counted, so a report can say how many were dropped.
"""
from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgeincep.core.errors import DataError
from edgeincep.core.preprocess import Preprocess
from edgeincep.data.images import IMAGE_SUFFIXES, BadImage, load_and_preprocess


@dataclass
class ImageSet:
    root: Path
    paths: list[Path]
    labels: list[int] | None  # None: unlabelled
    class_names: list[str]
    skipped: list[str] = field(default_factory=list)  # "path: reason" of files dropped with skip_bad

    @property
    def labelled(self) -> bool:
        return self.labels is not None

    def __len__(self) -> int:
        return len(self.paths)

    def subset(self, indices) -> ImageSet:
        idx = list(indices)
        return ImageSet(self.root, [self.paths[i] for i in idx],
                        [self.labels[i] for i in idx] if self.labels is not None else None,
                        self.class_names, list(self.skipped))


def _is_image(p: Path) -> bool:
    return p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")


def scan_folder(root: str | Path, labels_file: str | Path | None = None) -> ImageSet:
    root = Path(root)
    if labels_file is None and (root / "labels.txt").is_file():
        labels_file = root / "labels.txt"
    if not root.exists():
        raise DataError("image folder not found", root)
    if not root.is_dir():
        raise DataError("not a directory", root)
    subdirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    class_dirs = [d for d in subdirs if any(_is_image(p) for p in d.iterdir())]
    if class_dirs:
        paths, labels = [], []
        for i, d in enumerate(class_dirs):
            files = sorted(p for p in d.iterdir() if _is_image(p))
            paths += files
            labels += [i] * len(files)
        names = [d.name for d in class_dirs]
        if labels_file is not None:
            names = _reorder_by_labels_file(names, labels_file, root)
            index = {n: i for i, n in enumerate(names)}
            labels = [index[p.parent.name] for p in paths]
        return ImageSet(root, paths, labels, names)
    paths = sorted(p for p in root.iterdir() if _is_image(p))
    if not paths:
        raise DataError(f"no images found (looked for {', '.join(sorted(IMAGE_SUFFIXES))} files, "
                        "flat or in class subfolders)", root)
    names = read_labels_file(labels_file) if labels_file is not None else []
    return ImageSet(root, paths, None, names)


def read_labels_file(path: str | Path) -> list[str]:
    """One class name per line (index = line number), or a JSON list of names."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"cannot read labels file ({e.__class__.__name__})", path) from None
    if path.suffix == ".json":
        try:
            names = json.loads(text)
        except json.JSONDecodeError as e:
            raise DataError(f"labels file is not valid JSON ({e.msg} at line {e.lineno})", path) from None
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise DataError("labels JSON must be a list of class-name strings", path)
    else:
        names = [line.strip() for line in text.splitlines() if line.strip()]
    if not names:
        raise DataError("labels file is empty", path)
    return names


def _reorder_by_labels_file(found: list[str], labels_file, root: Path) -> list[str]:
    names = read_labels_file(labels_file)
    unknown = sorted(set(found) - set(names))
    if unknown:
        raise DataError(f"class folders not in the labels file {labels_file}: {', '.join(unknown[:5])}", root)
    return names


def balanced_subset(images: ImageSet, count: int, seed: int = 0) -> ImageSet:
    """`count` images, as even across classes as the data allows, chosen by a seeded shuffle."""
    n = len(images)
    if count >= n:
        return images
    rng = np.random.default_rng(seed)
    if not images.labelled:
        return images.subset(sorted(rng.choice(n, size=count, replace=False).tolist()))
    by_class: dict[int, list[int]] = {}
    for i, lab in enumerate(images.labels):
        by_class.setdefault(lab, []).append(i)
    queues = [list(rng.permutation(v)) for _, v in sorted(by_class.items())]
    chosen: list[int] = []
    while len(chosen) < count:
        for q in queues:
            if q and len(chosen) < count:
                chosen.append(int(q.pop()))
    return images.subset(sorted(chosen))


def iter_batches(
    images: ImageSet, cfg: Preprocess, batch_size: int = 32, *, input_size: int | None = None,
    skip_bad: bool = False,
) -> Iterator[tuple[np.ndarray, np.ndarray | None, list[int]]]:
    """Yield (NCHW float32 batch, labels or None, indices into `images`).

    Without skip_bad, the first bad file stops the run with one error listing every bad file
    (the rest of the set is checked for the listing before raising).
    """
    xs, ys, idx = [], [], []
    for i, p in enumerate(images.paths):
        try:
            xs.append(load_and_preprocess(p, cfg, input_size))
        except BadImage as e:
            if not skip_bad:
                raise _all_bad(images, start=i, first=e) from None
            images.skipped.append(str(e))
            continue
        idx.append(i)
        if images.labels is not None:
            ys.append(images.labels[i])
        if len(xs) == batch_size:
            yield np.stack(xs), (np.asarray(ys) if images.labelled else None), idx
            xs, ys, idx = [], [], []
    if xs:
        yield np.stack(xs), (np.asarray(ys) if images.labelled else None), idx


def _all_bad(images: ImageSet, start: int, first: BadImage) -> DataError:
    from edgeincep.data.images import load_image

    bad = [str(first)]
    for p in images.paths[start + 1:]:
        try:
            load_image(p)
        except BadImage as e:
            bad.append(str(e))
    more = f" (+{len(bad) - 3} more)" if len(bad) > 3 else ""
    return DataError(f"{len(bad)} unreadable image(s) in {images.root}: {'; '.join(bad[:3])}{more}; "
                     "fix or remove them, or pass --skip-bad to skip and count them")


def load_array(images: ImageSet, cfg: Preprocess, *, input_size: int | None = None,
               skip_bad: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
    xs, ys = [], []
    for x, y, _ in iter_batches(images, cfg, 256, input_size=input_size, skip_bad=skip_bad):
        xs.append(x)
        if y is not None:
            ys.append(y)
    if not xs:
        raise DataError("no readable images left after skipping bad files", images.root)
    return np.concatenate(xs), (np.concatenate(ys) if ys else None)


def content_overlap(a: list[Path] | list[str], b: list[Path] | list[str]) -> list[tuple[str, str]]:
    """Pairs of files with identical bytes across two lists (calibration must not leak into validation)."""
    import hashlib

    def digest(p) -> str:
        return hashlib.sha1(Path(p).read_bytes()).hexdigest()

    seen = {digest(p): str(p) for p in a}
    return [(seen[d], str(p)) for p in b if (d := digest(p)) in seen]


def select_images(images_dir: Path, limit: int | None, seed: int = 0) -> ImageSet:
    """The image folder, or a class-balanced seeded subset of `limit` images."""
    images = scan_folder(images_dir)
    return balanced_subset(images, limit, seed) if limit else images


def model_labels(images: ImageSet, model_names: list[str]) -> np.ndarray | None:
    """Folder labels re-indexed to the model's class order (matched by name when the model has names)."""
    if not images.labelled:
        return None
    if not model_names:
        return np.asarray(images.labels)
    index = {n: i for i, n in enumerate(model_names)}
    missing = [n for n in images.class_names if n not in index]
    if missing:
        raise DataError(f"class folders unknown to the model: {', '.join(missing[:5])} "
                        f"(model classes: {', '.join(model_names[:10])})", images.root)
    return np.asarray([index[images.class_names[lab]] for lab in images.labels])
