#!/usr/bin/env python3
"""Classify images with this edgeincep device bundle (Raspberry Pi, Coral Edge TPU, Intel CPU).

Standalone: numpy, Pillow and the device's runtime (ai-edge-litert or tflite-runtime; openvino) and
nothing else; no torch, no edgeincep. The bundle's manifest.json names the model and the runtime.

  python3 run.py IMAGE_OR_FOLDER... [--top 5] [--threads N] [--json out.json]
  python3 run.py --check [--json out.json]   # the bundled samples must give the host's results (exit 1 if not)
  python3 run.py --cpu ...      # Coral: the CPU model even when an Edge TPU is attached

The preprocessing reproduces edgeincep's host preprocessing (edgeincep/data/images.py) bit for bit,
and an INT8 model's input and output are (de)quantized with the tensor's own scale and zero point
exactly as the host's validation does; tests compare this file's logits with the host's.
"""
from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"}
# The host's refusals (Pillow's bomb limit, 100:1 aspect): the device refuses what the host refused.
MAX_PIXELS = 89_478_485
MAX_ASPECT = 100
EDGETPU_LIBRARY = {"Linux": "libedgetpu.so.1", "Darwin": "libedgetpu.1.dylib", "Windows": "edgetpu.dll"}


class BadImage(Exception):
    pass


# --- preprocessing: the host's arithmetic, step for step -----------------------------------------

