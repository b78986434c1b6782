"""TFLite conversions run in a child process, so TensorFlow's memory goes back to the system.

TensorFlow's converter peaks at 4.6 GB on full-size Inception-ResNet-v2 and the allocator keeps
most of it after the conversion; in the pipeline's own process that stayed held through every
later stage (validation of nine full-size models then peaked at 9.1 GB). In a child it is
returned when the child exits, and the parent never imports TensorFlow.

The expensive intermediates are kept for the parent's lifetime in a private cache folder, so
targets built one after another share them: the float flatbuffer (FP32, FP16 and INT8 start
from it), the calibrated float model (the TFLite and Edge TPU models share one calibration) and
each quantized model with float I/O (int8 or uint8 I/O is an edit at its boundaries).
"""
from __future__ import annotations

import atexit
import contextlib
import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, fields
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from edgeincep.children import child_env, die_with_parent, last_line
from edgeincep.core.errors import ConversionError, UserError
from edgeincep.fsutil import atomic_path, sha256_file
from edgeincep.litert.convert import TfliteConfig

if TYPE_CHECKING:
    from edgeincep.quantize.calibration import CalibrationSet

_ERRORS = {"ConversionError": ConversionError, "UserError": UserError}
_CACHE: list[Path] = []


def cache_dir() -> Path:
    """This process's private cache of TFLite intermediates (removed at exit)."""
    if not _CACHE:
        path = Path(tempfile.mkdtemp(prefix="edgeincep-tflite-cache-"))
        atexit.register(shutil.rmtree, path, True)
        _CACHE.append(path)
    return _CACHE[0]


def convert(fp32: Path, jobs: list[tuple[TfliteConfig, Path]], *, input_size: int, metadata: dict[str, str],
            calib: CalibrationSet | None = None, calib_digest: str | None = None,
            fp32_sha256: str | None = None) -> list[dict]:
    """Write each (config, path) job's .tflite atomically, converted in child processes; what each job did.

    `fp32_sha256`: the export's digest where the caller has it already (a full-size export is 220 MB).

    Two children at most, one after the other: the float conversion (onnx2tf and TensorFlow's
    converter, the memory-hungry part) and the INT8 calibration and quantization, which starts
    from the float model in the cache and so runs without the first one's gigabytes beside it.
    """
    int8 = [i for i, (cfg, _) in enumerate(jobs) if cfg.kind == "int8"]
    floats = [i for i in range(len(jobs)) if i not in int8]
    if int8 and (calib is None or len(calib) == 0):
        raise UserError("INT8 conversion needs calibration images")
    commute = {cfg.commute_pools for cfg, _ in jobs}
    if len(commute) > 1:
        raise UserError("one TFLite conversion cannot both move and keep the pools (commute_pools differs)")
    commute_pools = commute.pop() if commute else False
    source = _key(fp32_sha256 or sha256_file(fp32), input_size, commute_pools)
    with tempfile.TemporaryDirectory(prefix="edgeincep-tflite-") as tmp, contextlib.ExitStack() as outs:
        work = Path(tmp)
        parts = [outs.enter_context(atomic_path(out)) for _, out in jobs]
        request = {"fp32": str(fp32), "input_size": input_size, "metadata": metadata, "cache": str(cache_dir()),
                   "source": source, "calib_digest": calib_digest if int8 else None, "commute_pools": commute_pools,
                   "calib_images": len(calib) if int8 else 0}
        if int8:
            np.save(work / "calib.npy", np.ascontiguousarray(calib.x.transpose(0, 2, 3, 1), dtype=np.float32))
        results: dict[int, dict] = {}
        if floats or not (cache_dir() / float_name(source)).is_file():
            results |= _run_child(work, fp32, request, [(i, jobs[i][0], parts[i]) for i in floats])
        if int8:
            results |= _run_child(work, fp32, request, [(i, jobs[i][0], parts[i]) for i in int8])
    return [results[i] for i in range(len(jobs))]


def float_name(source: str) -> str:
    return f"float-{source}.tflite"


def _run_child(work: Path, fp32: Path, request: dict, jobs: list[tuple[int, TfliteConfig, Path]]) -> dict[int, dict]:
    request = request | {"jobs": [{**asdict(cfg), "out": str(part)} for _, cfg, part in jobs]}
    (work / "request.json").write_text(json.dumps(request))
    (work / "result.json").unlink(missing_ok=True)
    with open(work / "child.log", "wb") as log:
        proc = subprocess.run([sys.executable, "-m", __name__, str(work)], stdout=log, stderr=subprocess.STDOUT,
                              env=child_env())
    result_path = work / "result.json"
    if proc.returncode != 0 or not result_path.is_file():
        raise ConversionError(f"TFLite conversion of {Path(fp32).name} failed (exit {proc.returncode}): "
                              f"{last_line(text=(work / 'child.log').read_text(errors='replace'))}")
    result = json.loads(result_path.read_text())
    if "error" in result:
        raise _ERRORS.get(result["type"], ConversionError)(result["error"])
    return {i: info for (i, _, _), info in zip(jobs, result["jobs"], strict=True)}


