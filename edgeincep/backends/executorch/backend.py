"""ExecuTorch (PyTorch's on-device runtime) with the XNNPACK delegate: INT8 and FP32 .pte files.

The one backend that does not run an ONNX file: the network is rebuilt in PyTorch from the verified FP32
ONNX's weights (convert.module_from_onnx), quantized with PT2E and the XNNPACK quantizer on the shared
calibration set, and lowered to XNNPACK. Validation runs the .pte on ExecuTorch's Python runtime; the
Raspberry Pi bundle runs it with the runtime's C++ libraries alone (bundle.py, runner_build.py).
"""
from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from edgeincep.backends.base import Backend
from edgeincep.backends.executorch.settings import ExecuTorchSettings
from edgeincep.cache import cached_artifact, library_versions, stage_key
from edgeincep.core.artifact import Artifact
from edgeincep.core.errors import UserError
from edgeincep.export.metadata import read_metadata
from edgeincep.fsutil import atomic_path, sha256_file

if TYPE_CHECKING:
    import numpy as np

    from edgeincep.backends.executorch.predictor import ExecuTorchPredictor
    from edgeincep.core.bundle import BundleSpec
    from edgeincep.core.settings import RecipeBase
    from edgeincep.quantize.calibration import CalibrationSet

# Images the rebuilt network is checked on against ONNX Runtime before anything is quantized.
CHECK_IMAGES = 4


