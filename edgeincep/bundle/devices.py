"""Raspberry Pi, Coral and Intel bundles: the validated INT8 artifact plus what runs and checks it on the device.

Contents: the model file(s) under fixed names, labels.json, preprocess.json, run.py (runner.py verbatim:
numpy + Pillow + the device's runtime) and edgeincep_common.py (common.py verbatim), a pinned
requirements.txt (pins.py), a README with the host's drift and latency, and samples/ with expected.json
(samples.py): a few images and the host's logits for them, which `python3 run.py --check` (what
`edgeincep deploy --check` runs) must reproduce.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeincep import __version__
from edgeincep.bundle.jetson import COMMON_NAME, COMMON_SOURCE, expected_drift
from edgeincep.bundle.pins import REQUIREMENTS, requirements_txt
from edgeincep.bundle.samples import CHECK, sample_files
from edgeincep.bundle.writer import BundleResult, write_bundle
from edgeincep.errors import UserError
from edgeincep.export.onnx import preprocess_from_metadata
from edgeincep.fsutil import sha256_file
from edgeincep.recipes import Recipe
from edgeincep.targets.base import Artifact, get_target

RUNNER_SOURCE = Path(__file__).with_name("runner.py")


@dataclass(frozen=True)
class Device:
    name: str
    title: str
    targets: tuple[str, ...]
    runtime: str  # the runner's backend: litert, edgetpu, openvino


DEVICES = {
    "rpi": Device("rpi", "Raspberry Pi 4 / 5 (64-bit Raspberry Pi OS), LiteRT with XNNPACK", ("tflite", "edgetpu"), "litert"),
    "coral": Device("coral", "Coral Edge TPU (USB / M.2 / PCIe), LiteRT with the Edge TPU delegate",
                    ("edgetpu", "tflite"), "edgetpu"),
    "intel": Device("intel", "Intel CPU, OpenVINO CPU plugin", ("openvino",), "openvino"),
}
TARGET_DEVICE = {"tflite": "rpi", "edgetpu": "coral", "openvino": "intel"}


def model_files(device: Device, art: Artifact) -> tuple[dict[str, Path], dict]:
    """Bundle name -> source file, and the manifest's runner entry (which names run.py opens)."""
    if device.runtime == "openvino":
        xml, bins = art.path, [p for p in art.files() if p.suffix == ".bin"]
        if not bins:
            raise UserError("the OpenVINO IR has no .bin beside it", xml)
        # read_model finds the weights by the .xml's stem, so both files are renamed together.
        return ({"model.int8.xml": xml, "model.int8.bin": bins[0]},
                {"runtime": "openvino", "model": "model.int8.xml",
                 "inference_precision": art.meta.get("inference_precision", "f32"),
                 "performance_hint": art.meta.get("performance_hint", "latency")})
    files = {"model.int8.tflite": art.path}
    runner = {"runtime": device.runtime, "model": "model.int8.tflite"}
    if device.runtime == "edgetpu":
        compiled = edgetpu_compiled(art)
        if compiled is not None:
            files["model.int8_edgetpu.tflite"] = compiled
            runner["edgetpu_model"] = "model.int8_edgetpu.tflite"
    return files, runner


def edgetpu_compiled(art: Artifact) -> Path | None:
    named = ((art.meta.get("edgetpu") or {}).get("compiler") or {}).get("model")
    beside = art.path.with_name(art.path.name.removesuffix(".tflite") + "_edgetpu.tflite")
    for p in (Path(named) if named else None, beside):
        if p is not None and p.is_file():
            return p
    return None


# ARM vs x86 LiteRT on the reference models' INT8 bundles, arm64 under qemu as a Pi 4 (Cortex-A72) and a Pi 5
# (Cortex-A76): identical output codes on every image measured (docs/devices.md). The margin is for ARM cores
# whose features select XNNPACK kernels that were not emulated.
LITERT_OUTPUT_STEPS = 2


