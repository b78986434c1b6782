"""Device bundles from a backend's BundleSpec: the validated artifact plus what runs and checks it on the device.

Every bundle holds the model file(s) under fixed names, labels.json, preprocess.json, run.py (the
backend's device program, verbatim) and edgeincep_common.py (images, preprocessing, --check: the
host's own code), requirements.txt, a README with the host's drift and latency, and samples/ with
expected.json (samples.py): a few images and the host's logits for them, which `python3 run.py --check`
(what `edgeincep deploy --check` runs) must reproduce. What differs per backend (files, runner entry,
pins, tolerance, README notes) comes in the spec; this module knows no backend by name.
"""
from __future__ import annotations

import json
from pathlib import Path

from edgeincep import __version__
from edgeincep.bundle.samples import CHECK, sample_files
from edgeincep.bundle.writer import BundleResult, write_bundle
from edgeincep.core.artifact import Artifact
from edgeincep.core.bundle import BundleFacts, BundleSpec
from edgeincep.core.errors import UserError
from edgeincep.core.predictor import Predictor
from edgeincep.device import COMMON_NAME, COMMON_SOURCE
from edgeincep.device.wheels import device_wheels
from edgeincep.export.onnx import labels_from_metadata, preprocess_from_metadata
from edgeincep.fsutil import sha256_file

DRIFT_KEYS = ("top1_agreement", "top1_drop_points", "top5_overlap", "logit_cosine", "sqnr_db", "n_flipped")


def expected_drift(entry: dict, reference: dict | None, images: dict | None) -> dict:
    """The host's measurements the device should reproduce (top-1 of FP32 and of this INT8 model, drift)."""
    drift = entry.get("drift", {})
    return {"images": images or {}, "runtime": entry.get("executed_precision"),
            "fp32_top1": (reference or {}).get("top1"), "int8_top1": entry.get("top1"),
            **{k: drift[k] for k in DRIFT_KEYS if k in drift},
            "gate": entry.get("gate", {})}


def _latency_rows(entry: dict, reference: dict | None) -> str:
    rows = []
    for name, rec in (("this INT8 model", entry.get("latency")),
                      ("FP32 ONNX (ONNX Runtime)", (reference or {}).get("latency"))):
        if rec:
            rows.append(f"| {name} | {rec['p50_ms']:.2f} | {rec.get('p90_ms', float('nan')):.2f} |")
    return "\n".join(rows)


def standard_readme(spec: BundleSpec, art: Artifact, f: BundleFacts) -> str:
    """The README of a bundle whose backend writes no README of its own."""
    meta, drift, entry, reference = f.meta, f.drift, f.entry, f.reference
    model_names, samples, tol_why, extra = f.model_files, f.samples, f.tolerance_why, spec.readme_notes
    model = meta.get("edgeincep.model", "model")
    pre = json.loads(meta["edgeincep.preprocess"])
    reqs = ", ".join(spec.requirements)
    rows = "\n".join(f"| {k} | {f'{v:.4g}' if isinstance(v, float) else v} |" for k, v in drift.items()
                     if k not in ("gate", "images") and v is not None)
    n = (drift.get("images") or {}).get("count")
    drift_block = (f"## Expected accuracy and drift (host: {drift.get('runtime') or art.target}, {n} images)\n\n"
                   f"| measure | value |\n| --- | --- |\n{rows}\n" if rows else
                   "## Expected accuracy and drift\n\nNot measured: this bundle was made by `edgeincep bundle` without a "
                   "validation report. `edgeincep run` writes bundles with the host's drift and latency.\n")
    lat = _latency_rows(entry, reference)
    bench_block = (f"\n## Host latency (batch 1, the host's CPU, for comparison only)\n\n| model | p50 ms | p90 ms |\n"
                   f"| --- | --- | --- |\n{lat}\n" if lat else "")
    files = ", ".join(f"`{f}`" for f in model_names)
    install = _install_block(f.wheels)
    return f"""# {model}: INT8 for {spec.title}

Made by edgeincep {__version__} from checkpoint sha256
`{meta.get("edgeincep.checkpoint_sha256", "unknown")}`; the model file is byte for byte the artifact the host
validated ({art.target}, {art.fmt}). Files: {files}, `labels.json`, `preprocess.json`, `run.py`,
`requirements.txt`, `samples/` + `expected.json`; `manifest.json` lists every file's sha256.
{extra}
## Install

{install}
Pinned: {reqs}. `run.py` needs nothing else (no torch, no edgeincep).

## Run

```
python3 run.py photo.jpg                 # top-5 with class names, per-image milliseconds
python3 run.py images/ --threads 4 --json results.json
python3 run.py --check                   # the {samples} bundled samples must give the host's results
```

Input: RGB, {pre["input_size"]}x{pre["input_size"]}; the shorter side is resized ({pre["interpolation"]}) to
floor({pre["input_size"]} / {pre["crop_pct"]}) (the longer in proportion, truncated), centre-cropped, scaled to [0, 1]
and normalised with mean {pre["mean"]}, std {pre["std"]}: timm's eval transform, exactly as on the host.
`--check` compares the logits of the samples with the host's (`expected.json`): {tol_why}

{drift_block}{bench_block}"""


