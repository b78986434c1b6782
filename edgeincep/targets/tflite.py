"""TFLite / LiteRT for ARM CPUs (Raspberry Pi): full-integer INT8 .tflite, FP32 and FP16 beside it.

Every .tflite runs in the LiteRT interpreter (`ai-edge-litert`, the successor of tflite-runtime)
with XNNPACK, as on the device. Models have a static 1 x H x W x 3 input, so a batch is run one
image at a time; an INT8 model's integer input and output are (de)quantized here with the
tensor's own scale and zero point, exactly as a device application must.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import numpy as np

# The device runner's own (de)quantisation: host validation and a bundle's run.py cannot drift apart.
from edgeincep.bundle.runner import dequantize, quantize
from edgeincep.fsutil import sha256_file
from edgeincep.pipeline.cache import files_digest, library_versions, lookup, stage_key
from edgeincep.quantize.tflite_rewrite import INT8_EDITS_VERSION
from edgeincep.recipes import Recipe, TfliteSettings
from edgeincep.targets.base import Artifact, Target, register_target

if TYPE_CHECKING:
    from edgeincep.quantize.calibration import CalibrationSet

LIBS = ("tensorflow", "tf-keras", "onnx2tf", "ai-edge-litert")


class LiteRtPredictor:
    """A .tflite file, or a flatbuffer in memory (`model` as bytes), on LiteRT's CPU."""

    def __init__(self, model: Path | bytes, threads: int = 0, name: str | None = None, precision: str = "fp32"):
        from ai_edge_litert.interpreter import Interpreter

        source = {"model_content": model} if isinstance(model, bytes) else {"model_path": str(model)}
        # XNNPACK is LiteRT's default CPU delegate; num_threads None lets it pick, as on a device.
        self.interpreter = Interpreter(**source, num_threads=threads or None)
        self.interpreter.allocate_tensors()
        self.input = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]
        self.name = name or ("<flatbuffer>" if isinstance(model, bytes) else Path(model).name)
        self.executed_precision = _executed(precision, self.input["dtype"])

    def predict(self, x: np.ndarray) -> np.ndarray:
        nhwc = np.ascontiguousarray(np.asarray(x, dtype=np.float32).transpose(0, 2, 3, 1))
        return np.concatenate([self._one(nhwc[i:i + 1]) for i in range(len(nhwc))])

    def _one(self, image: np.ndarray) -> np.ndarray:
        it = self.interpreter
        it.set_tensor(self.input["index"], quantize(image, self.input))
        it.invoke()
        return dequantize(it.get_tensor(self.output["index"]), self.output)


def _executed(stored: str, input_dtype) -> str:
    # XNNPACK runs FP16-stored weights after converting them to FP32 on load (unless forced to
    # fp16 inference on ARMv8.2 cores), so "fp16" files compute in fp32 here.
    if stored == "int8":
        return f"int8 (XNNPACK QS8, {np.dtype(input_dtype).name} I/O)"
    if stored == "fp16":
        return "fp32 (fp16 weights, XNNPACK)"
    return "fp32 (XNNPACK)"


