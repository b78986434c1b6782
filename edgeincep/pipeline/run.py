"""The default job: export the FP32 ONNX, build each target that runs here, validate, gate, report."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
from rich.markdown import Markdown

from edgeincep.backends.base import Backend
from edgeincep.console import err, note, out
from edgeincep.core.artifact import Artifact
from edgeincep.core.errors import GateError, UserError
from edgeincep.data.folders import ImageSet, balanced_subset, select_images
from edgeincep.export.onnx import labels_from_metadata, preprocess_from_metadata, read_metadata
from edgeincep.fsutil import ensure_writable_dir, write_text_atomic
from edgeincep.meter import StageMeter
from edgeincep.paths import default_calibration
from edgeincep.pipeline.bundle_stage import write_bundles
from edgeincep.pipeline.calibration_stage import refuse_overlap
from edgeincep.pipeline.escalation_stage import EscalationInputs, build_escalating
from edgeincep.pipeline.export_stage import run_export
from edgeincep.pipeline.lock import output_lock
from edgeincep.pipeline.validate_stage import validate
from edgeincep.quantize.calibration import CalibrationSet, load_calibration
from edgeincep.recipes import Recipe, find_recipe, load_recipe_file
from edgeincep.registry import get_backend, list_backends
from edgeincep.report.html import write_html
from edgeincep.report.summary import markdown
from edgeincep.validate.gates import violations
from edgeincep.validate.ort import reference_predictor

SCHEMA = "edgeincep.run/1"


def select_targets(target: str) -> list[Backend]:
    names = list_backends() if target == "all" else [target]
    chosen = []
    for name in names:
        t = get_backend(name)
        reason = t.unavailable_reason()
        if reason:
            if target != "all":
                raise UserError(f"target {name} cannot run here: {reason}")
            note(f"skipping target {name}: {reason}")
            continue
        chosen.append(t)
    return chosen



def _latency(fp32: Path, artifacts: list[Artifact], pre, threads: int) -> dict:
    """Batch-1 latency of FP32 and each artifact, interleaved (a quick look; `edgeincep bench` goes deeper)."""
    from edgeincep.bench import interleaved_latency

    predictors = [reference_predictor(fp32, threads), *(get_backend(a.target).load(a, threads) for a in artifacts)]
    x = np.zeros((1, 3, pre.input_size, pre.input_size), np.float32)
    with err.status("measuring batch-1 latency (interleaved)"):
        return interleaved_latency(predictors, x, runs=20, warmup=3)


def _attribute(fp32: Path, artifacts: list[Artifact], calib: CalibrationSet, count: int, out_dir: Path) -> dict:
    """Every INT8 artifact against FP32 layer by layer on calibration images (the validation set is for the
    verdict only), with one Model Explorer node-data file per artifact under out_dir/attribution/."""
    from edgeincep.attribution.layers import attribute, model_explorer_node_data

    int8 = {f"{a.target}:{a.precision}": (a.target, a.path) for a in artifacts if a.precision == "int8"}
    record = attribute(fp32, int8, calib.x[:count])
    record["node_data"] = {}
    for name in record["artifacts"]:
        path = out_dir / "attribution" / f"{name.replace(':', '.')}.node_data.json"
        write_text_atomic(path, json.dumps(model_explorer_node_data(record, name), indent=1))
        record["node_data"][name] = str(path)
    return record


def _emulate_bundles(fp32: Path, artifacts: list[Artifact], record: dict, images: ImageSet, pre, count: int,
                     threads: int) -> None:
    """Each arm64 bundle's run.py on a balanced `count` of the validation images as a Raspberry Pi 4 and 5 under
    qemu: what the board computes against the host's INT8 and FP32 (entry["bundle"]["emulated"])."""
    from edgeincep.bundle.emulate import EMULATED_DEVICES, device_drift, unavailable_reason
    from edgeincep.data.folders import model_labels
    from edgeincep.validate.runner import run_predictors

    bundles = [(art, entry) for art, entry in zip(artifacts, record["artifacts"], strict=True)
               if "folder" in (entry.get("bundle") or {})
               and json.loads((Path(entry["bundle"]["folder"]) / "manifest.json").read_text())["device"]
               in EMULATED_DEVICES]
    if not bundles or count == 0:
        return
    reason = unavailable_reason()
    if reason:
        for _, entry in bundles:
            entry["bundle"]["emulated"] = {"skipped": reason}
        return
    subset = balanced_subset(images, count, seed=0) if count < len(images) else images
    # The host's side, FP32 and every bundled INT8 model, in one pass over the images
    predictors = [reference_predictor(fp32, threads), *(get_backend(art.target).load(art, threads) for art, _ in bundles)]
    logits, _, kept = run_predictors(predictors, subset, pre, skip_bad=True)
    paths = [subset.paths[i] for i in kept]
    labels = model_labels(subset.subset(kept), record["class_names"]) if subset.labelled else None
    for (art, entry), pred in zip(bundles, predictors[1:], strict=True):
        with err.status(f"running the {art.target} bundle on {len(paths)} images as arm64 (qemu: Pi 4, Pi 5)"):
            try:
                entry["bundle"]["emulated"] = device_drift(Path(entry["bundle"]["folder"]), paths, logits[pred.name],
                                                           logits[predictors[0].name], labels,
                                                           workers=threads or len(os.sched_getaffinity(0)))
            except (RuntimeError, OSError, subprocess.SubprocessError) as e:  # the emulator's fault: reported
                entry["bundle"]["emulated"] = {"error": str(e)}