def _tolerance(device: Device, art: Artifact, host_logits: np.ndarray) -> tuple[dict, str]:
    """Per runner backend what --check accepts beyond the same top-1 (common.deviation), and why."""
    if device.runtime == "openvino":
        tol = float(0.02 * np.abs(host_logits).max())
        return {"openvino-cpu": tol}, ("OpenVINO picks kernels per CPU (AVX2, AVX-512, AMX): a different Intel CPU may "
                                       "round an int8 activation differently, so logits agree to 2% of the largest.")
    scale, zero_point = _output_quantization(art.path)
    tol = {"litert-cpu": {"output_steps": LITERT_OUTPUT_STEPS, "scale": scale, "zero_point": zero_point}}
    why = (f"the same top-1, and output codes within {LITERT_OUTPUT_STEPS} quantization steps ({scale:.6g} each) of "
           "the host's, compared as integers. LiteRT's int8 kernels (XNNPACK) gave the host's output codes exactly "
           "on arm64 as a Raspberry Pi 4 and 5 (Cortex-A72, Cortex-A76, emulated by qemu) for every reference "
           "model and test image measured; the margin covers ARM cores whose kernels were not emulated.")
    if device.runtime == "edgetpu":
        tol["edgetpu"] = None
        why += " On the Edge TPU (not available to edgeincep's tests) only the top-1 is compared."
    return tol, why


def _output_quantization(path: Path) -> tuple[float, int]:
    """Scale and zero point of the model's integer output; with float I/O, of the tensor its final
    DEQUANTIZE reads (the logits are then (code - zero point) * scale all the same)."""
    from ai_edge_litert import schema_py_generated as schema

    from edgeincep.quantize.tflite_rewrite import load
    from edgeincep.targets.tflite_graph import builtin_code

    model = load(path.read_bytes())
    sub = model.subgraphs[0]
    index = sub.outputs[0]
    producer = next((op for op in sub.operators if index in op.outputs), None)
    if producer is not None and builtin_code(model.operatorCodes[producer.opcodeIndex]) == \
            schema.BuiltinOperator.DEQUANTIZE:
        index = producer.inputs[0]
    q = sub.tensors[index].quantization
    if q is None or q.scale is None or len(q.scale) != 1 or not q.scale[0] > 0:
        raise UserError("the INT8 model's output is not per-tensor quantized; a device bundle needs that", path)
    return float(q.scale[0]), int(q.zeroPoint[0])


def _latency_rows(entry: dict, reference: dict | None) -> str:
    rows = []
    for name, rec in (("this INT8 model", entry.get("latency")),
                      ("FP32 ONNX (ONNX Runtime)", (reference or {}).get("latency"))):
        if rec:
            rows.append(f"| {name} | {rec['p50_ms']:.2f} | {rec.get('p90_ms', float('nan')):.2f} |")
    return "\n".join(rows)


def readme(device: Device, meta: dict, art: Artifact, drift: dict, entry: dict, reference: dict | None,
           model_names: list[str], samples: int, tol_why: str, extra: str) -> str:
    model = meta.get("edgeincep.model", "model")
    pre = json.loads(meta["edgeincep.preprocess"])
    reqs = ", ".join(REQUIREMENTS[device.name])
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
    return f"""# {model}: INT8 for {device.title}

Made by edgeincep {__version__} from checkpoint sha256
`{meta.get("edgeincep.checkpoint_sha256", "unknown")}`; the model file is byte for byte the artifact the host
validated ({art.target}, {art.fmt}). Files: {files}, `labels.json`, `preprocess.json`, `run.py`,
`requirements.txt`, `samples/` + `expected.json`; `manifest.json` lists every file's sha256.
{extra}
## Install

```
python3 -m venv ~/edgeincep-env && . ~/edgeincep-env/bin/activate
python3 -m pip install -r requirements.txt
```

Pinned: {reqs}. `run.py` needs nothing else (no torch, no edgeincep).

## Run

```
python3 run.py photo.jpg                 # top-5 with class names, per-image milliseconds
python3 run.py images/ --threads 4 --json results.json
python3 run.py --check                   # the {samples} bundled samples must give the host's results
```

Input: RGB, {pre["input_size"]}x{pre["input_size"]}; the shorter side is resized ({pre["interpolation"]}) to
floor({pre["input_size"]} / {pre["crop_pct"]}), centre-cropped, scaled to [0, 1] and normalised with mean {pre["mean"]},
std {pre["std"]}, exactly as on the host. `--check` compares the logits of the samples with the host's
(`expected.json`): {tol_why}

{drift_block}{bench_block}"""