class TfliteBuilder(Target):
    """What the TFLite and Edge TPU targets share: conversion with caching, loading, metadata."""

    # What a target fixes whatever the recipe says (the Edge TPU: uint8 I/O, its own pooling).
    fixed: ClassVar[dict[str, object]] = {}

    def unavailable_reason(self) -> str | None:
        import importlib.util

        for module, package in (("ai_edge_litert", "ai-edge-litert"), ("tensorflow", "tensorflow"),
                                ("onnx2tf", "onnx2tf"), ("tf_keras", "tf-keras")):
            if importlib.util.find_spec(module) is None:
                return f"{package} is not installed (make install, or pip install -c constraints.txt '.[tflite]')"
        return None

    def _settings(self, recipe: Recipe) -> TfliteSettings:
        s = recipe.tflite
        return s.model_copy(update=self.fixed) if self.fixed else s

    def _convert(self, fp32: Path, wanted: list[tuple[str, Path]], s: TfliteSettings,
                 calib: CalibrationSet | None) -> list[Artifact]:
        """One artifact per (kind, path): found again from its record, or converted (all misses in one child)."""
        from edgeincep.export.metadata import read_metadata
        from edgeincep.export.onnx import preprocess_from_metadata
        from edgeincep.quantize import tflite_worker
        from edgeincep.quantize.tflite import TfliteConfig

        source = sha256_file(Path(fp32))
        calib_digest = files_digest(calib.paths) if calib is not None else None
        done: dict[Path, Artifact] = {}
        todo = []
        for kind, out in wanted:
            cfg = TfliteConfig(kind=kind, io=s.io, per_channel=s.per_channel, commute_pools=s.commute_pools,
                               depthwise_pools=s.depthwise_pools)
            key = stage_key(stage=f"{self.name}-{kind}", fp32=source, cfg=cfg.__dict__,
                            calib=calib_digest if kind == "int8" else None, libs=library_versions(LIBS),
                            edits=INT8_EDITS_VERSION if kind == "int8" else None)
            hit = lookup(out.with_name(out.name + ".json"), key, [out])
            if hit:
                done[out] = Artifact(out, self.name, hit["precision"], hit["fmt"], meta=hit["meta"] | {"cached": True})
            else:
                todo.append((cfg, out, key))
        if todo:
            meta = read_metadata(fp32)
            infos = tflite_worker.convert(fp32, [(cfg, out) for cfg, out, _ in todo],
                                          input_size=preprocess_from_metadata(meta, fp32).input_size, metadata=meta,
                                          calib=calib, calib_digest=calib_digest, fp32_sha256=source)
            for (cfg, out, key), info in zip(todo, infos, strict=True):
                fmt = f"tflite-{cfg.kind}" + (f"-{cfg.io}-io" if cfg.kind == "int8" else "")
                art = Artifact(out, self.name, cfg.kind, fmt, meta=info | {"cache_key": key})
                self.after_build(art)
                art.save_sidecar(cache_key=key)
                done[out] = art
        return [done[out] for _, out in wanted]

    def after_build(self, art: Artifact) -> None:
        """Hook for per-target checks that belong in the artifact record (the Edge TPU report)."""

    def import_runtime(self) -> None:
        import ai_edge_litert.interpreter  # noqa: F401

    def metadata(self, artifact: Artifact) -> dict[str, str]:
        from edgeincep.targets.tflite_graph import read_metadata

        return read_metadata(artifact.path)

    def load(self, artifact: Artifact, threads: int = 0) -> LiteRtPredictor:
        return LiteRtPredictor(artifact.path, threads, artifact.name, artifact.precision)


@register_target
class TfliteTarget(TfliteBuilder):
    name = "tflite"
    description = "TFLite/LiteRT with XNNPACK (ARM CPUs, Raspberry Pi): full-integer INT8, FP32 and FP16"

    def references(self, fp32: Path, recipe: Recipe, out_dir: Path) -> list[Artifact]:
        """The float .tflite files, validated beside INT8: FP32 proves the conversion itself is exact."""
        s = self._settings(recipe)
        stem = Path(fp32).name.removesuffix(".fp32.onnx")
        return self._convert(fp32, [(kind, Path(out_dir) / f"{stem}.tflite.{kind}.tflite")
                                    for kind in dict.fromkeys(s.references)], s, None)

    def build(self, fp32: Path, calib: CalibrationSet, recipe: Recipe, out_dir: Path,
              float_nodes: list[str] | None = None) -> Artifact:
        stem = Path(fp32).name.removesuffix(".fp32.onnx")
        return self._convert(fp32, [("int8", Path(out_dir) / f"{stem}.{self.name}.int8.tflite")],
                             self._settings(recipe), calib)[0]

    def bundle(self, artifact: Artifact, entry: dict, recipe: Recipe, out_dir: Path, **kw) -> dict | None:
        from edgeincep.bundle.devices import TARGET_DEVICE, write

        res = write(TARGET_DEVICE[self.name], artifact, entry, recipe, out_dir, **kw)  # None: float references
        return res.to_dict() if res is not None else None
