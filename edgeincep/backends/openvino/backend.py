"""OpenVINO on Intel CPUs: the FP32 IR run in true f32, and an NNCF INT8 IR.

Trap: on CPUs with AVX512-BF16 or AMX the CPU plugin runs float ops in bf16 unless told
otherwise, so an "FP32" IR silently loses precision. Every compile here sets the inference
precision hint from the recipe (f32 by default), and each predictor reports the precision the
plugin actually executed: the hint it accepted and how many convolutions run in int8.
"""
from __future__ import annotations

import json
import logging
import math
import os
import re
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from edgeincep.backends.base import Backend
from edgeincep.backends.openvino.settings import OpenVinoSettings
from edgeincep.cache import cached_artifact, library_versions, stage_key
from edgeincep.core.artifact import Artifact
from edgeincep.core.errors import OutOfTime, OutputError, UserError
from edgeincep.export.metadata import read_metadata
from edgeincep.fsutil import sha256_file

if TYPE_CHECKING:
    from edgeincep.attribution.layers import Layer
    from edgeincep.core.bundle import BundleSpec
    from edgeincep.core.settings import RecipeBase
    from edgeincep.quantize.calibration import CalibrationSet

LIBS = ("openvino", "nncf")
PEER_CALL = "nncf.quantize(ov.convert_model(onnx), nncf.Dataset(images)) with its defaults; ov.save_model defaults"


def _ov():
    import openvino as ov

    return ov


class OpenVinoPredictor:
    def __init__(self, path: Path, threads: int = 0, name: str | None = None, precision: str = "fp32",
                 hint: str = "latency", inference_precision: str = "f32"):
        ov = _ov()
        import openvino.properties as props
        import openvino.properties.hint as hints

        core = ov.Core()
        mode = hints.PerformanceMode.LATENCY if hint == "latency" else hints.PerformanceMode.THROUGHPUT
        config = {hints.inference_precision: getattr(ov.Type, inference_precision), hints.performance_mode: mode}
        if threads:
            config[props.inference_num_threads] = threads
        try:
            model = core.read_model(str(path))
        except RuntimeError as e:  # a parser error: its C++ locations first, the problem on the last line
            problem = (str(e).strip().splitlines() or ["unknown problem"])[-1].strip()[:150]
            raise UserError(f"not a readable OpenVINO IR ({problem})", path) from None
        self.compiled = core.compile_model(model, "CPU", config)
        self.request = self.compiled.create_infer_request()
        self.output = self.compiled.output(0)
        self.name = name or Path(path).name
        self.executed_precision = executed_precision(self.compiled, precision)

    def predict(self, x: np.ndarray) -> np.ndarray:
        res = self.request.infer({0: np.ascontiguousarray(x, dtype=np.float32)})
        return np.array(res[self.output])  # the request reuses its output buffer


def throughput_hint_rate(path: Path, threads: int, image: np.ndarray, seconds: float,
                         inference_precision: str = "f32") -> dict:
    """Images/s with the THROUGHPUT hint: the plugin picks its streams and the number of requests that keeps
    them busy; that many single-image requests are kept in flight for `seconds`."""
    import time

    import openvino.properties as props
    import openvino.properties.hint as hints
    import openvino.properties.streams as streams

    ov = _ov()
    config = {hints.inference_precision: getattr(ov.Type, inference_precision),
              hints.performance_mode: hints.PerformanceMode.THROUGHPUT}
    if threads:
        config[props.inference_num_threads] = threads
    compiled = ov.Core().compile_model(str(path), "CPU", config)
    n = int(compiled.get_property(props.optimal_number_of_infer_requests))
    queue = ov.AsyncInferQueue(compiled, n)
    x = {0: np.ascontiguousarray(image, dtype=np.float32)}
    for _ in range(n):
        queue.start_async(x)
    queue.wait_all()
    # start_async waits for an idle request, so the streams never wait on the loop, nor the loop on a batch.
    done, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        queue.start_async(x)
        done += 1
    queue.wait_all()
    elapsed = time.perf_counter() - t0
    return {"mode": "OpenVINO THROUGHPUT hint", "streams": int(compiled.get_property(streams.num)), "requests": n,
            "images": done, "images_per_s": done / elapsed}