# --- the child ----------------------------------------------------------------------------------

def _key(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:24]


class _Intermediates:
    """The child's view of the parent's cache: each intermediate made at most once per parent."""

    def __init__(self, request: dict, work: Path):
        self.req, self.work = request, work
        self.cache = Path(request["cache"])
        self.fp32 = Path(request["fp32"])
        self.source = request["source"]
        self._keras = None
        self.onnx2tf_seconds = 0.0
        self.pools_moved: int | None = None  # None: this child did not convert (the float model was cached)

    def keras(self):
        from edgeincep.litert.convert import onnx_to_keras

        if self._keras is None:
            t0 = time.perf_counter()
            source = self.fp32
            if self.req["commute_pools"]:
                import onnx

                from edgeincep.quantize.rewrite import pool_after_pointwise_conv

                model = onnx.load(str(self.fp32))
                self.pools_moved = pool_after_pointwise_conv(model)
                if self.pools_moved:
                    source = self.work / self.fp32.name
                    onnx.save(model, str(source))
            self._keras = onnx_to_keras(source)
            self.onnx2tf_seconds = round(time.perf_counter() - t0, 2)
        return self._keras

    def _cached(self, name: str, make) -> bytes:
        path = self.cache / name
        if path.is_file():
            return path.read_bytes()
        data = make()
        prefix = name.split("-")[0] + "-"
        for old in self.cache.glob(prefix + "*"):  # the latest model's intermediates only
            old.unlink(missing_ok=True)
        tmp = path.with_suffix(".part")
        tmp.write_bytes(data)
        tmp.replace(path)
        return data

    def float(self) -> bytes:
        from edgeincep.litert.convert import float_model

        return self._cached(float_name(self.source),
                            lambda: float_model(self.keras(), self.req["input_size"]))

    def calibrated(self) -> bytes:
        from edgeincep.litert.convert import calibrated_model

        name = f"calibrated-{_key(self.source, self.req['calib_digest'])}.tflite"
        return self._cached(name, lambda: calibrated_model(self.float(), np.load(self.work / "calib.npy")))

    def int8_core(self, per_channel: bool, depthwise_pools: bool, activations: str = "int8",
                  float_nodes: tuple[str, ...] = ()) -> bytes:
        from edgeincep.litert.convert import quantized_16x8, quantized_model

        if activations == "int16":
            name = f"int16x8-{_key(self.source, self.req['calib_digest'], per_channel)}.tflite"
            return self._cached(name, lambda: quantized_16x8(self.float(), np.load(self.work / "calib.npy"),
                                                             per_channel=per_channel))
        extra = tuple(float_nodes)
        name = f"int8-{_key(self.source, self.req['calib_digest'], per_channel, depthwise_pools, *extra)}.tflite"
        return self._cached(name, lambda: quantized_model(self.calibrated(), per_channel=per_channel,
                                                          depthwise_pools=depthwise_pools, float_nodes=float_nodes))


def _one(job: dict, have: _Intermediates) -> dict:
    from edgeincep.litert.convert import with_io, with_metadata
    from edgeincep.litert.rewrite import float16_weights

    t0 = time.perf_counter()
    cfg = TfliteConfig(**{f.name: tuple(job[f.name]) if f.name == "float_nodes" else job[f.name]
                          for f in fields(TfliteConfig)})  # the job is asdict(cfg) + "out"
    if cfg.kind == "fp32":
        flat = have.float()
    elif cfg.kind == "fp16":
        flat = float16_weights(have.float())
    else:
        flat = with_io(have.int8_core(cfg.per_channel, cfg.depthwise_pools, cfg.activations, cfg.float_nodes), cfg.io)
    flat = with_metadata(flat, have.req["metadata"])
    Path(job["out"]).write_bytes(flat)
    int8 = cfg.kind == "int8"
    return {"kind": cfg.kind, "io": cfg.io if int8 else "float32", "commute_pools": cfg.commute_pools,
            "per_channel": cfg.per_channel if int8 else None,
            "depthwise_pools": cfg.depthwise_pools if int8 else None,
            **({"activations": cfg.activations, "float_nodes": list(cfg.float_nodes)} if int8 else {}),
            "calibration_images": have.req["calib_images"] if int8 else 0,
            "convert_seconds": round(time.perf_counter() - t0, 2), "size_bytes": len(flat)}


def _child(work: Path) -> None:
    die_with_parent()
    request = json.loads((work / "request.json").read_text())
    have = _Intermediates(request, work)
    try:
        if not request["jobs"]:
            have.float()  # only the float model, for an INT8 child to start from
        done = [_one(job, have) for job in request["jobs"]]
        result = {"jobs": [d | {"onnx2tf_seconds": have.onnx2tf_seconds}
                           | ({"pools_moved": have.pools_moved} if have.pools_moved is not None else {}) for d in done]}
    except (ConversionError, UserError) as e:
        result = {"error": str(e), "type": type(e).__name__}
    (work / "result.json").write_text(json.dumps(result))


if __name__ == "__main__":
    _child(Path(sys.argv[1]))
