#!/usr/bin/env python3
"""Classify images with this edgeincep device bundle (Raspberry Pi, Coral Edge TPU, Intel CPU).

Standalone: numpy, Pillow and the device's runtime (ai-edge-litert or tflite-runtime; openvino) and
nothing else; no torch, no edgeincep. The bundle's manifest.json names the model and the runtime.

  python3 run.py IMAGE_OR_FOLDER... [--top 5] [--threads N] [--json out.json]
  python3 run.py --check [--json out.json]   # the bundled samples must give the host's results (exit 1 if not)
  python3 run.py --cpu ...      # Coral: the CPU model even when an Edge TPU is attached

Images, preprocessing and --check come from edgeincep_common.py beside this file (the host's own
arithmetic, bit for bit); an INT8 model's input and output are (de)quantized here with the tensor's
own scale and zero point exactly as the host's validation does; tests compare the logits with the host's.
"""
from __future__ import annotations

import json
import platform
import sys
from pathlib import Path

import numpy as np

try:  # inside the edgeincep package (the host's LiteRT predictor imports this file)
    from .common import run, runner_command_line
except ImportError:  # in a device bundle: edgeincep_common.py lies beside this file
    sys.dont_write_bytecode = True  # no __pycache__ in the bundle: its files must stay as the manifest lists them
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from edgeincep_common import run, runner_command_line

HERE = Path(__file__).resolve().parent
EDGETPU_LIBRARY = {"Linux": "libedgetpu.so.1", "Darwin": "libedgetpu.1.dylib", "Windows": "edgetpu.dll"}


# --- runtimes --------------------------------------------------------------------------------------

def quantize(x: np.ndarray, detail: dict) -> np.ndarray:
    dtype = detail["dtype"]
    if dtype == np.float32:
        return x
    scale, zero = detail["quantization"]
    info = np.iinfo(dtype)
    return np.clip(np.round(x / scale + zero), info.min, info.max).astype(dtype)


def dequantize(y: np.ndarray, detail: dict) -> np.ndarray:
    if detail["dtype"] == np.float32:
        return np.array(y)
    scale, zero = detail["quantization"]
    return (y.astype(np.float32) - zero) * scale


def _litert():
    """LiteRT's interpreter module: ai-edge-litert, else the older tflite-runtime (same API)."""
    try:
        from ai_edge_litert import interpreter
        return interpreter
    except ImportError:
        try:
            from tflite_runtime import interpreter
            return interpreter
        except ImportError:
            raise SystemExit("error: neither ai-edge-litert nor tflite-runtime is installed "
                             "(python3 -m pip install -r requirements.txt)") from None


class LiteRtSession:
    """One .tflite on the CPU (XNNPACK) or, with `delegate`, on the Edge TPU; static batch 1, NHWC."""

    def __init__(self, model: Path, threads: int, delegate=None, backend: str = "litert-cpu"):
        lite = _litert()
        self.backend = backend
        kwargs = {"experimental_delegates": [delegate]} if delegate is not None else {}
        # num_threads None lets LiteRT choose, exactly as edgeincep's host predictor does.
        self.it = lite.Interpreter(model_path=str(model), num_threads=threads or None, **kwargs)
        self.it.allocate_tensors()
        self.input = self.it.get_input_details()[0]
        self.output = self.it.get_output_details()[0]
        self.input_size = int(self.input["shape"][1])

    def predict(self, chw: np.ndarray) -> np.ndarray:
        nhwc = np.ascontiguousarray(chw.transpose(1, 2, 0)[None])
        self.it.set_tensor(self.input["index"], quantize(nhwc, self.input))
        self.it.invoke()
        return dequantize(self.it.get_tensor(self.output["index"]), self.output)[0]


class OpenVinoSession:
    """The IR on OpenVINO's CPU plugin with the host's settings: f32 inference precision (no silent bf16
    on AMX/AVX512-BF16 CPUs) and the latency hint."""

    def __init__(self, model: Path, threads: int, runner: dict):
        import openvino as ov
        import openvino.properties as props
        import openvino.properties.hint as hints

        self.backend = "openvino-cpu"
        core = ov.Core()
        mode = (hints.PerformanceMode.LATENCY if runner.get("performance_hint", "latency") == "latency"
                else hints.PerformanceMode.THROUGHPUT)
        config = {hints.inference_precision: getattr(ov.Type, runner.get("inference_precision", "f32")),
                  hints.performance_mode: mode}
        if threads:
            config[props.inference_num_threads] = threads
        self.compiled = core.compile_model(core.read_model(str(model)), "CPU", config)
        self.request = self.compiled.create_infer_request()
        self.output = self.compiled.output(0)
        self.input_size = None

    def predict(self, chw: np.ndarray) -> np.ndarray:
        res = self.request.infer({0: np.ascontiguousarray(chw[None], dtype=np.float32)})
        return np.array(res[self.output])[0]


def _edgetpu_delegate(lite):
    lib = EDGETPU_LIBRARY.get(platform.system(), "libedgetpu.so.1")
    try:
        return lite.load_delegate(lib), None
    except (ValueError, OSError, RuntimeError) as e:
        return None, f"no Edge TPU delegate ({lib}: {' '.join(str(e).split())[:160]})"


def open_session(bundle: Path, runner: dict, threads: int, force_cpu: bool = False):
    runtime = runner["runtime"]
    if runtime == "openvino":
        return OpenVinoSession(bundle / runner["model"], threads, runner)
    if runtime == "edgetpu" and not force_cpu:
        compiled = runner.get("edgetpu_model")
        if not compiled or not (bundle / compiled).is_file():
            reason = "the bundle has no *_edgetpu.tflite (edgetpu_compiler did not run on the host)"
        else:
            delegate, reason = _edgetpu_delegate(_litert())
            if delegate is not None:
                return LiteRtSession(bundle / compiled, threads, delegate, backend="edgetpu")
        print(f"note: {reason}; running the INT8 model on the CPU", file=sys.stderr)
    if runtime not in ("litert", "edgetpu"):
        raise SystemExit(f"error: this runner does not know the runtime '{runtime}'")
    return LiteRtSession(bundle / runner["model"], threads)


# --- command line ----------------------------------------------------------------------------------

def versions() -> dict:
    out = {"python": platform.python_version(), "machine": platform.machine(), "numpy": np.__version__}
    for mod, name in (("PIL", "pillow"), ("ai_edge_litert", "ai-edge-litert"), ("tflite_runtime", "tflite-runtime"),
                      ("openvino", "openvino")):
        if mod in sys.modules:
            out[name] = getattr(sys.modules[mod], "__version__", "?")
    return out


def main(argv: list[str] | None = None) -> int:
    args, bundle, runner, cfg, labels = runner_command_line(
        __doc__.splitlines()[0], HERE, "runtime threads (0: the runtime's default)", argv,
        lambda ap: ap.add_argument("--cpu", action="store_true",
                                   help="Coral: run the CPU model even with an Edge TPU present"))
    session = open_session(bundle, runner, args.threads, force_cpu=args.cpu)
    if session.input_size not in (None, int(cfg["input_size"])):
        raise SystemExit(f"error: the model takes {session.input_size} px but preprocess.json says {cfg['input_size']}")
    results, code = run(session, cfg, labels, bundle, None if args.check else args.images, args.top)
    if args.json:
        Path(args.json).write_text(json.dumps({"backend": session.backend, "versions": versions(),
                                               "results": results}, indent=1))
    return code


if __name__ == "__main__":
    sys.exit(main())