def layer_outputs(xml: Path, ls: list[Layer], x: np.ndarray) -> dict[str, tuple[str, np.ndarray]]:
    """Per module: the output of the IR op that kept the layer's ONNX name (OpenVINO's frontend names the op that
    ends a Conv, its bias Add, after the ONNX node, with the ONNX output tensor's name), on the CPU plugin in f32."""
    import openvino as ov
    import openvino.properties.hint as hints

    core = ov.Core()
    model = core.read_model(str(xml))
    ops = {op.get_friendly_name(): op for op in model.get_ordered_ops()}
    wanted = {}
    for layer in ls:
        op = ops.get(layer.node)
        if op is not None:
            names = sorted(op.output(0).get_names())
            if names:
                wanted[layer.module] = names[0]
    ports = model.add_outputs(list(wanted.values())) if wanted else []
    compiled = core.compile_model(model, "CPU", {hints.inference_precision: ov.Type.f32})
    request = compiled.create_infer_request()
    got: dict[str, list[np.ndarray]] = {m: [] for m in wanted}
    outs = [compiled.output(port.any_name) for port in ports]
    for i in range(len(x)):
        res = request.infer({0: x[i:i + 1]})
        for m, out in zip(wanted, outs, strict=True):
            got[m].append(np.array(res[out]))
    return {m: (wanted[m], np.concatenate(v)) for m, v in got.items()}


def executed_precision(compiled, stored: str) -> str:
    """What the CPU plugin really runs: its float precision, and int8 convolutions if any."""
    import openvino.properties.hint as hints

    float_type = compiled.get_property(hints.inference_precision).get_type_name()
    convs = [op.get_rt_info() for op in compiled.get_runtime_model().get_ordered_ops()
             if op.get_rt_info()["layerType"].astype(str) == "Convolution"]
    int8 = sum(1 for rt in convs if rt["runtimePrecision"].astype(str).lower() in ("i8", "u8"))
    if stored == "int8" or int8:
        return f"int8 ({int8}/{len(convs)} conv), float ops {float_type}"
    return float_type


def _convert(fp32: Path):
    """ONNX -> ov.Model, carrying labels and preprocessing into rt_info."""
    ov = _ov()
    model = ov.convert_model(str(fp32))
    for key, value in read_metadata(fp32).items():
        model.set_rt_info(str(value), ["edgeincep", key.removeprefix("edgeincep.")])
    return model


def _save(model, out: Path, compress_fp16: bool) -> None:
    """Write .xml + .bin under temporary names, then rename both: never a half-written IR."""
    ov = _ov()
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp_dir = Path(tempfile.mkdtemp(prefix=".ov-", dir=out.parent))
    except OSError as e:
        raise OutputError(f"cannot create the output folder ({e.strerror or e})", out.parent) from None
    try:
        tmp = tmp_dir / out.name
        ov.save_model(model, str(tmp), compress_to_fp16=compress_fp16)
        os.replace(tmp.with_suffix(".bin"), out.with_suffix(".bin"))
        os.replace(tmp, out)
    except OSError as e:
        raise OutputError(f"cannot write the OpenVINO IR ({e.strerror or e})", out) from None
    except RuntimeError as e:
        # OpenVINO reports a full disk as a bare C++ stream error; the free space says what happened.
        free_kb = shutil.disk_usage(out.parent).free // 1024
        raise OutputError(f"cannot write the OpenVINO IR ({' '.join(str(e).split())[:150]}; {free_kb} KB free)",
                          out) from None
    finally:
        for p in tmp_dir.glob("*"):
            p.unlink()
        tmp_dir.rmdir()


def read_rt_info(xml: Path) -> dict[str, str]:
    model = _ov().Core().read_model(str(xml))
    info = model.get_rt_info()
    section = info["edgeincep"] if "edgeincep" in info else {}  # noqa: SIM401 - RTMap has no get()
    return {k: v.astype(str) for k, v in section.items()}


def _dataset(calib: CalibrationSet, labels: np.ndarray | None = None):
    import nncf

    if labels is None:
        return nncf.Dataset([calib.x[i:i + 1] for i in range(len(calib))])
    items = [(calib.x[i:i + 1], int(labels[i])) for i in range(len(calib))]
    return nncf.Dataset(items, lambda item: item[0])


