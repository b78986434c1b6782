"""ONNX Runtime on CPU: FP32 reference runner and INT8 QDQ artifacts (x86 and ARM)."""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from edgeincep.export.metadata import read_metadata
from edgeincep.fsutil import sha256_file
from edgeincep.pipeline.cache import files_digest, library_versions, lookup, stage_key
from edgeincep.recipes import Recipe
from edgeincep.targets.base import Artifact, Target, register_target

if TYPE_CHECKING:
    from edgeincep.quantize.calibration import CalibrationSet


class OrtPredictor:
    def __init__(self, path: Path, threads: int = 0, name: str | None = None, precision: str = "fp32"):
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            so.intra_op_num_threads = threads
        # Idle ORT workers otherwise spin for a while after each run, taking the cores from whatever
        # runs next: measured here, OpenVINO's FP32 IR went from 63 to 83 ms when interleaved with
        # spinning ORT sessions. On a device the spin burns the same cores the rest of the app needs.
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        self.name = name or Path(path).name
        self.executed_precision = precision

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: np.ascontiguousarray(x, dtype=np.float32)})[0]


@register_target
class OnnxRuntimeTarget(Target):
    name = "onnxruntime"
    description = "ONNX Runtime, CPU execution provider: INT8 QDQ (U8S8 fuses to QLinearConv on x86)"

    def build(self, fp32: Path, calib: CalibrationSet, recipe: Recipe, out_dir: Path,
              float_nodes: list[str] | None = None) -> Artifact:
        from edgeincep.quantize.onnxruntime import OrtQuantConfig, quantize_onnx

        cfg = OrtQuantConfig(method=recipe.calibration.method, fmt=recipe.onnxruntime.format,
                             per_channel=recipe.onnxruntime.per_channel, percentile=recipe.calibration.percentile,
                             commute_pools=recipe.onnxruntime.commute_pools,
                             num_bins=recipe.calibration.num_bins, chunk=recipe.calibration.chunk,
                             exclude_nodes=list(float_nodes or []))
        stem = Path(fp32).name.removesuffix(".fp32.onnx")
        out = Path(out_dir) / f"{stem}.onnxruntime.int8.onnx"
        key = stage_key(stage="ort-int8", fp32=sha256_file(Path(fp32)), cfg=asdict(cfg),
                        calib=files_digest(calib.paths), libs=library_versions())
        hit = lookup(out.with_name(out.name + ".json"), key, [out])
        if hit:
            return Artifact(out, self.name, "int8", hit["fmt"], meta=hit["meta"] | {"cached": True})
        info = quantize_onnx(fp32, out, calib, cfg, metadata=read_metadata(fp32))
        art = Artifact(out, self.name, "int8", f"onnx-qdq-{cfg.fmt}", meta=info | {"cache_key": key})
        art.save_sidecar(cache_key=key)
        return art

    def import_runtime(self) -> None:
        import onnxruntime  # noqa: F401

    def load(self, artifact: Artifact, threads: int = 0) -> OrtPredictor:
        return OrtPredictor(artifact.path, threads, artifact.name, artifact.precision)


def fp32_artifact(onnx_path: Path) -> Artifact:
    return Artifact(Path(onnx_path), "onnxruntime", "fp32", "onnx")