def _install_block(wheels: dict | None) -> str:
    if not wheels:
        return """```
python3 -m venv ~/edgeincep-env && . ~/edgeincep-env/bin/activate
python3 -m pip install -r requirements.txt
```
"""
    glibc = f", glibc {wheels['glibc']} or newer" if wheels.get("glibc") else ""
    return f"""The bundle carries its runtime: `wheels/` ({wheels["bytes"] / 1e6:.1f} MB) holds every wheel of `requirements.txt`
for {wheels["machine"]} Linux with CPython {wheels["python"]}{glibc}, with their dependencies and the pip that
installs them: the device needs no network and no pip of its own. `edgeincep deploy BUNDLE --setup` installs
them into a virtual environment on the device; by hand, in the bundle folder:

```
python3 -m venv --without-pip env
env/bin/python {wheels["installer"]}/pip install --no-index --find-links wheels -r requirements.txt
env/bin/python run.py --check
```
"""


def runtime_entry(spec: BundleSpec, wheels: bool, device_python: str | None = None) -> tuple[dict, dict[str, Path]]:
    """The manifest's `runtime` entry (what run.py imports, the wheels carried) and the wheel files to bundle.
    Downloads the wheels unless cached: call it before slow work, so that an offline host fails at once."""
    entry: dict = {"imports": list(spec.imports), "wheels": None}
    if not wheels:
        return entry, {}
    if spec.platform is None:
        raise UserError(f"{spec.device} bundles name no device platform, so they cannot carry wheels")
    found = device_wheels(spec.requirements_txt, spec.platform, device_python)
    entry["wheels"] = found.manifest("wheels")
    return entry, {f"wheels/{p.name}": p for p in found.files}


def write_device_bundle(spec: BundleSpec, art: Artifact, predictor: Predictor, meta: dict[str, str], entry: dict,
                        recipe: dict, out_dir: Path, *, reference: dict | None = None, images: dict | None = None,
                        sample_dir: Path | None = None,
                        runtime: tuple[dict, dict[str, Path]] | None = None) -> BundleResult:
    """The bundle folder (and .tar.gz) `<model>.<target>.<device>` under out_dir. `predictor` gives the samples'
    expected logits; `meta` is what the artifact carries (Backend.metadata); `recipe` the recipe as a dict;
    `runtime` what runtime_entry gave (default: no wheels)."""
    if "edgeincep.preprocess" not in meta:
        raise UserError("the artifact carries no edgeincep preprocessing metadata (made outside edgeincep?)", art.path)
    runtime, wheel_files = runtime or runtime_entry(spec, False)
    pre = preprocess_from_metadata(meta, art.path)
    labels = labels_from_metadata(meta)
    samples, n_samples, tol_why = sample_files(predictor, art.target, entry, labels,
                                               (images or {}).get("root") or sample_dir, pre, spec.tolerance)
    drift = expected_drift(entry, reference, images)
    facts = BundleFacts(meta=meta, preprocess=pre.to_dict(), drift=drift, entry=entry, reference=reference,
                        model_files=sorted(spec.model_files), samples=n_samples, tolerance_why=tol_why,
                        wheels=runtime["wheels"])
    model = meta.get("edgeincep.model", art.path.name.split(".")[0])
    files: dict[str, bytes | str | Path] = {
        **spec.model_files,
        "labels.json": json.dumps(labels, indent=1),
        "preprocess.json": json.dumps(facts.preprocess, indent=1, sort_keys=True),
        "run.py": spec.runner_source.read_bytes(),
        COMMON_NAME: COMMON_SOURCE.read_bytes(),
        "requirements.txt": spec.requirements_txt,
        **samples,
        **(spec.extra_files(facts) if spec.extra_files else {}),
        **wheel_files,
        "README.md": spec.readme(facts) if spec.readme else standard_readme(spec, art, facts),
    }
    manifest = {"device": spec.device, "model": model, "target": art.target, "precision": art.precision,
                "format": art.fmt, "source": {"path": str(art.path), "sha256": sha256_file(art.path)},
                **spec.manifest,
                "checkpoint_sha256": meta.get("edgeincep.checkpoint_sha256"),
                "quantization": meta.get("edgeincep.quantization"),
                "runner": spec.runner, "check": CHECK,
                "requirements": list(spec.requirements),
                "runtime": runtime,
                "drift": drift,
                "bench": {"latency": entry.get("latency"), "reference_latency": (reference or {}).get("latency")},
                "recipe": recipe}
    folder = Path(out_dir) / f"{model}.{art.target}.{spec.device}"
    return write_bundle(folder, files, manifest=manifest, executable=set(spec.executable))