def to_rgb(img):
    from PIL import Image

    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        a = np.asarray(img, dtype=np.float64)
        peak = 65535.0 if img.mode.startswith("I;16") or a.max() > 255 else 255.0
        img = Image.fromarray(np.clip(a / peak * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
    elif img.mode == "F":
        a = np.asarray(img, dtype=np.float64)
        img = Image.fromarray(np.clip(a * (255.0 if a.max() <= 1.0 else 1.0) + 0.5, 0, 255).astype(np.uint8), "L")
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(white, rgba)
    return img.convert("RGB") if img.mode != "RGB" else img


def load_image(path):
    from PIL import Image, ImageOps

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                if img.width * img.height > MAX_PIXELS:
                    raise BadImage(f"{img.width}x{img.height} px exceeds {MAX_PIXELS} pixels")
                if min(img.size) < 1 or max(img.size) > MAX_ASPECT * min(img.size):
                    raise BadImage(f"{img.width}x{img.height} px: aspect ratio beyond {MAX_ASPECT}:1")
                img.seek(0)
                img.load()
                img = ImageOps.exif_transpose(img) or img
                return to_rgb(img)
    except BadImage:
        raise
    except Exception as e:  # noqa: BLE001 - Pillow raises a dozen types on damaged files; each is one bad image
        raise BadImage(" ".join(str(e).split())[:200] or type(e).__name__) from None


def preprocess(img, cfg: dict) -> np.ndarray:
    """Shorter side to floor(size / crop_pct), centre crop, /255, (x - mean) / std: CHW float32."""
    from PIL import Image

    resample = {"bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR,
                "nearest": Image.Resampling.NEAREST, "lanczos": Image.Resampling.LANCZOS}
    size = int(cfg["input_size"])
    short = math.floor(size / float(cfg["crop_pct"]))
    w, h = img.size
    new = (short, max(short, round(h * short / w))) if w <= h else (max(short, round(w * short / h)), short)
    img = img.resize(new, resample[cfg["interpolation"]])
    left = round((new[0] - size) / 2.0)
    top = round((new[1] - size) / 2.0)
    img = img.crop((left, top, left + size, top + size))
    x = np.asarray(img, dtype=np.float32) / 255.0
    x = (x - np.asarray(cfg["mean"], np.float32)) / np.asarray(cfg["std"], np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1))


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

def find_images(args: list[str]) -> list[Path]:
    out: list[Path] = []
    for a in args:
        p = Path(a)
        if p.is_dir():
            out += sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
        elif p.is_file():
            out.append(p)
        else:
            raise SystemExit(f"error: {p}: no such file or folder")
    return out


def classify(session, cfg: dict, labels: list[str], paths: list[Path], top: int, quiet: bool = False) -> list[dict]:
    results = []
    for p in paths:
        t0 = time.perf_counter()
        try:
            x = preprocess(load_image(p), cfg)
        except BadImage as e:
            print(f"{p}\tskipped: {e}", file=sys.stderr)
            results.append({"image": str(p), "error": str(e)})
            continue
        t1 = time.perf_counter()
        logits = session.predict(x)
        t2 = time.perf_counter()
        order = np.argsort(-logits, kind="stable")[:top]
        names = [labels[i] if i < len(labels) else str(i) for i in order]
        rec = {"image": str(p), "top1": int(order[0]), "label": names[0], "top": [int(i) for i in order],
               "names": names, "scores": [float(logits[i]) for i in order],
               "preprocess_ms": round((t1 - t0) * 1e3, 3), "inference_ms": round((t2 - t1) * 1e3, 3),
               "logits": [float(v) for v in logits]}
        results.append(rec)
        if not quiet:
            ranked = "  ".join(f"{n} {s:.3f}" for n, s in zip(names, rec["scores"], strict=True))
            print(f"{p}\t{rec['inference_ms']:.1f} ms (+{rec['preprocess_ms']:.1f} ms preprocessing)\t{ranked}")
    return results


def check(session, cfg: dict, labels: list[str], bundle: Path) -> tuple[list[dict], int]:
    """Run the bundled samples and compare with the host's logits: same top-1, logits within tolerance.

    The results name each sample as expected.json does (relative to the bundle), so `edgeincep deploy --check`
    can pair the device's JSON with the host's."""
    expected = json.loads((bundle / "expected.json").read_text())
    tol = expected["tolerance"].get(session.backend)
    got = classify(session, cfg, labels, [bundle / s["image"] for s in expected["results"]], 5, quiet=True)
    worst, failures = 0.0, []
    for want, res in zip(expected["results"], got, strict=True):
        res["image"] = want["image"]
        if "error" in res:
            failures.append(f"{want['image']}: {res['error']}")
            continue
        diff = float(np.max(np.abs(np.asarray(res["logits"], np.float32) - np.asarray(want["logits"], np.float32))))
        worst = max(worst, diff)
        if res["top1"] != want["top1"]:
            failures.append(f"{want['image']}: top-1 {res['label']}, the host had {want.get('label') or want['top1']}")
        elif tol is not None and diff > tol:
            failures.append(f"{want['image']}: logits differ by {diff:.6g} (> {tol:.6g})")
    exact = not failures and worst == 0.0
    ms = float(np.median([r["inference_ms"] for r in got if "inference_ms" in r] or [0.0]))
    print(f"check ({session.backend}): {len(got) - len(failures)}/{len(got)} samples match the host "
          f"(max |logit difference| {worst:.6g}{', bit-identical' if exact else ''}; "
          f"tolerance {'top-1 only' if tol is None else f'{tol:.6g}'}); median inference {ms:.1f} ms")
    for f in failures:
        # stderr too: a remote caller (edgeincep deploy) shows the last lines of stderr.
        print(f"  MISMATCH {f}")
        print(f"MISMATCH {f}", file=sys.stderr)
    return got, 1 if failures else 0


def versions() -> dict:
    out = {"python": platform.python_version(), "machine": platform.machine(), "numpy": np.__version__}
    for mod, name in (("PIL", "pillow"), ("ai_edge_litert", "ai-edge-litert"), ("tflite_runtime", "tflite-runtime"),
                      ("openvino", "openvino")):
        if mod in sys.modules:
            out[name] = getattr(sys.modules[mod], "__version__", "?")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("images", nargs="*", help="image files or folders")
    ap.add_argument("--top", type=int, default=5, help="classes to print per image")
    ap.add_argument("--threads", type=int, default=0, help="runtime threads (0: the runtime's default)")
    ap.add_argument("--json", help="write per-image results (top classes, logits, timings) here")
    ap.add_argument("--check", action="store_true", help="compare the bundled samples with the host's results")
    ap.add_argument("--cpu", action="store_true", help="Coral: run the CPU model even with an Edge TPU present")
    ap.add_argument("--bundle", default=str(HERE), help="bundle folder (default: this file's)")
    args = ap.parse_args(argv)
    if not args.images and not args.check:
        ap.error("give image files or folders, or --check")
    bundle = Path(args.bundle)
    runner = json.loads((bundle / "manifest.json").read_text())["runner"]
    cfg = json.loads((bundle / "preprocess.json").read_text())
    labels = json.loads((bundle / "labels.json").read_text())
    session = open_session(bundle, runner, args.threads, force_cpu=args.cpu)
    if session.input_size not in (None, int(cfg["input_size"])):
        raise SystemExit(f"error: the model takes {session.input_size} px but preprocess.json says {cfg['input_size']}")
    if args.check:
        results, code = check(session, cfg, labels, bundle)
    else:
        paths = find_images(args.images)
        if not paths:
            raise SystemExit("error: no images found")
        results = classify(session, cfg, labels, paths, max(1, args.top))
        code = 0 if all("error" not in r for r in results) else 2
    if args.json:
        Path(args.json).write_text(json.dumps({"backend": session.backend, "versions": versions(),
                                               "results": results}, indent=1))
    return code


if __name__ == "__main__":
    sys.exit(main())