def run_pipeline(model_name: str, *, weights: str, target: str, val_dir: Path, calib_dir: Path | None,
                 out_dir: Path, limit: int | None = None, threads: int = 0, skip_bad: bool = False,
                 recipe_path: Path | None = None, wheels: bool = False, ray: bool = False,
                 ray_address: str | None = None, probe_dir: Path | None = None, train_dir: Path | None = None,
                 labels: str | Path | None = None, val_labels: Path | None = None,
                 calib_labels: Path | None = None) -> dict:
    if train_dir is not None:  # asked for by name: a missing or unlabelled folder is an error before any work
        from edgeincep.pipeline.qat_stage import check_train_folder

        check_train_folder(train_dir, [])
    if probe_dir is not None:
        from edgeincep.data.folders import scan_folder

        scan_folder(probe_dir)
    out_dir = ensure_writable_dir(out_dir)
    with output_lock(out_dir):
        return _run(model_name, weights=weights, target=target, val_dir=val_dir, calib_dir=calib_dir,
                    out_dir=out_dir, limit=limit, threads=threads, skip_bad=skip_bad, recipe_path=recipe_path,
                    wheels=wheels, ray=ray, ray_address=ray_address, probe_dir=probe_dir, train_dir=train_dir,
                    labels=labels, val_labels=val_labels, calib_labels=calib_labels)


