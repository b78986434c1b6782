"""What every edgeincep device bundle's runner shares: image decoding, the host's preprocessing, the
per-image classification loop and `--check` against the host's results.

Shipped in each bundle as `edgeincep_common.py` beside `run.py` (Raspberry Pi, Coral, Intel: runner.py;
Jetson: jetson_run.py), and imported by edgeincep's host code from here, so there is one copy of the
arithmetic the host's validation and every device run. Standalone: numpy and Pillow only.

The preprocessing reproduces edgeincep's host preprocessing (edgeincep/data/images.py) bit for bit:
decode -> EXIF orientation -> RGB (alpha on white) -> timm's eval transform as torchvision computes it
(shorter side to floor(size / crop_pct), the longer truncated; centre crop; /255; (x - mean) / std) -> CHW
float32. tests/device/test_preprocess.py holds it to a transcription of timm's and torchvision's arithmetic.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
import warnings
from pathlib import Path

import numpy as np

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"}
# 89.5 Mpx (Pillow's own default): larger headers are refused before any pixels are decoded.
MAX_PIXELS = 89_478_485
# Preprocessing scales the shorter side to ~85-375 px, so the resized long side grows with the aspect
# ratio: a 2x200000 PNG (a 1 KB file) needed 3.5 GB and 9 s before this bound. 100:1 caps that at
# ~40 MB while admitting any real photo, panorama or scan. Host and devices refuse the same images.
MAX_ASPECT = 100


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
    """Open, decode fully (first frame of animations), apply EXIF orientation, convert to RGB; a file that
    cannot be one is a BadImage saying why (the host adds the file's name)."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            # Pillow warns (two lines each) about recoverable damage such as corrupt EXIF; over a 10k
            # folder that buries the one line that matters. Bombs stay errors.
            warnings.simplefilter("ignore", UserWarning)
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                if img.width * img.height > MAX_PIXELS:
                    raise BadImage(f"{img.width}x{img.height} image exceeds {MAX_PIXELS} pixels "
                                   "(decompression-bomb guard)")
                if min(img.size) < 1 or max(img.size) > MAX_ASPECT * min(img.size):
                    raise BadImage(f"{img.width}x{img.height} px: aspect ratio beyond {MAX_ASPECT}:1 "
                                   "(resizing it would need far too much memory)")
                img.seek(0)
                img.load()
                img = ImageOps.exif_transpose(img) or img
                return to_rgb(img)
    except BadImage:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise BadImage(f"refused, too many pixels (decompression-bomb guard: {e})") from None
    except Exception as e:  # noqa: BLE001 - Pillow's decoders raise a dozen types on hostile or damaged bytes
        # (struct.error and IndexError from header parsers, MemoryError from a header asking for a huge
        # palette or strip, ...): each is one bad image, never a crash of the whole run.
        detail = " ".join(str(e).split())[:200] or type(e).__name__
        reason = "not a recognised image" if isinstance(e, UnidentifiedImageError) else f"corrupt or truncated ({detail})"
        if Path(path).exists() and Path(path).stat().st_size == 0:
            reason = "empty file (0 bytes)"
        raise BadImage(reason) from None


def resample_filter(interpolation: str):
    """Pillow's filter for a preprocessing config's interpolation name."""
    from PIL import Image

    return {"bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR,
            "nearest": Image.Resampling.NEAREST, "lanczos": Image.Resampling.LANCZOS}[interpolation]


def resize_size(size: int, crop_pct: float) -> int:
    """The shorter side before the centre crop (timm: math.floor(img_size / crop_pct))."""
    return math.floor(size / float(crop_pct))


def resized_shape(width: int, height: int, short: int) -> tuple[int, int]:
    """(width, height) after torchvision's Resize(int): the shorter side becomes `short` and the longer
    side int(short * long / shorter), truncated, not rounded (rounding shifts the crop of a 500x375 photo)."""
    if width <= height:
        return short, int(short * height / width)
    return int(short * width / height), short


def crop_box(width: int, height: int, size: int) -> tuple[int, int, int, int]:
    """torchvision's CenterCrop: offset round((side - size) / 2) (Python's round, half to even); a side
    shorter than `size` is padded with zeros, (size - side) // 2 before it. Pillow fills outside with 0."""
    left = round((width - size) / 2.0) if width >= size else -((size - width) // 2)
    top = round((height - size) / 2.0) if height >= size else -((size - height) // 2)
    return left, top, left + size, top + size


def preprocess(img, cfg: dict) -> np.ndarray:
    """timm's eval transform as torchvision computes it: Resize(floor(size / crop_pct)) on the shorter side,
    CenterCrop(size), ToTensor (/255 in float32), Normalize(mean, std): CHW float32."""
    size = int(cfg["input_size"])
    new = resized_shape(*img.size, resize_size(size, cfg["crop_pct"]))
    if new != img.size:
        img = img.resize(new, resample_filter(cfg["interpolation"]))
    img = img.crop(crop_box(*new, size))
    x = np.asarray(img, dtype=np.float32) / np.float32(255.0)
    x = (x - np.asarray(cfg["mean"], np.float32)) / np.asarray(cfg["std"], np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1))


# --- classification and the check against the host ---------------------------------------------

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


def output_codes(logits, scale: float, zero_point: int) -> np.ndarray:
    """The integer output codes behind dequantized logits ((q - zero_point) * scale in float32): exact,
    since the division undoes that product to within far less than half a step."""
    return np.rint(np.asarray(logits, np.float64) / scale + zero_point).astype(np.int64)


def deviation(tol, got, want) -> tuple[float, bool]:
    """How far a device's logits are from the host's, in the tolerance's unit, and whether that is within it.

    `tol` is {"output_steps": K, "scale": s, "zero_point": z} for an integer output (compared as integer
    codes: no float epsilon), a number for a float output (largest |logit difference|), or None (the
    same top-1 is all that is required)."""
    if isinstance(tol, dict):
        steps = int(np.max(np.abs(output_codes(got, tol["scale"], tol["zero_point"])
                                  - output_codes(want, tol["scale"], tol["zero_point"]))))
        return steps, steps <= tol["output_steps"]
    diff = float(np.max(np.abs(np.asarray(got, np.float32) - np.asarray(want, np.float32))))
    return diff, tol is None or diff <= tol


def describe_tolerance(tol) -> str:
    if tol is None:
        return "top-1 only"
    if isinstance(tol, dict):
        return f"{tol['output_steps']} output steps"
    return f"|logit difference| {tol:.6g}"


def check(session, cfg: dict, labels: list[str], bundle: Path) -> tuple[list[dict], int]:
    """Run the bundled samples and compare with the host's: the same top-1 always, logits within tolerance.

    The results name each sample as expected.json does (relative to the bundle), so `edgeincep deploy --check`
    can pair the device's JSON with the host's."""
    expected = json.loads((bundle / "expected.json").read_text())
    tol = expected["tolerance"].get(session.backend)
    got = classify(session, cfg, labels, [bundle / s["image"] for s in expected["results"]], 5, quiet=True)
    worst, failures, exact = 0.0, [], True
    for want, res in zip(expected["results"], got, strict=True):
        res["image"] = want["image"]
        if "error" in res:
            failures.append(f"{want['image']}: {res['error']}")
            continue
        exact = exact and res["logits"] == want["logits"]
        diff, within = deviation(tol, res["logits"], want["logits"])
        worst = max(worst, diff)
        if res["top1"] != want["top1"]:
            failures.append(f"{want['image']}: top-1 {res['label']}, the host had {want.get('label') or want['top1']}")
        elif not within:
            failures.append(f"{want['image']}: logits differ by {diff:.6g} (tolerance: {describe_tolerance(tol)})")
    unit = " output steps" if isinstance(tol, dict) else ""
    ms = float(np.median([r["inference_ms"] for r in got if "inference_ms" in r] or [0.0]))
    print(f"check ({session.backend}): {len(got) - len(failures)}/{len(got)} samples match the host "
          f"(largest difference {worst:.6g}{unit}{', bit-identical' if exact and not failures else ''}; "
          f"tolerance: {describe_tolerance(tol)}); median inference {ms:.1f} ms")
    for f in failures:
        # stderr too: a remote caller (edgeincep deploy) shows the last lines of stderr.
        print(f"  MISMATCH {f}")
        print(f"MISMATCH {f}", file=sys.stderr)
    return got, 1 if failures else 0


def run(session, cfg: dict, labels: list[str], bundle: Path, images: list[str] | None, top: int) -> tuple[list[dict], int]:
    """A runner's work once its session is open: classify `images` (files or folders; exit code 2 if one
    could not be read), or with None, --check the bundled samples (exit code 1 on a mismatch)."""
    if images is None:
        return check(session, cfg, labels, bundle)
    paths = find_images(images)
    if not paths:
        raise SystemExit("error: no images found")
    results = classify(session, cfg, labels, paths, max(1, top))
    return results, 0 if all("error" not in r for r in results) else 2


def runner_command_line(description: str, bundle: Path, threads_help: str, argv: list[str] | None,
                        add_options=None) -> tuple[argparse.Namespace, Path, dict, dict, list[str]]:
    """What every bundle's run.py takes (images or --check, --bundle, --top, --threads, --json, plus the
    runner's own options from `add_options(parser)`), parsed, and what the bundle says of itself:
    (args, bundle folder, the manifest's runner entry, preprocess.json, labels.json)."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("images", nargs="*", help="image files or folders")
    ap.add_argument("--bundle", default=str(bundle), help="bundle folder (default: this file's)")
    ap.add_argument("--top", type=int, default=5, help="classes to print per image")
    ap.add_argument("--threads", type=int, default=0, help=threads_help)
    ap.add_argument("--json", help="write per-image results (top classes, logits, timings) here")
    ap.add_argument("--check", action="store_true", help="compare the bundled samples with the host's results")
    if add_options is not None:
        add_options(ap)
    args = ap.parse_args(argv)
    if not args.images and not args.check:
        ap.error("give image files or folders, or --check")
    folder = Path(args.bundle)
    runner = json.loads((folder / "manifest.json").read_text())["runner"]
    cfg = json.loads((folder / "preprocess.json").read_text())
    labels = json.loads((folder / "labels.json").read_text())
    return args, folder, runner, cfg, labels
