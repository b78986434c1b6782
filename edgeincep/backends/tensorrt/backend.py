"""TensorRT (Jetson and other NVIDIA GPUs): a ModelOpt Q/DQ INT8 ONNX, validated on CPU, engine built on the device.

What ships and what is measured: the artifact is `<model>.tensorrt.int8.onnx`, ModelOpt's Q/DQ model
with fp16 high precision (weights, scales and non-quantized ops in fp16; graph input and output
stay float32). That very file is what validation runs, on ONNX Runtime's CPU provider with graph
optimisations off (see qdq_cpu_predictor), so the drift in the report is the drift of the shipped
bytes. The CPU reads the fp16 values and computes in fp32 where it has no fp16 kernel, whereas
TensorRT computes the float layers in fp16: the device may differ by fp16 arithmetic rounding, never
by a weight or a scale.

With `keep_fp32_twin` (the default) the same calibration is also written with fp32 high precision
(`<model>.tensorrt.int8.fp32hp.onnx`, kept beside the artifact, not shipped): its agreement with the
fp16 file on the calibration images is recorded at build time, proving that the fp16 rounding of
weights and scales moves no prediction that matters.

Where TensorRT imports and a CUDA GPU answers, `load` builds (once, cached per GPU and TensorRT
version) and runs the real engine instead, so validate and bench measure what the device runs.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from edgeincep.backends.base import Backend
from edgeincep.backends.tensorrt.engine import EngineSettings
from edgeincep.backends.tensorrt.modelopt import (
    LIBS,
    PEER_CALL,
    ModelOptConfig,
    quantize_qdq,
    tensorrt_rule_violations,
)
from edgeincep.backends.tensorrt.modelopt import unavailable_reason as modelopt_unavailable
from edgeincep.backends.tensorrt.settings import TensorRtSettings
from edgeincep.cache import library_versions, recorded_artifact, save_record, stage_key
from edgeincep.core.artifact import Artifact
from edgeincep.core.errors import UserError
from edgeincep.export.metadata import read_metadata
from edgeincep.fsutil import sha256_file
from edgeincep.validate.ort import OrtPredictor

if TYPE_CHECKING:
    from edgeincep.core.bundle import BundleSpec
    from edgeincep.core.settings import RecipeBase
    from edgeincep.quantize.calibration import CalibrationSet

FMT = "onnx-qdq-trt"
TWIN_CHECK_IMAGES = 64


def qdq_cpu_predictor(path: Path, threads: int = 0, name: str | None = None, precision: str = "int8") -> OrtPredictor:
    """The Q/DQ ONNX on ONNX Runtime's CPU provider, with its graph optimisations off.

    Measured on the reference Inception-ResNet-v2 (1000 images): ONNX Runtime 1.31's graph
    optimisations, even the basic level, turn the fp16 Q/DQ file into a graph 10 dB noisier than its
    own values (SQNR vs FP32 14.8 dB optimised; 24.9 dB unoptimised; 24.5 dB for the same file with
    every fp16 value upcast to fp32). Unoptimised, the CPU computes what the file says, which is what
    TensorRT is given; the cost is CPU speed, which is not what this target ships for.
    """
    return OrtPredictor(path, threads, name, precision, optimize=False)


class TensorRtBackend(Backend):
    name = "tensorrt"
    description = "TensorRT (Jetson / NVIDIA GPU): ModelOpt Q/DQ INT8 ONNX, checked on CPU; engine built on the device"
    settings = TensorRtSettings
    bundle_devices = ("jetson",)
    build_memory_gb = 2.5  # ModelOpt and torch in its child
    libraries = (*LIBS, "tensorrt")
    sixteen_bit_activations = ("TensorRT has no 16-bit integer activations: its precision between INT8 and FP32 is "
                               "FP16, which the fallback rung's float layers already use")
    peer = "NVIDIA ModelOpt quantize, defaults (Q/DQ on ONNX Runtime CPU here)"

    def calibration_variants(self, recipe: RecipeBase) -> list[tuple[str, dict]]:
        other = "entropy" if recipe.tensorrt.calibration_method == "max" else "max"
        return [(f"ModelOpt {other} calibration", {"tensorrt": {"calibration_method": other}})]

    def unavailable_reason(self) -> str | None:
        # The Q/DQ build and its CPU validation need only ModelOpt; the engine needs TensorRT + a GPU.
        return modelopt_unavailable()

    def build(self, fp32: Path, calib: CalibrationSet, recipe: RecipeBase, out_dir: Path) -> Artifact:
        return self.build_keeping_float(fp32, calib, recipe, out_dir, ())

    def build_keeping_float(self, fp32: Path, calib: CalibrationSet, recipe: RecipeBase, out_dir: Path,
                            float_nodes: Sequence[str]) -> Artifact:
        s = recipe.tensorrt
        stem = Path(fp32).name.removesuffix(".fp32.onnx")
        out = Path(out_dir) / f"{stem}.tensorrt.int8.onnx"
        twin = out.with_name(f"{stem}.tensorrt.int8.fp32hp.onnx") if _wants_twin(s) else None
        key = stage_key(stage="trt-qdq", fp32=sha256_file(Path(fp32)), cfg=s.model_dump(),
                        calib=calib.digest, float_nodes=sorted(float_nodes),
                        libs=library_versions(LIBS))
        # The sidecar checksums the artifact's own files; the twin, a by-product, only has to be there.
        hit = recorded_artifact(out, key)
        if hit is not None and (twin is None or twin.is_file()):
            return hit
        metadata = read_metadata(fp32)
        cfg = ModelOptConfig(method=s.calibration_method, high_precision_dtype=s.high_precision_dtype,
                             calibrate_per_node=s.calibrate_per_node, exclude_nodes=list(float_nodes))
        info = quantize_qdq(Path(fp32), out, calib, cfg, metadata=metadata, twin=twin)
        broken = tensorrt_rule_violations(out)
        if broken:
            # Never ship a file the device's parser would reject or run off its int8 kernels.
            for path in (out, twin):
                if path is not None:
                    path.unlink(missing_ok=True)
            raise UserError(f"the Q/DQ model breaks TensorRT's quantization rules ({len(broken)}): {broken[0]}")
        stale = out.with_name(f"{stem}.tensorrt.int8.fp32hp.onnx")
        if twin is None and stale.exists():
            stale.unlink()  # a twin from earlier settings would no longer match the artifact
        if twin is not None:
            info["fp32_twin"] = {"path": str(twin), **compare_twins(out, twin, calib.x[:TWIN_CHECK_IMAGES])}
        engine = asdict(EngineSettings.from_recipe(s))
        art = Artifact(out, self.name, "int8", FMT, meta=info | {"engine": engine, "cache_key": key})
        save_record(art, key)
        return art

    def peer_default(self, fp32: Path, calib: CalibrationSet, out_dir: Path) -> Artifact:
        out = Path(out_dir) / f"{Path(fp32).name.removesuffix('.fp32.onnx')}.peer.tensorrt.int8.onnx"
        info = quantize_qdq(Path(fp32), out, calib, ModelOptConfig(defaults=True), metadata=read_metadata(fp32))
        keep = ("convs", "int8_convs", "modelopt_warnings", "seconds", "quantizer_peak_rss_mb")
        return Artifact(out, self.name, "int8", FMT, meta={"peer": PEER_CALL, "calibration_images": len(calib),
                                                           **{k: info[k] for k in keep}})

    def import_runtime(self) -> None:
        import onnxruntime  # noqa: F401

    def load(self, artifact: Artifact, threads: int = 0):
        from edgeincep.backends.tensorrt.engine import TensorRtPredictor, ensure_engine, input_name, unavailable_reason

        if unavailable_reason() is None:
            meta = read_metadata(artifact.path)
            size = int(json.loads(meta["edgeincep.preprocess"])["input_size"])
            s = EngineSettings(**artifact.meta.get("engine", {}))
            engine, _ = ensure_engine(artifact.path, input_name=input_name(artifact.path), input_size=size, s=s)
            return TensorRtPredictor(engine, artifact.name, s.fp16)
        hp = artifact.meta.get("high_precision_dtype", "fp16")
        return qdq_cpu_predictor(artifact.path, threads, artifact.name,
                               f"int8 Q/DQ on ONNX Runtime CPU (no TensorRT engine here), {hp} weights and scales")

    def layer_outputs(self, path: Path, fp32: Path, layers, x):
        from edgeincep.attribution.layers import onnx_layer_outputs

        return onnx_layer_outputs(path, layers, x)

    def layer_fallback_graph(self, artifact: Artifact) -> Path | None:
        return artifact.path

    def stored_precision(self, path: Path) -> str:
        from edgeincep.export.metadata import onnx_stored_precision

        return onnx_stored_precision(path)

    def recognise(self, path: Path, device: str | None = None) -> Artifact:
        """Its files are ONNX, which ONNX Runtime claims when a bare file is looked up by suffix alone."""
        if Path(path).suffix != ".onnx":
            raise UserError(f"{f'a {device} bundle' if device else 'the tensorrt target'} takes the Q/DQ INT8 ONNX "
                            "of the tensorrt target", path)
        return Artifact(Path(path), self.name, self.stored_precision(path), "onnx-qdq")

    def bundle_spec(self, artifact: Artifact, device: str, recipe: RecipeBase) -> BundleSpec | None:
        from edgeincep.backends.tensorrt.bundle import jetson_bundle

        return jetson_bundle(artifact, recipe) if artifact.precision == "int8" else None


def _wants_twin(s: TensorRtSettings) -> bool:
    return s.keep_fp32_twin and s.high_precision_dtype != "fp32"


def compare_twins(shipped: Path, twin: Path, x: np.ndarray) -> dict:
    """How far the fp16-high-precision file is from its fp32 twin, on the same images."""
    a = qdq_cpu_predictor(shipped).predict(x)
    b = qdq_cpu_predictor(twin).predict(x)
    return {"images": len(x), "top1_agreement": float((a.argmax(1) == b.argmax(1)).mean()),
            "max_abs_logit_diff": float(np.abs(a - b).max())}

