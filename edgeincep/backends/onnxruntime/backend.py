"""ONNX Runtime on CPU: INT8 QDQ artifacts (x86 and ARM); its FP32 session is the reference of every run."""
from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from edgeincep.backends.base import Backend
from edgeincep.backends.onnxruntime.settings import OrtSettings
from edgeincep.cache import cached_artifact, library_versions, stage_key
from edgeincep.console import note
from edgeincep.core.artifact import Artifact
from edgeincep.export.metadata import read_metadata
from edgeincep.fsutil import sha256_file
from edgeincep.validate.ort import OrtPredictor

if TYPE_CHECKING:
    from edgeincep.core.artifact import QatArtifacts
    from edgeincep.core.settings import RecipeBase
    from edgeincep.quantize.calibration import CalibrationSet



class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"
    description = "ONNX Runtime, CPU execution provider: INT8 QDQ (U8S8 fuses to QLinearConv on x86)"
    settings = OrtSettings
    suffixes = (".onnx",)
    file_format = "onnx"
    peer = "ONNX Runtime quantize_static, defaults"

    sixteen_bit_activations: ClassVar[dict | str] = {"onnxruntime": {"format": "a16w8"}}

    def calibration_variants(self, recipe: RecipeBase) -> list[tuple[str, dict]]:
        c = recipe.calibration
        wanted = [("entropy (KL) ranges", {"method": "entropy"}),
                  ("percentile 99.99 ranges", {"method": "percentile", "percentile": 99.99}),
                  ("percentile 99.999 ranges", {"method": "percentile", "percentile": 99.999})]
        return [(label, {"calibration": p}) for label, p in wanted
                if not (p["method"] == c.method and p.get("percentile", c.percentile) == c.percentile)]

    def build(self, fp32: Path, calib: CalibrationSet, recipe: RecipeBase, out_dir: Path) -> Artifact:
        return self.build_keeping_float(fp32, calib, recipe, out_dir, ())

    def build_keeping_float(self, fp32: Path, calib: CalibrationSet, recipe: RecipeBase, out_dir: Path,
                            float_nodes: Sequence[str]) -> Artifact:
        from edgeincep.backends.onnxruntime.quantize import OrtQuantConfig, quantize_onnx

        s = recipe.onnxruntime
        cfg = OrtQuantConfig(method=recipe.calibration.method, fmt=s.format, per_channel=s.per_channel,
                             percentile=recipe.calibration.percentile, commute_pools=s.commute_pools,
                             num_bins=recipe.calibration.num_bins, chunk=recipe.calibration.chunk,
                             exclude_nodes=list(float_nodes))
        stem = Path(fp32).name.removesuffix(".fp32.onnx")
        out = Path(out_dir) / f"{stem}.onnxruntime.int8.onnx"
        key = stage_key(stage="ort-int8", fp32=sha256_file(Path(fp32)), cfg=asdict(cfg),
                        calib=calib.digest, libs=library_versions())

        def build() -> Artifact:
            info = quantize_onnx(fp32, out, calib, cfg, metadata=read_metadata(fp32))
            return Artifact(out, self.name, "int8", f"onnx-qdq-{cfg.fmt}", meta=info)

        if cfg.fmt == "u8s8":
            _say_if_saturating()

        return cached_artifact(out, key, build)

    def adopt_qdq(self, qat: QatArtifacts, out_dir: Path) -> Artifact:
        """QAT's uint8-activation, int8-per-channel-weight Q/DQ file is ONNX Runtime's own U8S8 QDQ format: its
        convolutions fuse to QLinearConv as they are; what QAT left in float (adds, concats, pools) runs in float."""
        import shutil

        from edgeincep.fsutil import atomic_path

        out = Path(out_dir) / qat.qdq.name.replace(".qat.qdq.onnx", ".onnxruntime.int8.onnx")
        key = stage_key(stage="ort-qat-qdq", qdq=sha256_file(qat.qdq))

        def adopt() -> Artifact:
            with atomic_path(out) as tmp:
                shutil.copyfile(qat.qdq, tmp)
            return Artifact(out, self.name, "int8", "onnx-qdq-u8s8",
                            meta={"method": "QAT Q/DQ as exported", "qat": qat.record.get("qdq", str(qat.qdq))})

        return cached_artifact(out, key, adopt)

    def peer_default(self, fp32: Path, calib: CalibrationSet, out_dir: Path) -> Artifact:
        from edgeincep.backends.onnxruntime.peer import quantize_static_defaults

        out = Path(out_dir) / f"{Path(fp32).name.removesuffix('.fp32.onnx')}.peer.onnxruntime.int8.onnx"
        info = quantize_static_defaults(fp32, calib, out)
        return Artifact(out, self.name, "int8", "onnx-qdq-s8s8", meta=info)

    def layer_outputs(self, path: Path, fp32: Path, layers, x):
        from edgeincep.attribution.layers import onnx_layer_outputs

        return onnx_layer_outputs(path, layers, x)

    def layer_fallback_graph(self, artifact: Artifact) -> Path | None:
        return artifact.path

    def import_runtime(self) -> None:
        import onnxruntime  # noqa: F401

    def load(self, artifact: Artifact, threads: int = 0) -> OrtPredictor:
        if artifact.fmt == "onnx-qdq-u8s8":
            _say_if_saturating()
        return OrtPredictor(artifact.path, threads, artifact.name, artifact.precision)

    def stored_precision(self, path: Path) -> str:
        from edgeincep.export.metadata import onnx_stored_precision

        return onnx_stored_precision(path)


@functools.cache
def _say_if_saturating() -> None:
    """Once per process: what is measured here on U8S8 is not what a VNNI device will give."""
    from edgeincep.quantize.saturation import SATURATION_NOTE, u8s8_saturates

    if u8s8_saturates():
        note(f"onnxruntime: {SATURATION_NOTE}")
