"""The bundle stage: a device bundle for each gated artifact of a run, and `edgeincep bundle` for one file.

The backend says what its bundle holds (Backend.bundle_spec) and loads the predictor whose logits the
samples carry; the generic writer (edgeincep.bundle) gets both and never looks a backend up.
"""
from __future__ import annotations

import json
from pathlib import Path

from edgeincep.bundle.device_bundle import runtime_entry, write_device_bundle
from edgeincep.bundle.writer import BundleResult
from edgeincep.console import err
from edgeincep.core.artifact import Artifact
from edgeincep.core.errors import UserError
from edgeincep.core.settings import RecipeBase
from edgeincep.pipeline.artifacts import artifact_for_file, device_targets
from edgeincep.recipes import recipe_model
from edgeincep.registry import get_backend, list_backends


def bundle_devices() -> list[str]:
    """Every device some backend writes bundles for."""
    return list(dict.fromkeys(d for name in list_backends() for d in get_backend(name).bundle_devices))


def write_artifact_bundle(art: Artifact, device: str, entry: dict, recipe: RecipeBase, out_dir: Path, *,
                          reference: dict | None = None, images: dict | None = None, sample_dir: Path | None = None,
                          threads: int = 0, wheels: bool = False, device_python: str | None = None
                          ) -> BundleResult | None:
    """The artifact's bundle for `device`; None when its backend makes none for it (float references). It carries
    the device's wheels when `wheels` or the recipe's bundle.wheels says so."""
    backend = get_backend(art.target)
    spec = backend.bundle_spec(art, device, recipe)
    if spec is None:
        return None
    runtime = runtime_entry(spec, wheels or recipe.bundle.wheels, device_python or recipe.bundle.python)
    return write_device_bundle(spec, art, backend.load(art, threads), backend.metadata(art), entry,
                               recipe.model_dump(), out_dir, reference=reference, images=images, sample_dir=sample_dir,
                               runtime=runtime)


def write_bundles(artifacts: list[Artifact], record: dict, recipes: dict, out_dir: Path, *,
                  wheels: bool = False) -> None:
    """A device bundle for each artifact whose backend makes one, once it has passed its drift gate."""
    for art, entry in zip(artifacts, record["artifacts"], strict=True):
        devices = get_backend(art.target).bundle_devices
        if not devices:
            continue
        if entry["gate"]["violations"]:
            entry["bundle"] = {"skipped": "over its drift budget: no device bundle"}
            continue
        with err.status(f"writing the {art.target} device bundle"):
            res = write_artifact_bundle(art, devices[0], entry, recipe_model().model_validate(recipes[art.target]),
                                        out_dir, reference=record["reference"], images=record["images"],
                                        wheels=wheels)
        if res is not None:  # float references get no bundle of their own
            entry["bundle"] = res.to_dict()


# --- `edgeincep bundle`: one artifact file, outside a pipeline run ---------------------------------

def _report_entry(art: Artifact) -> tuple[dict, dict | None, dict | None, RecipeBase | None]:
    """The validation entry for this very file from the report.json beside it, if `edgeincep run` wrote one."""
    report_path = art.path.parent / "report.json"
    try:
        report = json.loads(report_path.read_text())
        validation = report["validation"]
    except (OSError, ValueError, KeyError, TypeError):
        return {}, None, None, None
    for entry in validation.get("artifacts", []):
        # The report names files, not contents: a file rebuilt since then must not borrow its numbers.
        keys = (entry.get("meta", {}).get("cache_key"), art.meta.get("cache_key"))
        same = (Path(entry.get("path", "")).name == art.path.name and entry.get("target") == art.target
                and entry.get("precision") == art.precision and entry.get("size_bytes") == art.size_bytes()
                and (None in keys or keys[0] == keys[1]))
        if same:
            recipe = report.get("recipes", {}).get(art.target)
            if recipe:  # keys retired since (they were never read) must not fail an older report
                recipe = {k: v for k, v in recipe.items() if k != "input_size"}
                recipe.get("fallback", {}).pop("probe_images", None)
            return (entry, validation.get("reference"), validation.get("images"),
                    recipe_model().model_validate(recipe) if recipe else None)
    return {}, None, None, None


def bundle_artifact(device: str, path: Path, out_dir: Path, *, images_dir: Path | None = None,
                    threads: int = 0, wheels: bool = False, device_python: str | None = None) -> BundleResult:
    """`edgeincep bundle`: the device bundle for one artifact file, with the host's numbers when a report has them."""
    art = artifact_for_file(Path(path), device)
    if device not in get_backend(art.target).bundle_devices:
        raise UserError(f"{device} bundles take {' or '.join(device_targets(device))} artifacts; this is a {art.target} one",
                        path)
    entry, reference, images, recipe = _report_entry(art)
    if entry.get("gate", {}).get("violations"):
        raise UserError("report.json records this artifact over its drift budget: "
                        + "; ".join(entry["gate"]["violations"]), path)
    if images_dir is not None:
        images = {**(images or {}), "root": str(images_dir)}
    elif images and not Path(images.get("root", "")).is_dir():
        images = {**images, "root": None}  # the validation folder has moved: samples from the default set
    if art.precision != "int8":
        raise UserError(f"this is a {art.precision} artifact; device bundles carry the INT8 model", path)
    result = write_artifact_bundle(art, device, entry, recipe or recipe_model()(), out_dir, reference=reference,
                                   images=images, threads=threads, wheels=wheels, device_python=device_python)
    if result is None:
        raise UserError(f"the {art.target} backend makes no {device} bundle for this artifact", path)
    return result
