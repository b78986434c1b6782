"""The export stage: model + weights + verification images -> verified FP32 ONNX and a summary."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from edgeincep.cache import library_versions, lookup, outputs_digest, stage_key
from edgeincep.console import err, note
from edgeincep.data.folders import balanced_subset, load_array, scan_folder
from edgeincep.export.onnx import ExportResult, build_metadata, export_onnx
from edgeincep.fsutil import ensure_writable_dir, write_text_atomic
from edgeincep.models.registry import check_input_size, get_spec
from edgeincep.paths import default_calibration
from edgeincep.pipeline.model_source import class_names_of, load_model, preprocess_of


def run_export(model_name: str, *, weights: str, out_dir: Path, input_size: int | None = None,
               width: float | None = None, num_classes: int | None = None, verify_images: Path | None = None,
               verify_count: int = 16, opset: int = 17, skip_bad: bool = False,
               labels: str | Path | None = None) -> ExportResult:
    spec = get_spec(model_name)
    if input_size is not None:
        check_input_size(input_size)
    out_dir = ensure_writable_dir(out_dir)
    images = scan_folder(verify_images or default_calibration())
    with err.status(f"loading {model_name} ({weights})"):
        loaded = load_model(model_name, weights, num_classes=num_classes, width=width)
    for msg in loaded.notes:
        note(msg)
    pre = preprocess_of(loaded, input_size)
    class_names = class_names_of(loaded, weights, labels)
    size = pre.input_size
    x, _ = load_array(balanced_subset(images, verify_count, seed=0), pre, skip_bad=skip_bad)
    model = loaded.model
    eff_width = float(width if width is not None else (loaded.checkpoint.metadata.get("width", 1.0)
                                                       if loaded.checkpoint else 1.0))
    meta = build_metadata(spec, model, pre, class_names=class_names,
                          checkpoint_sha256=loaded.checkpoint.sha256 if loaded.checkpoint else None,
                          width=eff_width, extra={"edgeincep.weights": weights if loaded.checkpoint is None
                                                  else loaded.checkpoint.path.name})
    path = out_dir / f"{model_name}.{size}px.fp32.onnx"
    record_path = out_dir / f"{path.stem}.export.json"
    key = stage_key(stage="export", model=model_name, weights=weights, meta=meta, opset=opset,
                    num_classes=getattr(model, "num_classes", None), verify=hashlib.sha256(x.tobytes()).hexdigest(),
                    libs=library_versions())
    hit = lookup(record_path, key, [path])
    if hit:
        note(f"export: {path.name} is up to date (same checkpoint, settings and libraries)")
        return ExportResult(path, path.stat().st_size, 0.0, hit["max_abs_diff"], hit["tolerance"],
                            hit["top1_agreement"], hit["n_images"], meta, cached=True)
    with err.status(f"exporting {model_name} at {size} px to ONNX and checking it against PyTorch"):
        result = export_onnx(model, path, input_size=size, verify_images=x, metadata=meta, opset=opset)
    write_text_atomic(record_path, json.dumps({"model": model_name, "weights": weights, "cache_key": key,
                                               **result.to_dict(), "metadata": meta,
                                               "sha256": outputs_digest([path])}, indent=2))
    return result
