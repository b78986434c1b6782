"""TensorRT engines from the Q/DQ ONNX: the Python-API build, the equivalent trtexec command, a runner.

An engine is tied to the GPU and TensorRT version it was built with, so it is never the shipped
artifact: the host builds one only to validate and bench where TensorRT and a GPU exist, and the
Jetson bundle carries the trtexec command that builds it on the device.

Build settings (TensorRT 10):
- INT8 *and* FP16: the Q/DQ nodes decide what runs in int8; everything else (the float classifier,
  residual scaling, pooling) would otherwise run in FP32, and INT8-only builds are often no faster.
- a workspace memory-pool limit, so a build on an 8 GB Jetson cannot take the whole shared memory;
- a timing cache file, so a rebuild (another batch profile, a new recipe) skips kernel timing;
- one optimisation profile over the batch axis: min 1, opt `opt_batch`, max `max_batch`.
"""
from __future__ import annotations

import shlex
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeincep.core.errors import UserError
from edgeincep.device.jetson_run import TensorRtSession, gpu_unavailable_reason
from edgeincep.fsutil import atomic_path, write_text_atomic


@dataclass
class EngineSettings:
    fp16: bool = True
    workspace_mb: int = 1024
    timing_cache: bool = True
    opt_batch: int = 1
    max_batch: int = 8

    @classmethod
    def from_recipe(cls, s) -> EngineSettings:
        return cls(fp16=s.engine_fp16, workspace_mb=s.workspace_mb, timing_cache=s.timing_cache,
                   opt_batch=min(s.opt_batch, s.max_batch), max_batch=s.max_batch)


def unavailable_reason() -> str | None:
    """None when an engine can be built and run here; else why not ("tensorrt is not importable: ...")."""
    return gpu_unavailable_reason()


def shapes(input_name: str, size: int, batch: int) -> str:
    return f"{input_name}:{batch}x3x{size}x{size}"


def trtexec_command(onnx: str, engine: str, *, input_name: str, input_size: int, s: EngineSettings,
                    timing_cache: str | None = "timing.cache", trtexec: str = "trtexec") -> list[str]:
    """The trtexec (TensorRT 10) invocation equivalent to `build_engine`."""
    cmd = [trtexec, f"--onnx={onnx}", f"--saveEngine={engine}", "--int8"]
    if s.fp16:
        cmd.append("--fp16")
    cmd += [f"--minShapes={shapes(input_name, input_size, 1)}",
            f"--optShapes={shapes(input_name, input_size, s.opt_batch)}",
            f"--maxShapes={shapes(input_name, input_size, s.max_batch)}",
            f"--memPoolSize=workspace:{s.workspace_mb}M"]
    if s.timing_cache and timing_cache:
        cmd.append(f"--timingCacheFile={timing_cache}")
    return cmd


def trtexec_line(cmd: list[str]) -> str:
    return " \\\n  ".join(shlex.quote(c) for c in cmd)


def build_engine(onnx: Path, engine: Path, *, input_name: str, input_size: int, s: EngineSettings,
                 timing_cache: Path | None = None) -> dict:
    """Parse the Q/DQ ONNX and write a serialised engine (atomically); return build facts."""
    reason = unavailable_reason()
    if reason:
        raise UserError(f"cannot build a TensorRT engine here: {reason}")
    import tensorrt as trt

    t0 = time.perf_counter()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # TensorRT 10: explicit batch is the only mode
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx)):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise UserError(f"TensorRT's ONNX parser rejected the model: {errors[0] if errors else 'no detail'}", onnx)
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, s.workspace_mb << 20)
    config.set_flag(trt.BuilderFlag.INT8)
    if s.fp16:
        config.set_flag(trt.BuilderFlag.FP16)
    profile = builder.create_optimization_profile()
    dims = lambda b: (b, 3, input_size, input_size)  # noqa: E731
    profile.set_shape(input_name, dims(1), dims(s.opt_batch), dims(s.max_batch))
    config.add_optimization_profile(profile)
    cache_bytes = timing_cache.read_bytes() if timing_cache and s.timing_cache and timing_cache.is_file() else b""
    if s.timing_cache:
        cache = config.create_timing_cache(cache_bytes)
        config.set_timing_cache(cache, ignore_mismatch=False)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise UserError("TensorRT could not build an engine from the model (see its log above)", onnx)
    with atomic_path(engine) as tmp:
        tmp.write_bytes(bytes(serialized))
    if s.timing_cache and timing_cache is not None:
        with atomic_path(timing_cache) as tmp:
            tmp.write_bytes(bytes(config.get_timing_cache().serialize()))
    return {"engine": str(engine), "tensorrt": trt.__version__, "int8": True, "fp16": s.fp16,
            "workspace_mb": s.workspace_mb, "max_batch": s.max_batch, "timing_cache": str(timing_cache or ""),
            "timing_cache_reused": bool(cache_bytes), "seconds": round(time.perf_counter() - t0, 2)}


def engine_path(onnx: Path) -> Path:
    """Engines are per GPU and TensorRT version: the file name says which."""
    import tensorrt as trt

    gpu = _gpu_name().replace(" ", "_")
    return Path(onnx).with_name(Path(onnx).stem + f".{gpu}.trt{trt.__version__}.engine")


def _gpu_name() -> str:
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            name = pynvml.nvmlDeviceGetName(pynvml.nvmlDeviceGetHandleByIndex(0))
        finally:
            pynvml.nvmlShutdown()
        return name.decode() if isinstance(name, bytes) else str(name)
    except Exception:  # noqa: BLE001 - Jetson has no NVML; any failure only loses a name
        return "gpu0"


def ensure_engine(onnx: Path, *, input_name: str, input_size: int, s: EngineSettings) -> tuple[Path, dict]:
    """The engine for this ONNX on this GPU: reused when its record matches, else built."""
    import json

    from edgeincep.cache import lookup, stage_key
    from edgeincep.fsutil import sha256_file

    engine = engine_path(onnx)
    key = stage_key(stage="trt-engine", onnx=sha256_file(onnx), settings=s.__dict__, engine=engine.name)
    record = engine.with_name(engine.name + ".json")
    hit = lookup(record, key, [engine])
    if hit:
        return engine, hit["build"] | {"cached": True}
    info = build_engine(onnx, engine, input_name=input_name, input_size=input_size, s=s,
                        timing_cache=Path(onnx).with_name("timing.cache"))
    write_text_atomic(record, json.dumps({"cache_key": key, "build": info}, indent=2))
    return engine, info


class TensorRtPredictor:
    """An engine run on the GPU; what it executes is TensorRT's choice per layer within INT8+FP16."""

    def __init__(self, engine: Path, name: str, fp16: bool):
        self.session = TensorRtSession(engine)
        self.name = name
        self.executed_precision = "int8 (TensorRT engine, Q/DQ layers), float layers " + ("fp16" if fp16 else "fp32")

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.session.predict(x)


def input_name(path: Path) -> str:
    """The ONNX graph's (single) image input."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    inits = {t.name for t in graph.initializer}
    return next(i.name for i in graph.input if i.name not in inits)
