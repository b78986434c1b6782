"""What the two LiteRT backends (tflite, edgetpu) share: conversion with its cache, the host predictor, metadata.

Every .tflite runs in the LiteRT interpreter (`ai-edge-litert`, the successor of tflite-runtime)
with XNNPACK, as on the device. Models have a static 1 x H x W x 3 input, so a batch is run one
image at a time; an INT8 model's integer input and output are (de)quantized here with the
tensor's own scale and zero point, exactly as a device application must.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from edgeincep.cache import library_versions, recorded_artifact, save_record, stage_key
from edgeincep.core.artifact import Artifact

# The device runner's own (de)quantisation: host validation and a bundle's run.py cannot drift apart.
from edgeincep.device.runner import dequantize, quantize
from edgeincep.fsutil import sha256_file
from edgeincep.litert.convert import LIBS
from edgeincep.litert.rewrite import INT8_EDITS_VERSION
from edgeincep.litert.settings import TfliteSettings

if TYPE_CHECKING:
    from edgeincep.core.settings import RecipeBase
    from edgeincep.quantize.calibration import CalibrationSet



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


def _denylist_names(artifact: Artifact, fp32: Path) -> dict[str, str]:
    """Per module of the FP32 model, the output tensor name of the .tflite operator holding its weights
    (match_tflite_layers): the name the quantizer's denylist takes."""
    from edgeincep.attribution.layers import layers
    from edgeincep.litert.graph import read_graph
    from edgeincep.litert.layers import match_tflite_layers

    graph = read_graph(artifact.path)
    return {m: graph.tensors[graph.ops[i].outputs[0]].name
            for m, i in match_tflite_layers(artifact.path, Path(fp32), layers(Path(fp32))).items()}


