"""Recipes: per model x target settings, typed and validated, with errors naming file and key.

Lookup: recipes/<model>.<target>.yaml, else recipes/default.<target>.yaml, else the defaults here.
"""
from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from edgeincep.errors import UserError
from edgeincep.paths import RECIPES_DIR


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Calibration(_Strict):
    count: int = Field(300, ge=1, le=100_000, description="images drawn (class-balanced, seeded)")
    method: Literal["minmax", "entropy", "percentile"] = "minmax"
    percentile: float = Field(99.999, gt=90.0, lt=100.0)
    num_bins: int = Field(512, ge=128, le=8192, description="histogram bins for entropy/percentile")
    seed: int = 0
    chunk: int = Field(8, ge=1, le=1024, description="images per calibrator call (bounds memory)")


class OrtSettings(_Strict):
    format: Literal["u8s8", "s8s8"] = "u8s8"
    per_channel: bool = True
    commute_pools: bool = Field(True, description="pool after the 1x1 conv, not before (exact; cheaper INT8)")


class OpenVinoSettings(_Strict):
    compress_fp16: bool = Field(False, description="store float weights as FP16 (never for the FP32 reference)")
    preset: Literal["performance", "mixed"] = "performance"
    # Measured on the reference Inception-ResNet-v1 (300 calibration images, SQNR vs FP32): NNCF's
    # defaults (mean-of-minmax ranges, fast bias correction) 13.9 dB; plain min/max ranges with
    # full bias correction 34.1 dB. Hence these defaults.
    activation_ranges: Literal["minmax", "mean_minmax"] = "minmax"
    # Full bias correction keeps every layer's activations for 20% of the calibration images: on
    # full-size Inception-ResNet-v2 at 299 px (300 MB of activations per image) it was killed for want
    # of memory at 24 GB. "auto" uses it only while that estimate stays under bias_correction_memory_mb.
    fast_bias_correction: bool | Literal["auto"] = "auto"
    bias_correction_memory_mb: int = Field(4096, ge=64, description="auto: the most full bias correction may hold")
    accuracy_control: bool = Field(True, description="nncf.quantize_with_accuracy_control when over budget")
    max_reverted: int = Field(50, ge=1, le=10_000, description="accuracy control: most layers reverted to float")
    performance_hint: Literal["latency", "throughput"] = "latency"
    inference_precision: Literal["f32", "bf16", "f16"] = Field(
        "f32", description="CPU plugin precision for float ops; f32 for honest drift (bf16 is the silent default)")


class TensorRtSettings(_Strict):
    """TensorRT: a Q/DQ INT8 ONNX made with NVIDIA ModelOpt (calibrated on CPU), engines built on the device."""
    # ModelOpt's calibrators: "max" (absolute max) or "entropy" (KL divergence, ModelOpt's own default). Measured on
    # the reference Inception-ResNet-v2 (300 calibration images, 1000 validation images, SQNR vs FP32): max 28.6 dB,
    # 99.6% top-1 agreement; entropy 24.6 dB, 98.9% (ModelOpt's entropy clips through ONNX Runtime's 128-bin histograms).
    calibration_method: Literal["max", "entropy"] = "max"
    # The shipped file's float parts (weights kept in float, Q/DQ scales, non-quantized ops): fp16
    # halves the file and is what the engine runs anyway; fp32 keeps an exact-float twin for debugging.
    high_precision_dtype: Literal["fp16", "fp32"] = "fp16"
    calibrate_per_node: bool = Field(False, description="ModelOpt calibrates node by node: less memory, slower")
    keep_fp32_twin: bool = Field(True, description="also write the fp32-high-precision twin and compare it at build time")
    # Engine build (on the device, or here when TensorRT and a GPU exist).
    engine_fp16: bool = Field(True, description="FP16 alongside INT8: INT8-only builds run the float parts in FP32")
    workspace_mb: int = Field(1024, ge=16, le=1 << 20, description="builder workspace memory pool limit")
    timing_cache: bool = Field(True, description="reuse kernel timings across engine builds (file beside the engine)")
    max_batch: int = Field(8, ge=1, le=4096, description="largest batch of the engine's optimisation profile")
    opt_batch: int = Field(1, ge=1, le=4096, description="batch the engine is tuned for")
    jetpack: str = Field("6.2", description="JetPack release the Jetson bundle is written for")
    tensorrt_version: str = Field("10.3", description="TensorRT release the Jetson bundle is written for")


