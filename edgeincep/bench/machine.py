"""What a benchmark ran on, and the fastest this machine multiplies: the yardstick for a compute floor.

The floor of a model is its multiply-accumulates divided by the machine's peak MAC rate. The
peak here is measured, not taken from a data sheet: the best rate of a large GEMM at the
benchmark's thread count, for float artifacts the faster of ONNX Runtime's float32 `MatMul` and
numpy's BLAS, for INT8 ones ONNX Runtime's uint8 x int8 `MatMulInteger`. A convolution network
cannot beat its GEMM peak, so `latency / floor` is how far an artifact is from the hardware.
"""
from __future__ import annotations

import os
import platform
import time
from functools import lru_cache

import numpy as np

from edgeincep.cache import library_versions
from edgeincep.quantize.saturation import cpu_flags

# ISA features that decide which kernels the runtimes pick (VNNI: int8 dot products; BF16/AMX:
# float runs that are silently not FP32 unless pinned).
_FLAGS = ("avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_tile",
          "amx_int8", "amx_bf16", "asimd", "asimddp", "i8mm", "sve")


def cpu_facts() -> dict:
    info = _cpuinfo()
    flags = cpu_flags()
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        usable = os.cpu_count()
    return {"model": info.get("model name") or info.get("Model name") or platform.processor() or "unknown",
            "machine": platform.machine(), "logical_cpus": os.cpu_count(), "usable_cpus": usable,
            "mhz": float(info["cpu MHz"]) if "cpu MHz" in info else None,
            "isa": sorted(f for f in _FLAGS if f in flags)}


def _cpuinfo() -> dict[str, str]:
    try:
        text = open("/proc/cpuinfo", encoding="utf-8").read()  # noqa: SIM115 - tiny file
    except OSError:
        return {}
    facts: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() not in facts:
            facts[key.strip()] = value.strip()
    return facts


def machine_record(threads: int) -> dict:
    return {"cpu": cpu_facts(), "threads": threads, "python": platform.python_version(),
            "libraries": library_versions(backend_libraries())}


def backend_libraries() -> tuple[str, ...]:
    """Every registered backend's libraries, once each (what the numbers of a bench run depend on)."""
    from edgeincep.registry import get_backend, list_backends

    return tuple(dict.fromkeys(lib for name in list_backends() for lib in get_backend(name).libraries))


def _gemm_model(int8: bool, n: int):
    from onnx import TensorProto, helper

    a_type, b_type = (TensorProto.UINT8, TensorProto.INT8) if int8 else (TensorProto.FLOAT, TensorProto.FLOAT)
    node = helper.make_node("MatMulInteger" if int8 else "MatMul", ["a", "b"], ["y"])
    graph = helper.make_graph([node], "gemm", [helper.make_tensor_value_info("a", a_type, [n, n]),
                                               helper.make_tensor_value_info("b", b_type, [n, n])],
                              [helper.make_tensor_value_info("y", TensorProto.INT32 if int8 else TensorProto.FLOAT,
                                                             [n, n])])
    # IR 8 (opset 17): older than the newest onnx writes, so every ONNX Runtime still reads it.
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def _best_seconds(run, min_runs: int, seconds: float) -> float:
    """Fastest of at least `min_runs` calls of `run`, going on for about `seconds`."""
    best, runs, end = float("inf"), 0, time.perf_counter() + seconds
    while runs < min_runs or time.perf_counter() < end:
        t0 = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - t0)
        runs += 1
    return best


@lru_cache(maxsize=8)
def peak_gmacs(threads: int, int8: bool, n: int = 1024, seconds: float = 2.0) -> float:
    """Best GMAC/s of an n x n x n GEMM on ONNX Runtime's CPU kernels over about `seconds`."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    if threads:
        so.intra_op_num_threads = threads
    sess = ort.InferenceSession(_gemm_model(int8, n).SerializeToString(), so, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    if int8:
        feeds = {"a": rng.integers(0, 256, (n, n), dtype=np.uint8), "b": rng.integers(-128, 128, (n, n), dtype=np.int8)}
    else:
        feeds = {"a": rng.standard_normal((n, n), dtype=np.float32), "b": rng.standard_normal((n, n), dtype=np.float32)}
    sess.run(None, feeds)
    return n ** 3 / _best_seconds(lambda: sess.run(None, feeds), 5, seconds) / 1e9


@lru_cache(maxsize=8)
def numpy_fp32_gmacs(threads: int, n: int = 2048, seconds: float = 1.0) -> float:
    """Best GMAC/s of numpy's float32 matmul (its BLAS), limited to `threads` where threadpoolctl is present."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # the BLAS then uses its own default, at most every core
        threadpool_limits = None
    ctx = threadpool_limits(limits=threads) if threadpool_limits and threads else None
    try:
        a @ b
        best = _best_seconds(lambda: a @ b, 3, seconds)
    finally:
        if ctx is not None:
            ctx.unregister()
    return n ** 3 / best / 1e9


def peak_record(threads: int) -> dict:
    # The floor needs the machine's peak, and any one GEMM kernel can fall short of it (ORT's fp32
    # NCHWc convolutions beat its own MatMul here), so the float peak is the best of two BLAS.
    fp32 = max(peak_gmacs(threads, False), numpy_fp32_gmacs(threads))
    return {"fp32_gmacs_per_s": round(fp32, 1), "int8_gmacs_per_s": round(peak_gmacs(threads, True), 1),
            "how": "best of several runs at the benchmark's thread count: float32 = the faster of ONNX Runtime's "
                   "1024^3 MatMul and numpy's 2048^3 matmul; int8 = ONNX Runtime's 1024^3 uint8 x int8 "
                   "MatMulInteger"}
