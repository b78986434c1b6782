"""The samples every device bundle carries, and the expected.json its runner's `--check` compares with.

A few images under samples/ and the host's logits for them, from the artifact's own host predictor over
edgeincep's preprocessing (the validate path). They are chosen for a clear top-1 margin: the check must
not flip on a borderline image because a device rounds one activation differently.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from edgeincep.core.errors import UserError
from edgeincep.core.predictor import Predictor
from edgeincep.data.folders import iter_batches, select_images

# What `edgeincep deploy --check` runs in the bundle on the device ({python}: the interpreter it runs under,
# {output}: where the device's results go); it pairs them with "results" of the expected file by image name.
CHECK = {"command": ["{python}", "run.py", "--check", "--json", "{output}"], "expected": "expected.json"}
SAMPLES = 6
SCAN = 60  # images looked at to pick SAMPLES with clear margins, one per class where the set allows


def pick_samples(pred: Predictor, root: Path, pre) -> tuple[list[Path], np.ndarray]:
    """Up to SAMPLES images under `root` with the host's logits, the clearest top-1 margin per class first."""
    images = select_images(root, SCAN)
    logits, kept = [], []
    for x, _, idx in iter_batches(images, pre, 16, skip_bad=True):
        logits.append(pred.predict(x))
        kept += idx
    if not kept:
        raise UserError("no readable sample images", root)
    out = np.concatenate(logits)
    top2 = np.sort(out, axis=1)[:, -2:]
    margin = top2[:, 1] - top2[:, 0]
    best: dict[int, int] = {}
    for row in np.argsort(-margin, kind="stable"):
        best.setdefault(int(out[row].argmax()), int(row))
    rows = sorted(best.values(), key=lambda r: -margin[r])[:SAMPLES]
    rows += [int(r) for r in np.argsort(-margin, kind="stable") if r not in rows][:SAMPLES - len(rows)]
    rows.sort(key=lambda r: str(images.paths[kept[r]]))
    return [images.paths[kept[r]] for r in rows], out[rows]


def sample_files(pred: Predictor, target: str, entry: dict, labels: list[str], root: Path | None, pre,
                 tolerance: Callable[[np.ndarray], tuple[dict, str]]) -> tuple[dict, int, str]:
    """samples/* and expected.json for a bundle (bundle name -> source file or text), the sample count, and
    why the tolerance is what it is. `tolerance(host_logits)` gives, per runner backend, what --check accepts
    beyond the same top-1 (common.deviation: integer output steps, a largest |logit difference|, or None)."""
    paths, host = pick_samples(pred, Path(root) if root else default_samples(), pre)
    tol, why = tolerance(host)
    names = [f"samples/{i:02d}_{p.parent.name}_{p.name}" for i, p in enumerate(paths)]
    expected = {"host": {"target": target, "runtime": entry.get("executed_precision"), "machine": machine()},
                "tolerance": tol, "tolerance_why": why,
                "results": [{"image": n, "top1": int(row.argmax()),
                             "label": labels[int(row.argmax())] if int(row.argmax()) < len(labels) else None,
                             "logits": [float(v) for v in row]} for n, row in zip(names, host, strict=True)]}
    return {"expected.json": json.dumps(expected, indent=1), **dict(zip(names, paths, strict=True))}, len(paths), why


def default_samples() -> Path:
    from edgeincep.paths import default_calibration

    return default_calibration()


def machine() -> str:
    import platform

    return f"{platform.system()} {platform.machine()}"