def activation_mb_per_image(fp32: Path) -> float:
    """Every intermediate float32 tensor of one image, summed, from ONNX shape inference."""
    import math

    import onnx

    model = onnx.shape_inference.infer_shapes(onnx.load(str(fp32)))
    total = 0
    for vi in model.graph.value_info:
        total += math.prod(d.dim_value if d.dim_value > 0 else 1 for d in vi.type.tensor_type.shape.dim)
    return total * 4 / 2**20


def fast_bias_correction(s: OpenVinoSettings, fp32: Path, n_calib: int) -> tuple[bool, str]:
    """Resolve the recipe's choice; "auto" estimates what full bias correction would hold in memory."""
    if s.fast_bias_correction != "auto":
        return bool(s.fast_bias_correction), "set by the recipe"
    samples = max(int(n_calib * 0.2), 1)  # NNCF's full bias correction uses 20% of subset_size
    need = activation_mb_per_image(fp32) * samples
    if need <= s.bias_correction_memory_mb:
        return False, f"auto: full ({need:,.0f} MB of activations for {samples} images fits {s.bias_correction_memory_mb} MB)"
    return True, f"auto: fast (full would hold ~{need:,.0f} MB of activations, over {s.bias_correction_memory_mb} MB)"


def _advanced(s: OpenVinoSettings):
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters
    from nncf.quantization.range_estimator import RangeEstimatorParametersSet

    ranges = {"minmax": RangeEstimatorParametersSet.MINMAX, "mean_minmax": RangeEstimatorParametersSet.MEAN_MINMAX}
    return AdvancedQuantizationParameters(activations_range_estimator_params=ranges[s.activation_ranges])


class _RevertedLog(logging.Handler):
    """NNCF reports reverted layers only in its log: 'N out of M were reverted ...:\\n\\tname ...'."""

    def __init__(self):
        super().__init__(logging.INFO)
        self.reverted: list[str] = []
        self.quantized_ops: int | None = None

    def emit(self, record: logging.LogRecord) -> None:
        msg = record.getMessage()
        m = re.match(r"(\d+) out of (\d+) were reverted back to the floating-point precision:", msg)
        if m:
            self.quantized_ops = int(m.group(2))
            self.reverted = [line.strip() for line in msg.splitlines()[1:] if line.strip()]