def write(device_name: str, art: Artifact, entry: dict, recipe: Recipe, out_dir: Path, *,
          reference: dict | None = None, images: dict | None = None, sample_dir: Path | None = None,
          threads: int = 0) -> BundleResult | None:
    """The device bundle for an INT8 artifact; None for the float references validated beside it."""
    device = DEVICES[device_name]
    if art.precision != "int8":
        return None
    if art.target not in device.targets:
        raise UserError(f"a {device.name} bundle takes a {' or '.join(device.targets)} artifact, not {art.target}",
                        art.path)
    meta = get_target(art.target).metadata(art)
    if "edgeincep.preprocess" not in meta:
        raise UserError("the artifact carries no edgeincep preprocessing metadata (made outside edgeincep?)", art.path)
    pre = preprocess_from_metadata(meta, art.path)
    labels = json.loads(meta.get("edgeincep.labels", "[]"))
    files, runner = model_files(device, art)
    samples, n_samples, tol_why = sample_files(art, entry, labels, (images or {}).get("root") or sample_dir, pre,
                                               lambda host: _tolerance(device, art, host), threads)
    drift = expected_drift(entry, reference, images)
    extra, compat = "", None
    if device.runtime == "edgetpu":
        extra, compat = _coral_notes(art, runner)
    model = meta.get("edgeincep.model", art.path.name.split(".")[0])
    bundle_files: dict[str, bytes | str | Path] = {
        **files,
        "labels.json": json.dumps(labels, indent=1),
        "preprocess.json": json.dumps(pre.to_dict(), indent=1, sort_keys=True),
        "run.py": RUNNER_SOURCE.read_bytes(),
        COMMON_NAME: COMMON_SOURCE.read_bytes(),
        "requirements.txt": requirements_txt(device.name),
        **samples,
        "README.md": readme(device, meta, art, drift, entry, reference, sorted(files), n_samples, tol_why, extra),
    }
    if compat is not None:
        bundle_files["edgetpu_compat.json"] = compat
    manifest = {"device": device.name, "model": model, "target": art.target, "precision": art.precision,
                "format": art.fmt, "source": {"path": str(art.path), "sha256": sha256_file(art.path)},
                "checkpoint_sha256": meta.get("edgeincep.checkpoint_sha256"),
                "quantization": meta.get("edgeincep.quantization"),
                "runner": runner, "check": CHECK,
                "requirements": REQUIREMENTS[device.name],
                "drift": drift,
                "bench": {"latency": entry.get("latency"), "reference_latency": (reference or {}).get("latency")},
                "recipe": recipe.model_dump()}
    folder = Path(out_dir) / f"{model}.{art.target}.{device.name}"
    return write_bundle(folder, bundle_files, manifest=manifest, executable={"run.py"})


def _coral_notes(art: Artifact, runner: dict) -> tuple[str, Path | None]:
    from edgeincep.targets.edgetpu import compat_report_path

    tpu = art.meta.get("edgetpu") or {}
    report = compat_report_path(art.path)
    compiled = "edgetpu_model" in runner
    lines = ["", "## Edge TPU", ""]
    if tpu.get("summary"):
        lines.append(f"Compatibility (edgeincep's check of the INT8 graph): {tpu['summary']}.")
    if compiled:
        comp = tpu.get("compiler") or {}
        facts = ", ".join(f"{k.replace('_', ' ')} {comp[k]}" for k in ("on_tpu", "on_cpu", "on_chip_memory",
                                                                         "off_chip_memory") if k in comp)
        lines.append(f"`model.int8_edgetpu.tflite` was compiled by edgetpu_compiler on the host{': ' + facts if facts else ''}.")
    else:
        lines.append("edgetpu_compiler was not available on the host, so the bundle holds only the CPU model: "
                     "compile it on an x86-64 Linux machine with `edgetpu_compiler model.int8.tflite` and add "
                     "`\"edgetpu_model\": \"model.int8_edgetpu.tflite\"` to manifest.json's runner entry.")
    lines += ["",
              ("The Edge TPU runtime is not on PyPI: install `libedgetpu1-std` (or `-max`) from Coral's apt repository "
              "(https://coral.ai/software/#debian-packages). `run.py` loads it as a LiteRT delegate and says which "
              "ran: `edgetpu`, or `litert-cpu` with the reason (no accelerator, no delegate, no compiled model). "
              "Coral's 2021 libedgetpu builds were made for TensorFlow 2.5; if LiteRT 2.x refuses the delegate, use a "
              "libedgetpu built for a current TensorFlow Lite. The Edge TPU path has not been run by edgeincep's tests "
              "(no accelerator there); the CPU path has."), ""]
    return "\n".join(lines), (report if report.is_file() else None)


