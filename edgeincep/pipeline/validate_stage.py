"""The validate stage: FP32 reference + artifacts over one image set -> accuracy and drift record."""
from __future__ import annotations

from pathlib import Path

from edgeincep.core.artifact import Artifact
from edgeincep.data.folders import ImageSet, model_labels
from edgeincep.export.onnx import labels_from_metadata, preprocess_from_metadata, read_metadata
from edgeincep.registry import get_backend
from edgeincep.validate.drift import accuracy_record, confidence_histogram, drift_record
from edgeincep.validate.ort import reference_artifact, reference_predictor
from edgeincep.validate.runner import run_predictors


def validate(reference_onnx: Path, artifacts: list[Artifact], images: ImageSet, *, threads: int = 0,
             batch_size: int = 64, skip_bad: bool = False, ray: bool = False, ray_address: str | None = None,
             shards: int = 0) -> dict:
    """FP32 and every artifact over `images`: accuracy, drift. With `ray`, the images are split across Ray tasks
    (validate/sharded.py), giving the same logits as this process would."""
    meta = read_metadata(reference_onnx)
    pre = preprocess_from_metadata(meta, reference_onnx)
    names = labels_from_metadata(meta) or images.class_names
    ref_art = reference_artifact(reference_onnx)
    predictors = [reference_predictor(reference_onnx, threads), *(get_backend(a.target).load(a, threads) for a in artifacts)]
    if ray:
        from edgeincep.validate.sharded import sharded_logits

        logits, _, kept = sharded_logits(reference_onnx, artifacts, images, pre, batch_size=batch_size,
                                         threads=threads or 1, skip_bad=skip_bad, shards=shards, address=ray_address)
    else:
        logits, _, kept = run_predictors(predictors, images, pre, batch_size=batch_size, skip_bad=skip_bad)
    labels = model_labels(images.subset(kept), labels_from_metadata(meta))
    paths = [str(images.paths[i]) for i in kept]
    ref = logits[predictors[0].name]
    record = {
        "images": {"root": str(images.root), "count": len(kept), "labelled": labels is not None,
                   "skipped": len(images.skipped), "skipped_files": images.skipped[:20]},
        "class_names": names,
        "preprocess": pre.to_dict(),
        "reference": {**ref_art.to_dict(), "executed_precision": predictors[0].executed_precision,
                      **accuracy_record(ref, labels, names), "confidence_hist": confidence_histogram(ref)},
        "artifacts": [],
    }
    for art, pred in zip(artifacts, predictors[1:], strict=True):
        out = logits[pred.name]
        record["artifacts"].append({**art.to_dict(), "executed_precision": pred.executed_precision,
                                    **accuracy_record(out, labels, names),
                                    "confidence_hist": confidence_histogram(out),
                                    "drift": drift_record(ref, out, labels, paths, names)})
    return record
