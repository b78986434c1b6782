"""Class names: the label sets edgeincep knows by name, label files, and CSVs that label a flat folder.

A model's classes are a list of readable names in index order (what a board prints: `Chihuahua 0.91`). A folder
or CSV row names a class either by that name or by a stable id the label set defines (an ImageNet WordNet synset
such as n02085620), so `class_index` maps every such alias to its index.
"""
from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path

from edgeincep.core.errors import DataError, UserError

IMAGENET_1K = "imagenet-1k"
LABEL_SETS = (IMAGENET_1K,)
# A timm hub id whose pretrained tag ends so (tf_in1k, tf_ens_adv_in1k, ...) was trained on ImageNet-1k.
_IN1K_TAG = re.compile(r"^hf-hub:timm/[^/]+\.(?:[a-z0-9_]+_)?in1k$")


@dataclass(frozen=True)
class LabelSetClass:
    id: str       # WordNet synset: what ImageNet's folders are named
    name: str     # the first lemma, made unique
    lemmas: str   # every WordNet lemma, comma separated


@cache
def imagenet_1k() -> tuple[LabelSetClass, ...]:
    """The 1000 ImageNet-1k classes in the index order timm's checkpoints use (see ci/imagenet-labels.py)."""
    text = resources.files("edgeincep.data").joinpath("imagenet_1k.tsv").read_text(encoding="utf-8")
    rows = [line.split("\t") for line in text.splitlines() if line and not line.startswith("#")]
    return tuple(LabelSetClass(*row) for row in rows)


def label_set(name: str) -> tuple[LabelSetClass, ...]:
    if name == IMAGENET_1K:
        return imagenet_1k()
    raise UserError(f"unknown label set '{name}' (known: {', '.join(LABEL_SETS)}; or a file of names)")


def hub_label_set(weights: str) -> str | None:
    """The label set a hub checkpoint was trained on, where its id says so."""
    return IMAGENET_1K if _IN1K_TAG.match(weights) else None


def resolve_labels(value: str | Path, num_classes: int) -> list[str]:
    """`--labels`: a known label set's name or a labels file, checked against the classifier's class count."""
    if str(value) in LABEL_SETS:
        names = [c.name for c in label_set(str(value))]
        where: str | Path = f"label set {value}"
    else:
        names = read_labels_file(value)
        where = value
    if len(names) != num_classes:
        raise UserError(f"{len(names)} class names, but the model's classifier has {num_classes} classes", where)
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise UserError(f"class name '{dup}' appears more than once", where)
    return names


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


def class_index(names: list[str]) -> dict[str, int]:
    """Every string that names one of the model's classes -> its index: the name itself, and where the name is
    a known label set's (ImageNet's), that class's id and full lemma list. An alias two classes share is left out."""
    by_name = {c.name: c for c in imagenet_1k()}
    index: dict[str, int] = {}
    shared: set[str] = set()
    for i, n in enumerate(names):
        known = by_name.get(n)
        for alias in (n, *((known.id, known.lemmas) if known else ())):
            if index.get(alias, i) != i:
                shared.add(alias)
            index.setdefault(alias, i)
    exact = {n: i for i, n in enumerate(names)}
    return {a: i for a, i in index.items() if a not in shared} | exact


def match_class(label: str, index: dict[str, int], num_classes: int) -> int | None:
    """The class a folder name or CSV label means: a name or alias, else a decimal class index."""
    if label in index:
        return index[label]
    if label.isdecimal() and int(label) < num_classes:
        return int(label)
    return None


# --- CSV labels for a flat folder ---------------------------------------------------------------

_FILE_COLUMNS = ("file", "filename", "image", "path")
_LABEL_COLUMNS = ("label", "class")


def read_labels_csv(csv_path: str | Path, files: list[Path]) -> tuple[list[str], dict[str, str]]:
    """Each of `files` (a flat folder's images) -> its class label, from a CSV with a `file,label` header, or
    Kaggle's ImageNet `LOC_val_solution.csv` (ImageId without extension, PredictionString starting with the
    synset). Returns the labels in `files` order and, per label, the row that first names it."""
    csv_path = Path(csv_path)
    rows = _csv_rows(csv_path)
    header = [h.strip().lower() for h in rows[0]]
    kaggle = header[:2] == ["imageid", "predictionstring"]
    if kaggle:
        fcol, lcol = 0, 1
    else:
        fcol = next((header.index(c) for c in _FILE_COLUMNS if c in header), None)
        lcol = next((header.index(c) for c in _LABEL_COLUMNS if c in header), None)
        if fcol is None or lcol is None:
            raise DataError(f"row 1: the header must name a file column ({'/'.join(_FILE_COLUMNS)}) and a label "
                            f"column ({'/'.join(_LABEL_COLUMNS)}), or be Kaggle's ImageId,PredictionString; got "
                            f"{','.join(rows[0])[:120]}", csv_path)
    by_key = {(p.stem if kaggle else p.name): p for p in files}
    labelled: dict[Path, tuple[str, int]] = {}
    missing: list[int] = []
    for n, row in enumerate(rows[1:], start=2):
        if not any(c.strip() for c in row):
            continue
        if len(row) <= max(fcol, lcol):
            raise DataError(f"row {n}: {len(row)} column(s), expected at least {max(fcol, lcol) + 1}", csv_path)
        key = Path(row[fcol].strip()).name if not kaggle else row[fcol].strip()
        label = row[lcol].split()[0] if kaggle and row[lcol].split() else row[lcol].strip()
        if not label:
            raise DataError(f"row {n}: no label for {key}", csv_path)
        if key not in by_key:
            missing.append(n)
            continue
        path = by_key[key]
        if path in labelled:
            raise DataError(f"row {n}: {key} is labelled again (first at row {labelled[path][1]})", csv_path)
        labelled[path] = (label, n)
    if missing:
        more = f" (and {len(missing) - 1} more rows)" if len(missing) > 1 else ""
        key = rows[missing[0] - 1][fcol].strip()
        raise DataError(f"row {missing[0]}: {key} is not an image of the folder{more}", csv_path)
    unlabelled = [p for p in files if p not in labelled]
    if unlabelled:
        more = f" (and {len(unlabelled) - 1} more)" if len(unlabelled) > 1 else ""
        raise DataError(f"no row labels {unlabelled[0]}{more}", csv_path)
    origin: dict[str, str] = {}
    for label, n in labelled.values():
        origin.setdefault(label, f"{csv_path} row {n}")
    return [labelled[p][0] for p in files], origin


def _csv_rows(csv_path: Path) -> list[list[str]]:
    try:
        with csv_path.open(newline="", encoding="utf-8-sig") as f:
            rows = list(csv.reader(f))
    except FileNotFoundError:
        raise DataError("labels CSV not found", csv_path) from None
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise DataError(f"cannot read labels CSV ({type(e).__name__}: {' '.join(str(e).split())[:120]})",
                        csv_path) from None
    if not rows:
        raise DataError("labels CSV is empty", csv_path)
    return rows
