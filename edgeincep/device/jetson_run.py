#!/usr/bin/env python3
"""Classify images on a Jetson with the TensorRT engine built by build_engine.sh (edgeincep bundle runner).

Standalone: needs numpy and Pillow, plus TensorRT's Python bindings (JetPack's python3-libnvinfer)
for the engine, or onnxruntime to run the Q/DQ ONNX on the CPU as a check. This very file is also
what edgeincep's host-side TensorRT predictor imports, so the device and the host share one runner.

  python3 run.py IMAGE_OR_FOLDER...               # engine if present, else ONNX Runtime
  python3 run.py --backend onnxruntime --json out.json images/
  python3 run.py --check [--json out.json]        # the bundled samples must give the host's top-1

Images, preprocessing (the host's, bit for bit) and --check come from edgeincep_common.py beside
this file, the same module the Raspberry Pi, Coral and Intel runners use.
"""
from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import json
import sys
from pathlib import Path

import numpy as np

try:  # inside the edgeincep package (the host's TensorRT predictor imports this file)
    from .common import run, runner_command_line
except ImportError:  # in the bundle: edgeincep_common.py lies beside this file
    sys.dont_write_bytecode = True  # no __pycache__ in the bundle: its files must stay as the manifest lists them
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from edgeincep_common import run, runner_command_line

HERE = Path(__file__).resolve().parent


# --- CUDA runtime through ctypes (no pycuda / cuda-python needed on the device) --------------------

_H2D, _D2H = 1, 2  # cudaMemcpyHostToDevice, cudaMemcpyDeviceToHost
_CUDART_NAMES = ("libcudart.so", "libcudart.so.13", "libcudart.so.12", "libcudart.so.11.0")


def _load_cudart():
    candidates = list(_CUDART_NAMES)
    found = ctypes.util.find_library("cudart")
    if found:
        candidates.insert(0, found)
    # pip's nvidia-cuda-runtime wheels and JetPack's toolkit keep it off the default search path.
    for root in [*(Path(p) / "nvidia" / "cuda_runtime" / "lib" for p in sys.path), Path("/usr/local/cuda/lib64")]:
        candidates += [str(p) for p in sorted(root.glob("libcudart.so*"))] if root.is_dir() else []
    for name in candidates:
        try:
            return ctypes.CDLL(name)
        except OSError:
            continue
    return None


class CudaRuntime:
    """The handful of CUDA runtime calls an engine run needs: device memory, copies, one stream."""

    def __init__(self):
        self.lib = _load_cudart()
        if self.lib is None:
            raise RuntimeError("CUDA runtime library (libcudart) not found")
        self.lib.cudaGetErrorString.restype = ctypes.c_char_p

    def _check(self, code: int, what: str) -> None:
        if code != 0:
            raise RuntimeError(f"{what} failed: {self.lib.cudaGetErrorString(code).decode()} (CUDA error {code})")

    def device_count(self) -> int:
        n = ctypes.c_int(0)
        code = self.lib.cudaGetDeviceCount(ctypes.byref(n))
        return n.value if code == 0 else 0

    def malloc(self, nbytes: int) -> int:
        ptr = ctypes.c_void_p()
        self._check(self.lib.cudaMalloc(ctypes.byref(ptr), ctypes.c_size_t(max(nbytes, 1))), "cudaMalloc")
        return ptr.value

    def free(self, ptr: int) -> None:
        self.lib.cudaFree(ctypes.c_void_p(ptr))

    def stream(self) -> int:
        s = ctypes.c_void_p()
        self._check(self.lib.cudaStreamCreate(ctypes.byref(s)), "cudaStreamCreate")
        return s.value or 0

    def to_device(self, dst: int, host: np.ndarray, stream: int) -> None:
        self._check(self.lib.cudaMemcpyAsync(ctypes.c_void_p(dst), host.ctypes.data_as(ctypes.c_void_p),
                                             ctypes.c_size_t(host.nbytes), _H2D, ctypes.c_void_p(stream)), "copy to GPU")

    def to_host(self, host: np.ndarray, src: int, stream: int) -> None:
        self._check(self.lib.cudaMemcpyAsync(host.ctypes.data_as(ctypes.c_void_p), ctypes.c_void_p(src),
                                             ctypes.c_size_t(host.nbytes), _D2H, ctypes.c_void_p(stream)), "copy to host")

    def sync(self, stream: int) -> None:
        self._check(self.lib.cudaStreamSynchronize(ctypes.c_void_p(stream)), "cudaStreamSynchronize")


def gpu_unavailable_reason() -> str | None:
    """None when TensorRT imports and a CUDA GPU answers; else why not, in one line."""
    try:
        import tensorrt  # noqa: F401
    except ImportError as e:
        return f"tensorrt is not importable: {e}"
    try:
        cuda = CudaRuntime()
    except RuntimeError as e:
        return f"no CUDA GPU: {e}"
    if cuda.device_count() < 1:
        return "no CUDA GPU: cudaGetDeviceCount found none"
    return None


# --- runners ---------------------------------------------------------------------------------------