class TfliteSettings(_Strict):
    # The INT8 model is the gated artifact; FP32 and FP16 are written beside it when listed here
    # (each costs one more conversion), and FP32 is validated too, proving the conversion itself exact.
    references: list[Literal["fp32", "fp16"]] = Field(["fp32", "fp16"], description="float .tflite files besides INT8")
    io: Literal["int8", "uint8", "float32"] = Field(
        "int8", description="INT8 model input/output type (the edgetpu target always uses uint8)")
    per_channel: bool = Field(True, description="per-output-channel INT8 weight scales")
    # Off by default: TFLite's int8 pools must keep their input's scale, so a pool moved after its 1x1 conv
    # inherits the conv's signed pre-RELU range; on the reference Inception-v4 that cost 1.7 points of top-1
    # agreement (99.34% -> 97.63%), over the 99% budget, for INT8 29.1 -> 17.3 ms.
    commute_pools: bool = Field(False, description="pool after the 1x1 conv (exact in float; faster, less accurate INT8)")
    # XNNPACK has no int8 average pool: each ran in TFLite's reference kernel and split XNNPACK's graph
    # (Inception-v4 INT8 30.5 -> 15.9 ms with this on). The Edge TPU target keeps its pools regardless.
    depthwise_pools: bool = Field(True, description="INT8 average pools as depthwise conv + border MUL (XNNPACK int8)")


class Budget(_Strict):
    max_top1_drop: float = Field(0.5, ge=0.0, le=100.0, description="points of top-1 accuracy")
    min_agreement: float = Field(0.99, ge=0.0, le=1.0, description="top-1 agreement with FP32")


class Fallback(_Strict):
    enabled: bool = True
    max_float_nodes: int = Field(8, ge=0, le=1000)
    probe_images: int = Field(200, ge=8, le=10_000, description="validation images scored per candidate")


class Validation(_Strict):
    limit: int | None = Field(None, ge=1, description="balanced subset of the validation set; None: all")
    batch_size: int = Field(64, ge=1, le=4096)
    device_images: int = Field(300, ge=0, description="validation images each Raspberry Pi / Coral bundle is run on "
                               "as arm64 code under qemu (when the arm64 sysroot exists); 0: none")


class Recipe(_Strict):
    model: str | None = None
    target: str | None = None
    input_size: int | None = Field(None, ge=75, le=2048)
    calibration: Calibration = Calibration()
    onnxruntime: OrtSettings = OrtSettings()
    openvino: OpenVinoSettings = OpenVinoSettings()
    tensorrt: TensorRtSettings = TensorRtSettings()
    tflite: TfliteSettings = TfliteSettings()
    budget: Budget = Budget()
    fallback: Fallback = Fallback()
    validation: Validation = Validation()
    source: str = "built-in defaults"


MAX_RECIPE_DEPTH = 64  # a recipe is 2-3 levels deep


def load_recipe_file(path: Path) -> Recipe:
    path = Path(path)

    class _Loader(yaml.SafeLoader):
        """safe_load that refuses a key given twice: YAML keeps the last silently, losing the first block."""

        def construct_mapping(self, node, deep=False):
            seen: dict = {}
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=True)
                if isinstance(key, str) and key in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"key '{key}' appears twice (lines {seen[key] + 1} and {key_node.start_mark.line + 1})",
                        key_node.start_mark)
                if isinstance(key, str):
                    seen[key] = key_node.start_mark.line
            return super().construct_mapping(node, deep)

        def compose_node(self, parent, index):
            # A fixed depth limit: PyYAML recurses per level, and other libraries in this process (onnx2tf)
            # raise the interpreter's recursion limit, so a RecursionError alone would depend on who ran first.
            self._depth = getattr(self, "_depth", 0) + 1
            try:
                if self._depth > MAX_RECIPE_DEPTH:
                    raise RecursionError
                return super().compose_node(parent, index)
            finally:
                self._depth -= 1

    def one_line(text) -> str:
        return " ".join(str(text).split())

    try:
        if path.stat().st_size > 1_000_000:  # a recipe is a few hundred bytes; refuse a hostile giant before parsing
            raise UserError("recipe is larger than 1 MB; is this the right file?", path)
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_Loader)  # a SafeLoader: no Python tags
    except FileNotFoundError:
        raise UserError("recipe file not found", path) from None
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"cannot read recipe ({type(e).__name__})", path) from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise UserError(f"recipe is not valid YAML{where}: {one_line(getattr(e, 'problem', None) or e)}", path) from None
    except (ValueError, TypeError, AttributeError, OverflowError, IndexError, KeyError) as e:
        # PyYAML's scalar constructors raise these for malformed tagged or implicit values (2001-13-45, !!int 0x).
        raise UserError(f"recipe is not valid YAML: a malformed value ({one_line(e)[:150]})", path) from None
    except RecursionError:
        raise UserError("recipe is not valid YAML: nested too deeply", path) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise UserError(f"recipe must be a mapping of settings, got {type(data).__name__}", path)
    try:
        return Recipe.model_validate({**data, "source": str(path)})
    except ValidationError as e:
        first = e.errors()[0]
        key = one_line(".".join(str(p) for p in first["loc"]))[:100] or "(top level)"
        more = f" (+{e.error_count() - 1} more problems)" if e.error_count() > 1 else ""
        raise UserError(f"recipe key '{key}': {one_line(first['msg'])}{more}", path) from None


def find_recipe(model: str, target: str, recipes_dir: Path = RECIPES_DIR) -> Recipe:
    for name in (f"{model}.{target}.yaml", f"default.{target}.yaml"):
        if (recipes_dir / name).is_file():
            return load_recipe_file(recipes_dir / name)
    return Recipe(model=model, target=target)