def _run(model_name: str, *, weights: str, target: str, val_dir: Path, calib_dir: Path | None, out_dir: Path,
         limit: int | None, threads: int, skip_bad: bool, recipe_path: Path | None, wheels: bool, ray: bool,
         ray_address: str | None, probe_dir: Path | None, train_dir: Path | None, labels: str | Path | None,
         val_labels: Path | None, calib_labels: Path | None) -> dict:
    calib_root = calib_dir or default_calibration()
    meter = StageMeter()
    with meter.stage("export"):
        exported = run_export(model_name, weights=weights, out_dir=out_dir, verify_images=calib_root, skip_bad=skip_bad,
                              labels=labels)
    fp32 = exported.path
    meta = read_metadata(fp32)
    pre = preprocess_from_metadata(meta, fp32)
    class_names = labels_from_metadata(meta)
    artifacts, recipes, ladders = [], {}, {}
    calib_cache: dict[tuple, CalibrationSet] = {}
    targets = select_targets(target)
    val_recipe = (load_recipe_file(recipe_path) if recipe_path
                  else find_recipe(model_name, targets[0].name) if targets else Recipe()).validation
    images = select_images(val_dir, limit or val_recipe.limit, labels_csv=val_labels)
    if train_dir is not None:
        from edgeincep.pipeline.qat_stage import check_train_folder

        check_train_folder(train_dir, class_names)
    shared = EscalationInputs(model_name, weights, fp32, pre, class_names, calib_root, images, probe_dir, train_dir,
                         out_dir, threads, skip_bad, calib_labels)
    for t in targets:
        recipe = load_recipe_file(recipe_path) if recipe_path else find_recipe(model_name, t.name)
        recipes[t.name] = recipe.model_dump()
        key = (recipe.calibration.count, recipe.calibration.seed)
        if key not in calib_cache:
            calib_cache[key] = load_calibration(calib_root, pre, count=key[0], seed=key[1], skip_bad=skip_bad,
                                                labels_csv=calib_labels)
            refuse_overlap(calib_cache[key].paths, images, val_dir)
        calib = calib_cache[key]
        with meter.stage(f"build:{t.name}"), \
                err.status(f"building {t.name} INT8 ({recipe.calibration.method} calibration, {len(calib)} images)"):
            art, ladder = build_escalating(
                t, fp32, calib, recipe, out_dir, threads,
                shared.probe(recipe, calib) if recipe.escalation.rungs != ["ptq"] else None,
                calibration=shared.calibration(recipe.calibration.seed), qat=shared.qat(recipe, calib))
            # The runtime's own float builds, validated and gated like the INT8 one: they prove the
            # runtime computes true FP32 (OpenVINO on a bf16-capable CPU would not, unasked).
            artifacts.extend(t.references(fp32, recipe, out_dir))
        artifacts.append(art)
        ladders[art.name] = ladder
    with meter.stage("validate"):
        record = validate(fp32, artifacts, images, threads=threads, skip_bad=skip_bad,
                          batch_size=val_recipe.batch_size, ray=ray, ray_address=ray_address)
    with meter.stage("latency"):
        latency = _latency(fp32, artifacts, pre, threads)
    if val_recipe.attribution_images and calib_cache:
        with meter.stage("attribute"), err.status("attributing INT8 error layer by layer"):
            record["attribution"] = _attribute(fp32, artifacts, next(iter(calib_cache.values())),
                                               val_recipe.attribution_images, out_dir)
    for entry in [record["reference"], *record["artifacts"]]:
        entry["latency"] = latency.get(f"{entry['target']}:{entry['precision']}")
    failures = []
    for entry in record["artifacts"]:
        budget = Recipe.model_validate(recipes[entry["target"]]).budget
        entry["gate"] = {"budget": budget.model_dump(), "violations": violations(entry["drift"], budget)}
        entry["escalation"] = ladders.get(f"{entry['target']}:{entry['precision']}", {})
        if entry["gate"]["violations"]:
            failures.append(f"{entry['target']}:{entry['precision']}: {'; '.join(entry['gate']['violations'])}")
    if any(get_backend(a.target).bundle_devices for a in artifacts):
        with meter.stage("bundle"):
            write_bundles(artifacts, record, recipes, out_dir, wheels=wheels)
        with meter.stage("device"):
            _emulate_bundles(fp32, artifacts, record, images, pre, val_recipe.device_images, threads)
    report = {"schema": SCHEMA, "model": model_name, "weights": weights, "export": exported.to_dict(),
              "calibration": {"root": str(calib_root), **next(iter(calib_cache.values())).summary()}
              if calib_cache else None,
              "validation": record, "recipes": recipes,
              "stage_seconds": meter.seconds(), "stages": meter.stages,
              "passed": not failures}
    path = write_text_atomic(out_dir / "report.json", json.dumps(report, indent=2))
    page = write_html(report, out_dir / "report.html")
    summary = write_text_atomic(out_dir / "report.md", markdown(report))
    out.print(Markdown(summary.read_text()))
    err.print(f"reports: {path}, {page}, {summary}")
    if failures:
        raise GateError("drift budget exceeded: " + " | ".join(failures))
    return report
