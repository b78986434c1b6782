"""The QAT rung's shared work: fine-tune the run's model once, export it twice, hand both to every backend."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from edgeincep.console import note
from edgeincep.core.errors import DataError
from edgeincep.data.folders import ImageSet, balanced_subset, iter_batches, model_labels, scan_folder
from edgeincep.fsutil import write_text_atomic


def check_train_folder(root: Path, class_names: list[str]) -> ImageSet:
    """The labelled training folder, or a one-line error naming it (asked for before any work)."""
    images = scan_folder(root)
    if not images.labelled:
        raise DataError("quantization-aware fine-tuning needs labelled images (one subfolder per class)", root)
    model_labels(images, class_names)  # classes the model does not know: an error now, not after the export
    return images


def run_qat(model_name: str, weights: str, fp32: Path, calib_x: np.ndarray, train_root: Path, settings,
            probe_x: np.ndarray, out_dir: Path, threads: int = 0, skip_bad: bool = False,
            deadline: float = math.inf):
    """Fine-tune, then write out_dir/<stem>.fp32.onnx (the fine-tuned weights, verified like any export) and
    out_dir/<stem>.qat.qdq.onnx; returns a QatArtifacts."""
    from edgeincep.core.artifact import QatArtifacts
    from edgeincep.escalation.qat import QatConfig, export_qdq, fine_tune
    from edgeincep.export.onnx import export_onnx, labels_from_metadata, preprocess_from_metadata, read_metadata
    from edgeincep.pipeline.model_source import load_model

    meta = read_metadata(fp32)
    pre = preprocess_from_metadata(meta, fp32)
    class_names = labels_from_metadata(meta)
    images = check_train_folder(train_root, class_names)
    chosen = balanced_subset(images, settings.images, seed=0) if settings.images < len(images) else images
    xs, kept = [], []
    for x, _, idx in iter_batches(chosen, pre, 256, skip_bad=skip_bad):
        xs.append(x)
        kept += idx
    train_x, train_y = np.concatenate(xs), model_labels(chosen.subset(kept), class_names)
    loaded = load_model(model_name, weights)
    cfg = QatConfig(steps=settings.steps, batch_size=settings.batch_size, lr=settings.lr,
                    label_weight=settings.label_weight, threads=threads)
    result = fine_tune(loaded.model, calib_x, train_x, train_y, cfg, check_x=probe_x[:512], deadline=deadline)
    out_dir.mkdir(parents=True, exist_ok=True)
    tuned = export_onnx(result.float_model, out_dir / fp32.name, input_size=pre.input_size,
                        verify_images=calib_x[:16], metadata=meta | {"edgeincep.qat": "fine-tuned weights"})
    qdq = export_qdq(result, out_dir / fp32.name.replace(".fp32.onnx", ".qat.qdq.onnx"), calib_x, meta)
    record = {"train": str(train_root), "images": len(train_x), "steps": cfg.steps, "steps_done": result.steps_done,
              "batch_size": cfg.batch_size,
              "lr": cfg.lr, "seconds": round(result.seconds, 1), "history": result.history,
              "probe_agreement_fake_quant_before": result.agreement_before,
              "probe_agreement_fake_quant_after": result.agreement_after,
              "fp32": str(tuned.path), "qdq": str(qdq)}
    write_text_atomic(out_dir / "qat.json", json.dumps(record, indent=2))
    note(f"QAT: fake-quantized agreement with FP32 on the probe {result.agreement_before:.2%} -> "
         f"{result.agreement_after:.2%} after {result.steps_done} steps ({result.seconds:.0f} s)"
         + ("" if result.steps_done == cfg.steps else f"; stopped at the time budget, {cfg.steps} were asked"))
    return QatArtifacts(tuned.path, qdq, record)
