"""Decode any common image file to RGB and apply a model's eval preprocessing with Pillow + numpy.

The same arithmetic runs on the host (calibration, validation) and in device bundles, so it
stays free of torch/torchvision: resize the shorter side to floor(size / crop_pct), centre-crop
`size`, scale to [0, 1], normalise by mean/std, return CHW float32.
"""
from __future__ import annotations

import math
import struct
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import DataError
from ..models.registry import Preprocess

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"}
# 89.5 Mpx (Pillow's own default): larger headers are refused before any pixels are decoded.
MAX_PIXELS = 89_478_485
# Preprocessing scales the shorter side to ~85-375 px, so the resized long side grows with the aspect
# ratio: a 2x200000 PNG (a 1 KB file) needed 3.5 GB and 9 s before this bound. 100:1 caps that at
# ~40 MB while admitting any real photo, panorama or scan.
MAX_ASPECT = 100
_RESAMPLE = {"bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR,
             "nearest": Image.Resampling.NEAREST, "lanczos": Image.Resampling.LANCZOS}


class BadImage(DataError):
    """One image that cannot be decoded; the folder loader collects these."""


def to_rgb(img: Image.Image) -> Image.Image:
    """Any mode -> 8-bit RGB: alpha composited on white, 16-bit scaled down, CMYK/palette converted."""
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


def load_image(path: str | Path) -> Image.Image:
    """Open, decode fully (first frame of animations), apply EXIF orientation, convert to RGB."""
    path = Path(path)
    try:
        with warnings.catch_warnings():
            # Pillow warns (two lines each) about recoverable damage such as corrupt EXIF; over a 10k
            # folder that buries the one line that matters. Bombs stay errors.
            warnings.simplefilter("ignore", UserWarning)
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                if img.width * img.height > MAX_PIXELS:
                    raise BadImage(f"{img.width}x{img.height} image exceeds {MAX_PIXELS} pixels "
                                   "(decompression-bomb guard)", path)
                if min(img.size) < 1 or max(img.size) > MAX_ASPECT * min(img.size):
                    raise BadImage(f"{img.width}x{img.height} px: aspect ratio beyond {MAX_ASPECT}:1 "
                                   "(resizing it would need far too much memory)", path)
                img.seek(0)
                img.load()
                img = ImageOps.exif_transpose(img) or img
                return to_rgb(img)
    except BadImage:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise BadImage(f"refused, too many pixels (decompression-bomb guard: {e})", path) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError, struct.error, IndexError, TypeError,
            ZeroDivisionError, MemoryError) as e:
        # Pillow's decoders raise all of these on hostile or damaged bytes (struct.error and IndexError from
        # header parsers, MemoryError from a header asking for a huge palette or strip).
        detail = " ".join(str(e).split())[:200] or type(e).__name__
        reason = "not a recognised image" if isinstance(e, UnidentifiedImageError) else f"corrupt or truncated ({detail})"
        if path.exists() and path.stat().st_size == 0:
            reason = "empty file (0 bytes)"
        raise BadImage(reason, path) from None


def resize_size(size: int, crop_pct: float) -> int:
    return math.floor(size / crop_pct)


def preprocess(img: Image.Image, cfg: Preprocess, input_size: int | None = None) -> np.ndarray:
    size = input_size or cfg.input_size
    short = resize_size(size, cfg.crop_pct)
    w, h = img.size
    if w <= h:
        new = (short, max(short, round(h * short / w)))
    else:
        new = (max(short, round(w * short / h)), short)
    img = img.resize(new, _RESAMPLE[cfg.interpolation])
    left = round((new[0] - size) / 2.0)
    top = round((new[1] - size) / 2.0)
    img = img.crop((left, top, left + size, top + size))
    x = np.asarray(img, dtype=np.float32) / 255.0
    x = (x - np.asarray(cfg.mean, np.float32)) / np.asarray(cfg.std, np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1))


def load_and_preprocess(path: str | Path, cfg: Preprocess, input_size: int | None = None) -> np.ndarray:
    return preprocess(load_image(path), cfg, input_size)
