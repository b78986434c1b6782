"""The tests mirror the package: `edgeincep/x/y.py` is tested in `tests/x/test_y.py`, so the behaviour of a module
is found where its name says. The modules that have no such file yet are listed here; the list may only shrink
(a module that gains its test file must leave it, a new module must come with its test)."""
from __future__ import annotations

from pathlib import Path

PACKAGE = Path(__file__).parents[1] / "edgeincep"
TESTS = Path(__file__).parent

# Tested elsewhere today (through the pipeline, the CLI or a backend's tests), not yet in a mirrored file.
NOT_YET_MIRRORED = {
    "attribution.names", "backends.base", "backends.edgetpu.compat", "backends.executorch.bundle",
    "backends.executorch.convert", "backends.executorch.device_run", "backends.executorch.predictor",
    "backends.executorch.quiet", "backends.executorch.runner_build", "backends.executorch.sensitivity",
    "backends.executorch.settings", "backends.onnxruntime.backend", "backends.onnxruntime.peer",
    "backends.onnxruntime.settings", "backends.openvino.bundle", "backends.openvino.settings",
    "backends.tensorrt.engine", "backends.tensorrt.settings", "backends.tflite.peer", "bench.latency",
    "bench.machine", "bench.probe", "bundle.emulate", "bundle.samples", "console", "core.artifact",
    "core.bundle", "core.errors", "core.predictor", "core.preprocess", "core.settings", "data.fashion_mnist",
    "deploy.remote", "deploy.report", "device.jetson_run", "device.pins", "device.runner", "escalation.base",
    "escalation.rungs", "export.fold", "export.metadata", "fleet.ray_boards", "fsutil", "litert.base",
    "litert.bundle", "litert.convert", "litert.graph", "litert.layers", "litert.rewrite", "litert.settings",
    "litert.worker", "model_card", "models.inception_resnet", "models.inception_resnet_v1",
    "models.inception_resnet_v2", "models.inception_v4", "models.layers", "models.registry", "models.stats",
    "models.synthetic", "paths", "pipeline.bundle_stage", "pipeline.calibration_stage",
    "pipeline.escalation_stage", "pipeline.export_stage", "pipeline.model_source", "pipeline.qat_stage",
    "pipeline.validate_stage", "ray_runtime", "registry", "report.attribution", "report.bench",
    "report.escalation", "report.fleet", "report.html", "report.plots", "report.summary", "report.sweep",
    "sweep.execute", "sweep.pareto", "sweep.trial", "training_data", "validate.drift",
    "validate.ort", "validate.runner", "validate.sensitivity", "yamlfile",
}


def modules() -> dict[str, Path]:
    """Every module of the package by dotted name (below `edgeincep`), with the test file that mirrors it."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name in ("__init__.py", "__main__.py"):
            continue
        rel = path.relative_to(PACKAGE)
        out[".".join(rel.with_suffix("").parts)] = TESTS / rel.parent / f"test_{rel.name}"
    return out


def test_every_module_has_its_mirrored_test_file_or_is_listed_as_still_lacking_one():
    lacking = {name for name, test in modules().items() if not test.is_file()}
    assert not lacking - NOT_YET_MIRRORED, "new modules without tests/<path>/test_<module>.py"
    assert not NOT_YET_MIRRORED - lacking, "listed as lacking a test file, but it has one (or is gone): drop it"



def test_test_files_that_share_a_name_sit_in_packages():
    """Mirroring gives folders files of one name (`pipeline/test_run.py`, `sweep/test_run.py`); pytest imports a file
    outside a package by its bare name, so two such files of one name stop the whole run at collection."""
    by_name: dict[str, list[Path]] = {}
    for path in TESTS.rglob("test_*.py"):
        if not (path.parent / "__init__.py").is_file():  # imported by its bare name: it must be the only one
            by_name.setdefault(path.name, []).append(path)
    clashes = sorted(str(p.relative_to(TESTS)) for paths in by_name.values() if len(paths) > 1 for p in paths)
    assert clashes == [], f"one name outside a package, more than once; add __init__.py beside them: {clashes}"