class LiteRtBackendMixin:
    """The Backend methods both LiteRT backends implement alike (mixed in before Backend)."""

    name: ClassVar[str]
    suffixes: ClassVar[tuple[str, ...]] = (".tflite",)
    file_format: ClassVar[str] = "tflite"
    libraries: ClassVar[tuple[str, ...]] = LIBS
    # What a backend fixes whatever the recipe says (the Edge TPU: uint8 I/O, its own pooling).
    fixed: ClassVar[dict[str, object]] = {}

    def unavailable_reason(self) -> str | None:
        import importlib.util

        for module, package in (("ai_edge_litert", "ai-edge-litert"), ("tensorflow", "tensorflow"),
                                ("onnx2tf", "onnx2tf"), ("tf_keras", "tf-keras")):
            if importlib.util.find_spec(module) is None:
                return f"{package} is not installed (make install, or pip install -c constraints.txt '.[tflite]')"
        return None

    def _settings(self, recipe: RecipeBase) -> TfliteSettings:
        s = recipe.tflite
        return s.model_copy(update=self.fixed) if self.fixed else s

    def _convert(self, fp32: Path, wanted: list[tuple[str, Path]], s: TfliteSettings,
                 calib: CalibrationSet | None, float_nodes: Sequence[str] = ()) -> list[Artifact]:
        """One artifact per (kind, path): found again from its record, or converted (all misses in one child)."""
        from edgeincep.export.metadata import read_metadata
        from edgeincep.export.onnx import preprocess_from_metadata
        from edgeincep.litert import worker as tflite_worker
        from edgeincep.litert.convert import TfliteConfig

        source = sha256_file(Path(fp32))
        calib_digest = calib.digest if calib is not None else None
        done: dict[Path, Artifact] = {}
        todo = []
        for kind, out in wanted:
            int16 = kind == "int8" and s.activations == "int16"
            cfg = TfliteConfig(kind=kind, io="float32" if int16 else s.io, per_channel=s.per_channel,
                               commute_pools=s.commute_pools, depthwise_pools=s.depthwise_pools and not int16,
                               activations=s.activations if kind == "int8" else "int8",
                               float_nodes=tuple(float_nodes) if kind == "int8" else ())
            key = stage_key(stage=f"{self.name}-{kind}", fp32=source, cfg=cfg.__dict__,
                            calib=calib_digest if kind == "int8" else None, libs=library_versions(LIBS),
                            edits=INT8_EDITS_VERSION if kind == "int8" else None)
            hit = recorded_artifact(out, key)
            if hit is not None:
                done[out] = hit
            else:
                todo.append((cfg, out, key))
        if todo:
            meta = read_metadata(fp32)
            infos = tflite_worker.convert(fp32, [(cfg, out) for cfg, out, _ in todo],
                                          input_size=preprocess_from_metadata(meta, fp32).input_size, metadata=meta,
                                          calib=calib, calib_digest=calib_digest, fp32_sha256=source)
            for (cfg, out, key), info in zip(todo, infos, strict=True):
                fmt = (f"tflite-{'16x8' if cfg.activations == 'int16' else cfg.kind}"
                       + (f"-{cfg.io}-io" if cfg.kind == "int8" else ""))
                art = Artifact(out, self.name, cfg.kind, fmt, meta=info | {"cache_key": key})
                self.after_build(art)
                save_record(art, key)
                done[out] = art
        return [done[out] for _, out in wanted]

    def rank_layers(self, artifact: Artifact, fp32: Path, calib: CalibrationSet, recipe: RecipeBase,
                    x: np.ndarray) -> list[str] | None:
        """The .tflite's weighted operators (by output tensor name, what the quantizer's denylist takes), the one
        whose own quantization noise is largest first: per-layer attribution against the FP32 ONNX on `x`."""
        from edgeincep.attribution.layers import attribute, worst

        record = attribute(Path(fp32), {"int8": (self.name, artifact.path)}, x)
        if "int8" not in record["artifacts"]:
            return []
        tensors = _denylist_names(artifact, fp32)
        return [tensors[m] for m, _ in worst(record, "int8", n=10**6) if m in tensors]

    def layer_modules(self, artifact: Artifact, fp32: Path, names: Sequence[str]) -> dict[str, str]:
        """rank_layers' output tensor names, back to the modules whose weights their operators hold."""
        modules = {t: m for m, t in _denylist_names(artifact, fp32).items()}
        return {n: modules[n] for n in names if n in modules}

    def build_keeping_float(self, fp32: Path, calib: CalibrationSet, recipe: RecipeBase, out_dir: Path,
                            float_nodes: Sequence[str]) -> Artifact:
        return self._convert(fp32, [("int8", self.int8_path(fp32, out_dir))], self._settings(recipe), calib,
                             float_nodes)[0]

    def after_build(self, art: Artifact) -> None:
        """Hook for per-backend checks that belong in the artifact record (the Edge TPU report)."""

    def layer_outputs(self, path: Path, fp32: Path, layers, x):
        from edgeincep.litert.layers import tflite_layer_outputs

        return tflite_layer_outputs(path, fp32, layers, x)

    def import_runtime(self) -> None:
        import ai_edge_litert.interpreter  # noqa: F401

    def metadata(self, artifact: Artifact) -> dict[str, str]:
        from edgeincep.litert.graph import read_metadata

        return read_metadata(artifact.path)

    def stored_precision(self, path: Path) -> str:
        from edgeincep.litert.graph import read_graph, stored_precision

        return stored_precision(read_graph(path))

    def recognise(self, path: Path, device: str | None = None) -> Artifact:
        """A .tflite, for either backend of the format (the Edge TPU claims no suffix: a bare .tflite is LiteRT's)."""
        if Path(path).suffix != ".tflite":
            from edgeincep.core.errors import UserError

            raise UserError(f"{f'a {device} bundle' if device else f'the {self.name} target'} takes an INT8 .tflite",
                            path)
        return Artifact(Path(path), self.name, self.stored_precision(path), self.file_format)

    def bundle_spec(self, artifact: Artifact, device: str, recipe: RecipeBase):
        from edgeincep.litert.bundle import litert_bundle

        return litert_bundle(artifact, device) if artifact.precision == "int8" else None

    def int8_path(self, fp32: Path, out_dir: Path) -> Path:
        return Path(out_dir) / f"{Path(fp32).name.removesuffix('.fp32.onnx')}.{self.name}.int8.tflite"

    def load(self, artifact: Artifact, threads: int = 0) -> LiteRtPredictor:
        return LiteRtPredictor(artifact.path, threads, artifact.name, artifact.precision)