class ExecuTorchBackend(Backend):
    name = "executorch"
    description = "ExecuTorch with the XNNPACK delegate (ARM and x86 CPUs): PT2E INT8 .pte straight from PyTorch"
    settings = ExecuTorchSettings
    suffixes = (".pte",)
    file_format = "pte"
    libraries = ("executorch", "torchao")
    bundle_devices = ("rpi",)
    build_memory_gb = 2.5  # torch.export, PT2E and lowering
    sixteen_bit_activations = "XNNPACK's quantized kernels take 8-bit activations only"

    def unavailable_reason(self) -> str | None:
        from edgeincep.backends.executorch.quiet import quiet_python

        try:
            with quiet_python():
                import executorch.exir
                import executorch.runtime  # noqa: F401
        except Exception as e:  # noqa: BLE001 - a missing package or a libtorch it was not built against
            return f"ExecuTorch does not import here ({type(e).__name__}: {str(e)[:160]}); pip install '.[executorch]'"
        return None

    def import_runtime(self) -> None:
        import executorch.runtime  # noqa: F401

    # --- building ---------------------------------------------------------------------------------------

    def build(self, fp32: Path, calib: CalibrationSet, recipe: RecipeBase, out_dir: Path) -> Artifact:
        return self.build_keeping_float(fp32, calib, recipe, out_dir, ())

    def build_keeping_float(self, fp32: Path, calib: CalibrationSet, recipe: RecipeBase, out_dir: Path,
                            float_nodes: Sequence[str]) -> Artifact:
        """The INT8 .pte; `float_nodes` are PyTorch module paths the quantizer leaves in float."""
        s: ExecuTorchSettings = recipe.executorch
        out = Path(out_dir) / f"{_stem(fp32)}.executorch.int8.pte"
        key = stage_key(stage="executorch-int8", fp32=sha256_file(Path(fp32)), settings=s.model_dump(),
                        calib=calib.digest, float_modules=sorted(float_nodes),
                        libs=library_versions(self.libraries))

        def build() -> Artifact:
            import torch

            from edgeincep.backends.executorch.convert import lower, module_from_onnx, output_quantization, quantize
            from edgeincep.backends.executorch.quiet import quiet_python

            t0 = time.perf_counter()
            model = module_from_onnx(fp32, calib.x[:CHECK_IMAGES])
            example = torch.from_numpy(calib.x[:1].copy())
            with quiet_python():
                converted = quantize(model, example, calib.x, per_channel=s.per_channel, batch=s.calibration_batch,
                                     float_modules=float_nodes)
                t1 = time.perf_counter()
                program, delegation = lower(converted, example)
            _write(out, program)
            return Artifact(out, self.name, "int8", "pte-xnnpack", meta={
                "edgeincep": read_metadata(fp32), "delegation": delegation, "output_quantization": output_quantization(converted),
                "float_modules": list(float_nodes), "per_channel": s.per_channel, "calibration_images": len(calib),
                "seconds": {"quantize": round(t1 - t0, 2), "lower": round(time.perf_counter() - t1, 2)}})

        return cached_artifact(out, key, build)

    def references(self, fp32: Path, recipe: RecipeBase, out_dir: Path) -> list[Artifact]:
        if "fp32" not in recipe.executorch.references:
            return []
        out = Path(out_dir) / f"{_stem(fp32)}.executorch.fp32.pte"
        key = stage_key(stage="executorch-fp32", fp32=sha256_file(Path(fp32)), libs=library_versions(self.libraries))

        def build() -> Artifact:
            import numpy as np
            import torch

            from edgeincep.backends.executorch.convert import lower, module_from_onnx
            from edgeincep.backends.executorch.quiet import quiet_python
            from edgeincep.export.onnx import preprocess_from_metadata

            meta = read_metadata(fp32)
            size = preprocess_from_metadata(meta, fp32).input_size
            x = np.random.default_rng(0).standard_normal((CHECK_IMAGES, 3, size, size)).astype(np.float32)
            t0 = time.perf_counter()
            with quiet_python():
                program, delegation = lower(module_from_onnx(fp32, x), torch.from_numpy(x[:1].copy()))
            _write(out, program)
            return Artifact(out, self.name, "fp32", "pte-xnnpack", meta={
                "edgeincep": meta, "delegation": delegation, "seconds": {"lower": round(time.perf_counter() - t0, 2)}})

        return [cached_artifact(out, key, build)]

    def rank_layers(self, artifact: Artifact, fp32: Path, calib: CalibrationSet, recipe: RecipeBase,
                    x: np.ndarray) -> list[str] | None:
        """PyTorch module paths, most damaged by INT8 first, measured on the PT2E graph the .pte was lowered from."""
        import torch

        from edgeincep.backends.executorch.convert import module_from_onnx, quantize
        from edgeincep.backends.executorch.quiet import quiet_python
        from edgeincep.backends.executorch.sensitivity import rank_modules

        s: ExecuTorchSettings = recipe.executorch
        model = module_from_onnx(fp32, calib.x[:CHECK_IMAGES])
        with quiet_python():
            converted = quantize(model, torch.from_numpy(calib.x[:1].copy()), calib.x, per_channel=s.per_channel,
                                 batch=s.calibration_batch)
            return [path for path, _ in rank_modules(converted, x)]

    def layer_modules(self, artifact: Artifact, fp32: Path, names: Sequence[str]) -> dict[str, str]:
        return {n: n for n in names}  # rank_layers names modules already

    # --- running ----------------------------------------------------------------------------------------

    def load(self, artifact: Artifact, threads: int = 0) -> ExecuTorchPredictor:
        from edgeincep.backends.executorch.predictor import ExecuTorchPredictor

        try:
            return ExecuTorchPredictor(artifact.path, threads, artifact.name, artifact.precision,
                                       artifact.meta.get("delegation"))
        except RuntimeError as e:
            raise UserError(f"ExecuTorch cannot load it ({str(e).splitlines()[0][:200]})", artifact.path) from None

    def metadata(self, artifact: Artifact) -> dict[str, str]:
        """A .pte carries no free-form metadata: the edgeincep.* facts live in the record beside it."""
        meta = artifact.meta.get("edgeincep")
        if not meta:
            raise UserError("no edgeincep metadata in the record beside this .pte (built outside edgeincep?)",
                            artifact.path)
        return meta

    def stored_precision(self, path: Path) -> str:
        from edgeincep.core.artifact import sidecar_path

        record = sidecar_path(path)
        if record.is_file():
            return Artifact.from_sidecar(record).precision
        raise UserError("a .pte's precision is read from the record its build wrote beside it, and there is none",
                        path)

    def bundle_spec(self, artifact: Artifact, device: str, recipe: RecipeBase) -> BundleSpec | None:
        if artifact.precision != "int8":
            return None
        from edgeincep.backends.executorch.bundle import executorch_bundle

        return executorch_bundle(artifact, device)


def _stem(fp32: Path) -> str:
    return Path(fp32).name.removesuffix(".fp32.onnx")


def _write(out: Path, program: bytes) -> None:
    with atomic_path(out) as tmp:
        tmp.write_bytes(program)
