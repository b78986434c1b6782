"""One trial of a sweep: an ordinary pipeline build of one target with one recipe, validated and timed.

`run_trial` is a plain function of a picklable TrialSpec, so the same code runs in this process (`--no-ray`)
or as a Ray task on any node that sees the store. Everything it writes lives under STORE/trials/<id>/: the
artifacts (through the backends' stage cache, so a rerun reuses them), `started.json` (pid and host of each
attempt: what a scheduler or a test looks at) and, last, `trial.json`, the result a rerun of the sweep reads
instead of running the trial again.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import resource
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

from edgeincep.core.errors import UserError
from edgeincep.fsutil import sha256_file, write_text_atomic
from edgeincep.sweep.space import label
from edgeincep.yamlfile import one_line

RESULT = "trial.json"


@dataclass(frozen=True)
class TrialSpec:
    model: str
    target: str
    variant: dict
    recipe: dict        # the target's recipe with the variant applied (validated by the trial itself)
    fp32: str           # the verified FP32 ONNX, in the store
    val_dir: str
    limit: int | None
    store: str
    threads: int = 1
    id: str = field(default="")

    def __post_init__(self):
        if not self.id:  # by content: the same trial has the same id in any store, on any machine
            key = json.dumps([self.model, self.target, self.recipe, str(Path(self.val_dir).resolve()), self.limit,
                              _content(self.fp32)], sort_keys=True, default=str)
            object.__setattr__(self, "id", f"{self.model}.{self.target}.{hashlib.sha256(key.encode()).hexdigest()[:10]}")

    @property
    def folder(self) -> Path:
        return Path(self.store) / "trials" / self.id


@functools.lru_cache(maxsize=64)
def _sha(path: str, size: int, mtime_ns: int) -> str:
    return sha256_file(path)


def _content(path: str) -> str | None:
    p = Path(path)
    if not p.is_file():
        return None
    st = p.stat()
    return _sha(str(p), st.st_size, st.st_mtime_ns)


def head(spec: TrialSpec) -> dict:
    """What names a trial in its result, whatever became of it."""
    return {"id": spec.id, "model": spec.model, "target": spec.target, "variant": spec.variant,
            "label": label(spec.variant)}


def finished(spec: TrialSpec) -> dict | None:
    """The trial's recorded result when an earlier run of the sweep finished it."""
    try:
        record = json.loads((spec.folder / RESULT).read_text())
    except (OSError, ValueError):
        return None
    return record if record.get("id") == spec.id and record.get("status") in ("ok", "failed") else None


def _peak_rss_mb() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, children) / 1024


def run_trial(spec: TrialSpec) -> dict:
    """Build, validate and time one trial; a recipe value or conversion that fails is a failed trial, one line."""
    spec.folder.mkdir(parents=True, exist_ok=True)
    with (spec.folder / "started.json").open("a") as f:
        f.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "at": time.time()}) + "\n")
    t0 = time.perf_counter()
    try:
        record = {**head(spec), "status": "ok", **_measure(spec)}
    except ValidationError as e:
        first = e.errors()[0]
        record = {**head(spec), "status": "failed",
                  "error": f"recipe key '{'.'.join(map(str, first['loc']))}': {one_line(first['msg'])}"}
    except UserError as e:
        record = {**head(spec), "status": "failed", "error": one_line(e)}
    except Exception as e:  # noqa: BLE001 (a trial that breaks is recorded; the sweep goes on)
        record = {**head(spec), "status": "failed", "error": f"unexpected {type(e).__name__}: {one_line(e)[:300]}"}
    record.update(seconds=round(time.perf_counter() - t0, 2), host=socket.gethostname(), pid=os.getpid(),
                  peak_rss_mb=round(_peak_rss_mb(), 1))
    write_text_atomic(spec.folder / RESULT, json.dumps(record, indent=1, default=str))
    return record


def _measure(spec: TrialSpec) -> dict:
    import numpy as np

    from edgeincep.bench import interleaved_latency
    from edgeincep.data.folders import select_images
    from edgeincep.escalation.probe import load_probe
    from edgeincep.export.onnx import labels_from_metadata, preprocess_from_metadata, read_metadata
    from edgeincep.paths import default_calibration
    from edgeincep.pipeline.calibration_stage import calibration_labels
    from edgeincep.pipeline.escalation_stage import build_escalating
    from edgeincep.pipeline.validate_stage import validate
    from edgeincep.quantize.calibration import load_calibration
    from edgeincep.recipes import recipe_model
    from edgeincep.registry import get_backend
    from edgeincep.validate.gates import violations
    from edgeincep.validate.ort import reference_predictor

    recipe = recipe_model().model_validate(spec.recipe)
    fp32 = Path(spec.fp32)
    meta = read_metadata(fp32)
    pre = preprocess_from_metadata(meta, fp32)
    backend = get_backend(spec.target)
    reason = backend.unavailable_reason()
    if reason:
        raise UserError(f"target {spec.target} cannot run on {socket.gethostname()}: {reason}")
    calib_root = default_calibration()
    calib = load_calibration(calib_root, pre, count=recipe.calibration.count, seed=recipe.calibration.seed)
    class_names = labels_from_metadata(meta)
    images = select_images(Path(spec.val_dir), spec.limit or recipe.validation.limit)
    # A trial measures one configuration: its ladder probes on the calibration images and has no QAT rung
    probe = load_probe(None, pre=pre, count=len(calib), class_names=class_names, calib_paths=calib.paths,
                       calib_x=calib.x, calib_labels=calibration_labels(calib_root, calib, class_names),
                       validation=images)
    art, fallback = build_escalating(backend, fp32, calib, recipe, spec.folder, spec.threads, probe)
    record = validate(fp32, [art], images, threads=spec.threads, batch_size=recipe.validation.batch_size)
    entry, ref = record["artifacts"][0], record["reference"]
    x = np.zeros((1, 3, pre.input_size, pre.input_size), np.float32)
    preds = [reference_predictor(fp32, spec.threads), backend.load(art, spec.threads)]
    latency = interleaved_latency(preds, x, runs=20, warmup=3)
    p50, fp32_p50 = latency[preds[1].name]["p50_ms"], latency[preds[0].name]["p50_ms"]
    drift = entry["drift"]
    return {"artifact": str(art.path), "size_bytes": art.size_bytes(), "executed_precision": entry["executed_precision"],
            "images": record["images"]["count"], "top1": entry.get("top1"), "fp32_top1": ref.get("top1"),
            "top1_agreement": drift["top1_agreement"], "top1_drop_points": drift.get("top1_drop_points"),
            "sqnr_db": drift["sqnr_db"], "p50_ms": p50, "fp32_p50_ms": fp32_p50, "latency_ratio": p50 / fp32_p50,
            "gate_violations": violations(drift, recipe.budget),
            "fallback_float_nodes": len(fallback.get("float_nodes") or []),
            "recipe": {k: v for k, v in recipe.model_dump(mode="json").items() if k != "source"}}
