"""Any common image becomes the model's normalised RGB input, with the same arithmetic everywhere."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from edgeincep.core.preprocess import Preprocess
from edgeincep.data.images import BadImage, load_image, preprocess, resize_size

CFG = Preprocess(input_size=75, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), crop_pct=0.875, interpolation="bicubic")


def _save(img: Image.Image, path, **kw):
    img.save(path, **kw)
    return path


@pytest.mark.parametrize("mode,fmt", [("L", "PNG"), ("P", "PNG"), ("CMYK", "JPEG"), ("RGBA", "PNG"),
                                      ("LA", "PNG"), ("RGB", "WEBP"), ("RGB", "BMP"), ("I;16", "PNG")])
def test_every_mode_becomes_8bit_rgb(tmp_path, mode, fmt):
    img = Image.new("RGB", (40, 30), (200, 100, 50)).convert(mode) if mode != "I;16" else \
        Image.fromarray(np.full((30, 40), 40000, np.uint16))
    path = _save(img, tmp_path / f"x.{fmt.lower()}", format=fmt)
    out = load_image(path)
    assert out.mode == "RGB" and out.size == (40, 30)


def test_sixteen_bit_is_scaled_not_clipped(tmp_path):
    path = _save(Image.fromarray(np.full((8, 8), 32768, np.uint16)), tmp_path / "a.png")
    assert abs(int(np.asarray(load_image(path))[0, 0, 0]) - 128) <= 1


def test_alpha_is_composited_on_white(tmp_path):
    path = _save(Image.new("RGBA", (4, 4), (0, 0, 0, 0)), tmp_path / "t.png")
    assert np.asarray(load_image(path)).min() == 255


def test_exif_orientation_is_applied(tmp_path):
    img = Image.new("RGB", (40, 20), (0, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    path = _save(img, tmp_path / "o.jpg", exif=exif)
    assert load_image(path).size == (20, 40)


def test_animated_image_uses_first_frame(tmp_path):
    frames = [Image.new("RGB", (8, 8), c) for c in ((255, 0, 0), (0, 0, 255))]
    path = tmp_path / "a.webp"
    frames[0].save(path, save_all=True, append_images=frames[1:], lossless=True)
    assert tuple(np.asarray(load_image(path))[0, 0]) == (255, 0, 0)


@pytest.mark.parametrize("content,match", [(b"", "empty file"), (b"not an image at all", "not a recognised image")])
def test_unreadable_files_raise_bad_image_naming_the_file(tmp_path, content, match):
    path = tmp_path / "bad.png"
    path.write_bytes(content)
    with pytest.raises(BadImage, match=match) as e:
        load_image(path)
    assert str(path) in str(e.value)


def test_truncated_png_is_bad(tmp_path):
    path = _save(Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)), tmp_path / "a.png")
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(BadImage, match="corrupt or truncated"):
        load_image(path)


def test_decompression_bomb_is_refused_before_decoding(tmp_path):
    path = _save(Image.new("1", (10000, 10000)), tmp_path / "bomb.png")
    with pytest.raises(BadImage, match="decompression-bomb"):
        load_image(path)


def test_preprocess_resizes_crops_and_normalises():
    x = preprocess(Image.new("RGB", (120, 90), (255, 0, 128)), CFG)
    assert x.shape == (3, 75, 75) and x.dtype == np.float32
    np.testing.assert_allclose(x[:, 10, 10], [1.0, -1.0, 128 / 255 * 2 - 1], atol=1e-6)


def test_preprocess_keeps_the_centre():
    a = np.zeros((100, 100, 3), np.uint8)
    a[:, 50:] = 255  # left half black, right half white
    x = preprocess(Image.fromarray(a), CFG)
    assert x[0, :, 0].max() < -0.99 and x[0, :, -1].min() > 0.99
    assert resize_size(75, 0.875) == 85