class OpenVinoBackend(Backend):
    name = "openvino"
    description = "OpenVINO CPU plugin (Intel): FP32 IR in true f32, NNCF INT8 IR, accuracy control"
    settings = OpenVinoSettings
    suffixes = (".xml",)
    file_format = "openvino-ir"
    bundle_devices = ("intel",)
    build_memory_gb = 2.0  # NNCF's statistics
    libraries = LIBS
    peer = "NNCF nncf.quantize, defaults"
    sixteen_bit_activations = ("OpenVINO's CPU plugin has no 16-bit integer kernels: a FakeQuantize of more than 256 "
                               "levels executes in float")

    def unavailable_reason(self) -> str | None:
        try:
            import nncf  # noqa: F401
            import openvino  # noqa: F401
        except ImportError as e:
            return f"{e.name} is not installed (pip install -c constraints.txt '.[openvino]')"
        return None

    def _artifact(self, out: Path, precision: str, fmt: str, s: OpenVinoSettings, meta: dict) -> Artifact:
        return Artifact(out, self.name, precision, fmt, meta={"performance_hint": s.performance_hint,
                                                              "inference_precision": s.inference_precision, **meta})

    def _cached(self, out: Path, key: str, build) -> Artifact:
        return cached_artifact(out, key, build, [out, out.with_suffix(".bin")])

    def references(self, fp32: Path, recipe: RecipeBase, out_dir: Path) -> list[Artifact]:
        """The runtime's own float IRs, validated beside the INT8 one: FP32 (always), FP16 weights (if asked)."""
        s = recipe.openvino
        stem = Path(fp32).name.removesuffix(".fp32.onnx")
        arts = []
        for precision, fp16 in [("fp32", False), *([("fp16", True)] if s.compress_fp16 else [])]:
            out = Path(out_dir) / f"{stem}.openvino.{precision}.xml"
            key = stage_key(stage=f"ov-{precision}", fp32=sha256_file(Path(fp32)), libs=library_versions(LIBS))

            def build(out=out, precision=precision, fp16=fp16):
                _save(_convert(fp32), out, compress_fp16=fp16)
                return self._artifact(out, precision, f"openvino-ir-{precision}", s, {})

            arts.append(self._cached(out, key, build))
        return arts

    def build(self, fp32: Path, calib: CalibrationSet, recipe: RecipeBase, out_dir: Path) -> Artifact:
        return self.build_keeping_float(fp32, calib, recipe, out_dir, ())

    def build_keeping_float(self, fp32: Path, calib: CalibrationSet, recipe: RecipeBase, out_dir: Path,
                            float_nodes: Sequence[str]) -> Artifact:
        """NNCF with these nodes in its ignored scope. The pipeline's fallback for OpenVINO is accuracy control
        (restore_accuracy), which picks the nodes itself."""
        import nncf

        s = recipe.openvino
        stem = Path(fp32).name.removesuffix(".fp32.onnx")
        out = Path(out_dir) / f"{stem}.openvino.int8.xml"
        key = stage_key(stage="ov-int8", fp32=sha256_file(Path(fp32)), cfg=s.model_dump(),
                        calib=calib.digest, ignored=sorted(float_nodes),
                        libs=library_versions(LIBS))

        def build():
            preset = nncf.QuantizationPreset.PERFORMANCE if s.preset == "performance" else nncf.QuantizationPreset.MIXED
            ignored = nncf.IgnoredScope(names=list(float_nodes), validate=False) if float_nodes else None
            fast, why = fast_bias_correction(s, Path(fp32), len(calib))
            q = nncf.quantize(_convert(fp32), _dataset(calib), preset=preset, subset_size=len(calib),
                              fast_bias_correction=fast, ignored_scope=ignored,
                              advanced_parameters=_advanced(s))
            _save(q, out, compress_fp16=s.compress_fp16)
            return self._artifact(out, "int8", "openvino-ir-int8", s,
                                  {"method": "nncf.quantize", "preset": s.preset, "calibration_images": len(calib),
                                   "activation_ranges": s.activation_ranges,
                                   "fast_bias_correction": fast, "bias_correction_choice": why,
                                   "float_nodes": list(float_nodes)})

        return self._cached(out, key, build)

    def peer_default(self, fp32: Path, calib: CalibrationSet, out_dir: Path) -> Artifact:
        """OpenVINO's post-training quantization guide: the ONNX converted to an FP32 model, `nncf.quantize` with
        an `nncf.Dataset` and nothing else (preset performance, subset 300, fast bias correction, its own range
        estimators), `ov.save_model` with its default fp16 compression of the remaining float weights."""
        import time

        import nncf

        t0 = time.perf_counter()
        out = Path(out_dir) / f"{Path(fp32).name.removesuffix('.fp32.onnx')}.peer.openvino.int8.xml"
        model = _convert(fp32)  # our labels and preprocessing go into rt_info: metadata, no change to the graph
        model.set_rt_info(PEER_CALL, ["edgeincep", "peer"])
        _save(nncf.quantize(model, _dataset(calib)), out, compress_fp16=True)
        # Compiled as ours is (latency hint, f32 float ops), so the rows differ only in the file.
        return Artifact(out, self.name, "int8", "openvino-ir-int8", meta={
            "performance_hint": "latency", "inference_precision": "f32", "peer": PEER_CALL,
            "calibration_images": len(calib), "seconds": round(time.perf_counter() - t0, 2)})

    def serving_throughput(self, artifact: Artifact, threads: int, image: np.ndarray, seconds: float) -> dict:
        return throughput_hint_rate(artifact.path, threads, image, seconds,
                                    artifact.meta.get("inference_precision", "f32"))

    def layer_outputs(self, path: Path, fp32: Path, ls: list[Layer], x: np.ndarray):
        return layer_outputs(path, ls, x)

    def has_restore_accuracy(self, recipe: RecipeBase) -> bool:
        return recipe.openvino.accuracy_control

    def calibration_variants(self, recipe: RecipeBase) -> list[tuple[str, dict]]:
        s = recipe.openvino
        out = []
        if s.activation_ranges != "mean_minmax":
            out.append(("NNCF mean-of-min/max ranges", {"openvino": {"activation_ranges": "mean_minmax"}}))
        if s.preset != "mixed":
            out.append(("asymmetric activations (mixed preset)", {"openvino": {"preset": "mixed"}}))
        return out

    def restore_accuracy(self, fp32: Path, calib: CalibrationSet, probe: tuple[np.ndarray, np.ndarray],
                         recipe: RecipeBase, out_dir: Path, deadline: float = math.inf) -> tuple[Artifact, dict] | None:
        """nncf.quantize_with_accuracy_control against the budget: calibrated on `calib`, scored on the probe
        images (never the validation set) by top-1 against `probe`'s targets (the FP32 model's own predictions
        make the metric agreement, which a budget on agreement needs); the layers it reverted to float come
        from NNCF's log. None when the recipe turns accuracy control off."""
        import nncf
        from nncf.quantization.advanced_parameters import AdvancedAccuracyRestorerParameters

        s = recipe.openvino
        if not s.accuracy_control:
            return None
        stem = Path(fp32).name.removesuffix(".fp32.onnx")
        out = Path(out_dir) / f"{stem}.openvino.int8.xml"
        px, targets = probe
        data = nncf.Dataset([(px[i:i + 1], int(targets[i])) for i in range(len(px))], lambda item: item[0])
        max_drop = min(recipe.budget.max_top1_drop / 100, 1.0 - recipe.budget.min_agreement)

        def top1(compiled, items) -> tuple[float, list[float]]:
            # NNCF ranks every quantized layer group by re-validating without it, which on a large model
            # can take far longer than the ladder allows; its only exit is the validation function.
            if time.monotonic() > deadline:
                raise OutOfTime("nncf.quantize_with_accuracy_control had not finished its ranking and reverting")
            port = compiled.output(0)
            hits = [float(np.argmax(compiled(x)[port]) == y) for x, y in items]
            return float(np.mean(hits)), hits

        log = _RevertedLog()
        logger = logging.getLogger("nncf")
        logger.addHandler(log)
        try:
            preset = nncf.QuantizationPreset.PERFORMANCE if s.preset == "performance" else nncf.QuantizationPreset.MIXED
            q = nncf.quantize_with_accuracy_control(
                _convert(fp32), _dataset(calib), data, top1, max_drop=max_drop,
                drop_type=nncf.DropType.ABSOLUTE, preset=preset, subset_size=len(calib),
                fast_bias_correction=fast_bias_correction(s, Path(fp32), len(calib))[0],
                advanced_quantization_parameters=_advanced(s),
                advanced_accuracy_restorer_parameters=AdvancedAccuracyRestorerParameters(
                    max_num_iterations=s.max_reverted, num_ranking_workers=1))
        finally:
            logger.removeHandler(log)
        _save(q, out, compress_fp16=s.compress_fp16)
        art = self._artifact(out, "int8", "openvino-ir-int8", s,
                             {"method": "nncf.quantize_with_accuracy_control", "preset": s.preset,
                              "calibration_images": len(calib), "float_nodes": log.reverted})
        # Not cached: an accuracy-controlled IR replaces the plain one at the same path.
        art.sidecar().unlink(missing_ok=True)
        return art, {"method": "nncf accuracy control", "float_nodes": log.reverted,
                     "quantized_operations": log.quantized_ops}

    def import_runtime(self) -> None:
        _ov()

    def bundle_spec(self, artifact: Artifact, device: str, recipe: RecipeBase) -> BundleSpec | None:
        from edgeincep.backends.openvino.bundle import intel_bundle

        return intel_bundle(artifact) if artifact.precision == "int8" else None

    def stored_precision(self, path: Path) -> str:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
        return "int8" if 'type="FakeQuantize"' in text else "fp32"

    def metadata(self, artifact: Artifact) -> dict[str, str]:
        return {f"edgeincep.{k}": v for k, v in read_rt_info(artifact.path).items()}

    def load(self, artifact: Artifact, threads: int = 0) -> OpenVinoPredictor:
        meta = artifact.meta
        return OpenVinoPredictor(artifact.path, threads, artifact.name, artifact.precision,
                                 hint=meta.get("performance_hint", "latency"),
                                 inference_precision=meta.get("inference_precision", "f32"))


def labels_from_ir(xml: Path) -> list[str]:
    return json.loads(read_rt_info(xml).get("labels", "[]"))
