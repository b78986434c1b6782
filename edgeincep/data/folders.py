"""Image folders: a class-per-subfolder tree (labelled) or a flat folder (unlabelled).

One loader serves calibration and validation. Bad files are either one error that lists
them all, or (skip_bad) skipped and counted, so a report can say how many were dropped.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgeincep.console import note
from edgeincep.core.errors import DataError
from edgeincep.core.preprocess import Preprocess
from edgeincep.data.images import IMAGE_SUFFIXES, BadImage, load_and_preprocess
from edgeincep.data.labels import class_index, match_class, read_labels_csv, read_labels_file


@dataclass
class ImageSet:
    root: Path
    paths: list[Path]
    labels: list[int] | None  # None: unlabelled
    class_names: list[str]
    skipped: list[str] = field(default_factory=list)  # "path: reason" of files dropped with skip_bad
    # class name -> where it was read (a class folder, or a labels CSV's row), for errors that name it
    origin: dict[str, str] = field(default_factory=dict)

    @property
    def labelled(self) -> bool:
        return self.labels is not None

    def __len__(self) -> int:
        return len(self.paths)

    def subset(self, indices) -> ImageSet:
        idx = list(indices)
        return ImageSet(self.root, [self.paths[i] for i in idx],
                        [self.labels[i] for i in idx] if self.labels is not None else None,
                        self.class_names, list(self.skipped), self.origin)


def _is_image(p: Path) -> bool:
    return p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")


def scan_folder(root: str | Path, labels_file: str | Path | None = None,
                labels_csv: str | Path | None = None) -> ImageSet:
    """A class-per-subfolder tree, or a flat folder: unlabelled, or labelled by `labels_csv` (file -> class)."""
    root = Path(root)
    if labels_file is None and (root / "labels.txt").is_file():
        labels_file = root / "labels.txt"
    if not root.exists():
        raise DataError("image folder not found", root)
    if not root.is_dir():
        raise DataError("not a directory", root)
    subdirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    class_dirs = [d for d in subdirs if any(_is_image(p) for p in d.iterdir())]
    if class_dirs and labels_csv is not None:
        raise DataError(f"has class subfolders ({class_dirs[0].name}/, ...) and a labels CSV ({labels_csv}) was "
                        "given: use one or the other", root)
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
        return ImageSet(root, paths, labels, names, origin={d.name: f"{d}/" for d in class_dirs})
    paths = sorted(p for p in root.iterdir() if _is_image(p))
    if not paths:
        raise DataError(f"no images found (looked for {', '.join(sorted(IMAGE_SUFFIXES))} files, "
                        "flat or in class subfolders)", root)
    if labels_csv is not None:
        per_file, origin = read_labels_csv(labels_csv, paths)
        names = sorted(set(per_file))
        index = {n: i for i, n in enumerate(names)}
        return ImageSet(root, paths, [index[n] for n in per_file], names, origin=origin)
    names = read_labels_file(labels_file) if labels_file is not None else []
    return ImageSet(root, paths, None, names)


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


def select_images(images_dir: Path, limit: int | None, seed: int = 0, labels_csv: Path | None = None) -> ImageSet:
    """The image folder, or a class-balanced seeded subset of `limit` images."""
    images = scan_folder(images_dir, labels_csv=labels_csv)
    return balanced_subset(images, limit, seed) if limit else images


_NOTED: set[str] = set()


def _note_once(msg: str) -> None:
    if msg not in _NOTED:
        _NOTED.add(msg)
        note(msg)


def model_labels(images: ImageSet, model_names: list[str]) -> np.ndarray | None:
    """Folder (or CSV) labels in the model's class order: matched by name or alias (an ImageNet synset) when the
    model has names, so a folder of a few classes gets their true indices; by sorted folder order otherwise."""
    if not images.labelled:
        return None
    if not model_names:
        _note_once(f"the model names no classes, so the {len(images.class_names)} classes of {images.root} are taken "
                   f"as classes 0..{len(images.class_names) - 1} in sorted order; pass --labels (e.g. imagenet-1k) to "
                   "match them by name")
        return np.asarray(images.labels)
    index = class_index(model_names)
    to_model = {n: match_class(n, index, len(model_names)) for n in images.class_names}
    missing = [n for n, i in to_model.items() if i is None]
    if missing:
        where = images.origin.get(missing[0], str(images.root))
        more = f" (+{len(missing) - 1} more)" if len(missing) > 1 else ""
        raise DataError(f"class '{missing[0]}' ({where}){more} is not a class of the model (model classes: "
                        f"{', '.join(model_names[:10])}{', ...' if len(model_names) > 10 else ''})", images.root)
    return np.asarray([to_model[images.class_names[lab]] for lab in images.labels])