class TensorRtSession:
    """A deserialised engine with one input and one output; batches larger than the profile are split."""

    def __init__(self, engine_path: str | Path):
        import tensorrt as trt

        self.trt = trt
        self.cuda = CudaRuntime()
        self.logger = trt.Logger(trt.Logger.WARNING)
        self.runtime = trt.Runtime(self.logger)
        self.engine = self.runtime.deserialize_cuda_engine(Path(engine_path).read_bytes())
        if self.engine is None:
            raise RuntimeError(f"{engine_path}: TensorRT could not deserialise the engine (built for another "
                               "GPU or TensorRT version? rebuild it with build_engine.sh)")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        if len(inputs) != 1 or len(outputs) != 1:
            raise RuntimeError(f"expected one input and one output, the engine has {inputs} -> {outputs}")
        self.input, self.output = inputs[0], outputs[0]
        self.in_dtype = np.dtype(trt.nptype(self.engine.get_tensor_dtype(self.input)))
        self.out_dtype = np.dtype(trt.nptype(self.engine.get_tensor_dtype(self.output)))
        # Profile 0's max shape bounds every batch we send.
        self.max_batch = int(self.engine.get_tensor_profile_shape(self.input, 0)[2][0])
        self.stream = self.cuda.stream()
        self._buffers: dict[str, tuple[int, int]] = {}

    def _buffer(self, name: str, nbytes: int) -> int:
        ptr, size = self._buffers.get(name, (0, 0))
        if size < nbytes:
            if ptr:
                self.cuda.free(ptr)
            ptr, size = self.cuda.malloc(nbytes), nbytes
            self._buffers[name] = (ptr, size)
        return ptr

    def _run(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=self.in_dtype)
        self.context.set_input_shape(self.input, tuple(x.shape))
        out_shape = tuple(self.context.get_tensor_shape(self.output))
        out = np.empty(out_shape, self.out_dtype)
        d_in, d_out = self._buffer(self.input, x.nbytes), self._buffer(self.output, out.nbytes)
        self.context.set_tensor_address(self.input, d_in)
        self.context.set_tensor_address(self.output, d_out)
        self.cuda.to_device(d_in, x, self.stream)
        if not self.context.execute_async_v3(self.stream):
            raise RuntimeError("TensorRT execute_async_v3 failed")
        self.cuda.to_host(out, d_out, self.stream)
        self.cuda.sync(self.stream)
        return out.astype(np.float32)

    def predict(self, x: np.ndarray) -> np.ndarray:
        return np.concatenate([self._run(x[i:i + self.max_batch]) for i in range(0, len(x), self.max_batch)])

    def close(self) -> None:
        for ptr, _ in self._buffers.values():
            self.cuda.free(ptr)
        self._buffers.clear()

    def __del__(self):
        # At interpreter shutdown libcudart may already be unloaded.
        with contextlib.suppress(Exception):
            self.close()


class OnnxRuntimeSession:
    """The Q/DQ ONNX on ONNX Runtime's CPU provider: a check where no engine can run, not the fast path."""

    def __init__(self, onnx_path: str | Path, threads: int = 0):
        import onnxruntime as ort

        so = ort.SessionOptions()
        # ONNX Runtime's CPU graph optimisations make fp16 Q/DQ graphs ~10 dB noisier than the file's own
        # values (measured with onnxruntime 1.31); unoptimised, the check computes what the engine is given.
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        so.log_severity_level = 3
        if threads:
            so.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(onnx_path), so, providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input: np.ascontiguousarray(x, dtype=np.float32)})[0].astype(np.float32)


# --- command line ----------------------------------------------------------------------------------

class OneImage:
    """A session seen one CHW image at a time, as the shared classification loop and --check use it."""

    def __init__(self, session, backend: str):
        self.session, self.backend = session, backend
        self.input_size = None

    def predict(self, chw: np.ndarray) -> np.ndarray:
        return self.session.predict(chw[None])[0]


def _session(backend: str, bundle: Path, manifest: dict, threads: int) -> OneImage:
    engine = bundle / manifest["engine"]
    if backend in ("auto", "tensorrt"):
        reason = gpu_unavailable_reason() or (None if engine.is_file() else f"{engine.name} not built yet "
                                                                           "(run ./build_engine.sh)")
        if reason is None:
            return OneImage(TensorRtSession(engine), "tensorrt")
        if backend == "tensorrt":
            raise SystemExit(f"error: cannot run the TensorRT engine: {reason}")
        print(f"note: {reason}; checking with ONNX Runtime on the CPU instead", file=sys.stderr)
    return OneImage(OnnxRuntimeSession(bundle / manifest["onnx"], threads), "onnxruntime")


def main(argv: list[str] | None = None) -> int:
    args, bundle, runner, cfg, labels = runner_command_line(
        __doc__.splitlines()[0], HERE, "ONNX Runtime CPU threads (0: its default)", argv,
        lambda ap: ap.add_argument("--backend", choices=("auto", "tensorrt", "onnxruntime"), default="auto"))
    session = _session(args.backend, bundle, runner, args.threads)
    results, code = run(session, cfg, labels, bundle, None if args.check else args.images, args.top)
    if args.json:
        Path(args.json).write_text(json.dumps({"backend": session.backend, "results": results}, indent=1))
    return code


if __name__ == "__main__":
    sys.exit(main())
