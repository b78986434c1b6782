"""Device-bundle fixtures: image files in every mode the host preprocessing handles (the INT8 artifacts the
bundles are made of are tests/conftest.py's)."""
from __future__ import annotations

import io
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgeincep.paths import DEFAULT_CALIBRATION


@pytest.fixture(scope="session")
def mixed_images(tmp_path_factory) -> list[Path]:
    """Fashion-MNIST images plus files that take every branch of the preprocessing: alpha, palette
    transparency, 16-bit, CMYK, EXIF rotation, extreme aspect, upscaling, other containers."""
    root = tmp_path_factory.mktemp("mixed")
    classes = sorted(p for p in DEFAULT_CALIBRATION.iterdir() if p.is_dir())
    paths = []
    for cls in classes:
        src = sorted(cls.glob("*.png"))[0]
        paths.append(Path(shutil.copy(src, root / f"{cls.name}_{src.name}")))
    rng = np.random.default_rng(0)
    photo = Image.fromarray(rng.integers(0, 256, (143, 211, 3), dtype=np.uint8), "RGB")
    rgba = photo.convert("RGBA")
    rgba.putalpha(Image.fromarray(rng.integers(0, 256, (143, 211), dtype=np.uint8), "L"))
    files = {
        "rgba.png": rgba, "la.png": rgba.convert("LA"), "cmyk.jpg": photo.convert("CMYK"),
        "i16.png": Image.fromarray(rng.integers(0, 65536, (90, 77), dtype=np.uint16)),
        "tiny.bmp": photo.resize((9, 5)), "wide.webp": photo.resize((640, 97)), "tall.gif": photo.resize((40, 300)),
    }
    pal = photo.convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    pal.info["transparency"] = 3
    files["palette.png"] = pal
    for name, img in files.items():
        kw = {"transparency": 3} if name == "palette.png" else {"lossless": True} if name.endswith(".webp") else {}
        img.save(root / name, **kw)
        paths.append(root / name)
    # EXIF orientation 6 (rotate 90 CW): the host turns the pixels upright before resizing.
    exif = Image.Exif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    photo.save(buf, "JPEG", quality=90, exif=exif)
    (root / "exif_rotated.jpg").write_bytes(buf.getvalue())
    paths.append(root / "exif_rotated.jpg")
    return paths