# --- `edgeincep bundle`: one artifact file, outside a pipeline run ---------------------------------

DEVICE_TARGETS = {"rpi": "tflite", "coral": "edgetpu", "intel": "openvino", "jetson": "tensorrt"}


def _artifact(path: Path, device: str) -> Artifact:
    """The artifact record written beside the file by its build, else one inferred from the file."""
    if not path.is_file():
        raise UserError("no such artifact file", path)
    sidecar = path.with_name(path.name + ".json")
    if sidecar.is_file():
        try:
            return Artifact.from_sidecar(sidecar)
        except (ValueError, KeyError, TypeError):
            pass  # a damaged record: infer, as for a file copied without it
    target = DEVICE_TARGETS[device]
    if device in ("rpi", "coral"):
        from edgeincep.targets.tflite_graph import read_graph, stored_precision

        if path.suffix != ".tflite":
            raise UserError(f"a {device} bundle takes an INT8 .tflite", path)
        return Artifact(path, target, stored_precision(read_graph(path)), "tflite")
    if device == "intel":
        if path.suffix != ".xml":
            raise UserError("an intel bundle takes an OpenVINO IR (.xml with its .bin)", path)
        return Artifact(path, target, "int8" if ".int8." in path.name else "fp32", "openvino-ir")
    if path.suffix != ".onnx":
        raise UserError("a jetson bundle takes the Q/DQ INT8 ONNX of the tensorrt target", path)
    return Artifact(path, target, "int8", "onnx-qdq")


def _report_entry(art: Artifact) -> tuple[dict, dict | None, dict | None, Recipe | None]:
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
            return (entry, validation.get("reference"), validation.get("images"),
                    Recipe.model_validate(recipe) if recipe else None)
    return {}, None, None, None


def bundle_artifact(device: str, path: Path, out_dir: Path, *, images_dir: Path | None = None,
                    threads: int = 0) -> BundleResult:
    """`edgeincep bundle`: the device bundle for one artifact file, with the host's numbers when a report has them."""
    art = _artifact(Path(path), device)
    if art.target != DEVICE_TARGETS[device] and not (device in ("rpi", "coral") and art.target in ("tflite", "edgetpu")):
        raise UserError(f"{device} bundles take {DEVICE_TARGETS[device]} artifacts; this is a {art.target} one", path)
    entry, reference, images, recipe = _report_entry(art)
    if entry.get("gate", {}).get("violations"):
        raise UserError("report.json records this artifact over its drift budget: "
                        + "; ".join(entry["gate"]["violations"]), path)
    if images_dir is not None:
        images = {**(images or {}), "root": str(images_dir)}
    elif images and not Path(images.get("root", "")).is_dir():
        images = {**images, "root": None}  # the validation folder has moved: samples from the default set
    recipe = recipe or Recipe()
    if device == "jetson":
        from edgeincep.bundle.jetson import write_jetson_bundle

        return write_jetson_bundle(art, entry, recipe, out_dir, reference=reference, images=images, threads=threads)
    if art.precision != "int8":
        raise UserError(f"this is a {art.precision} artifact; device bundles carry the INT8 model", path)
    result = write(device, art, entry, recipe, out_dir, reference=reference, images=images, threads=threads)
    assert result is not None  # int8, checked above
    return result
