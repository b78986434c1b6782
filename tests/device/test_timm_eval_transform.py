"""Every image reaches the model as timm's eval transform gives it, on the host and in every device bundle.

The reference here is a transcription of what timm's `transforms_imagenet_eval` builds (Resize(floor(size /
crop_pct)), CenterCrop(size), ToTensor, Normalize) as torchvision computes it for a PIL image, step by step from
their sources: `_compute_resized_output_size` (the longer side truncated by int()), `center_crop` (offsets
round((side - size) / 2), zero padding first where the image is smaller), `to_tensor` and `normalize` in torch.
Noise images are the hardest case: any shift or resampling difference shows in every pixel.
"""
from __future__ import annotations

import importlib.util
import json
import math

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

from edgeincep.core.preprocess import Preprocess
from edgeincep.data.images import load_and_preprocess, preprocess
from edgeincep.device import common
from edgeincep.models.registry import get_spec, list_models

PIL_MODES = {"nearest": Image.Resampling.NEAREST, "bilinear": Image.Resampling.BILINEAR,
             "bicubic": Image.Resampling.BICUBIC, "lanczos": Image.Resampling.LANCZOS}

# (width, height): ImageNet's common shapes both ways, phone photos, odd and prime sizes, one pixel either side of
# the resize and crop sizes, tiny images (upsampled), and aspect ratios up to the 100:1 edgeincep accepts.
SHAPES = [(500, 375), (375, 500), (500, 333), (333, 500), (640, 480), (480, 640), (800, 533), (533, 800),
          (400, 300), (300, 400), (500, 374), (500, 376), (1024, 768), (1280, 720), (720, 1280), (1920, 1080),
          (4032, 3024), (3024, 4032), (299, 299), (340, 340), (341, 341), (342, 341), (341, 342), (333, 333),
          (300, 299), (513, 257), (257, 513), (101, 99), (99, 101), (31, 17), (7, 5), (2, 3), (1, 1),
          (1000, 10), (10, 1000), (160, 160), (75, 76), (600, 399)]


def timm_eval(img: Image.Image, cfg: Preprocess) -> np.ndarray:
    """timm's eval transform for a PIL image, as torchvision executes it."""
    size = cfg.input_size
    scale_size = math.floor(size / cfg.crop_pct)                      # timm: transforms_imagenet_eval
    w, h = img.size                                                   # torchvision: _compute_resized_output_size
    short, long = (w, h) if w <= h else (h, w)
    new_short, new_long = scale_size, int(scale_size * long / short)
    new_w, new_h = (new_short, new_long) if w <= h else (new_long, new_short)
    if (new_h, new_w) != (h, w):                                      # F.resize returns the image itself then
        img = img.resize((new_w, new_h), PIL_MODES[cfg.interpolation])
    a = np.array(img, np.uint8, copy=True)                            # F.center_crop
    ih, iw = a.shape[:2]
    if size > iw or size > ih:
        left, top = ((size - iw) // 2 if size > iw else 0), ((size - ih) // 2 if size > ih else 0)
        right, bottom = ((size - iw + 1) // 2 if size > iw else 0), ((size - ih + 1) // 2 if size > ih else 0)
        a = np.pad(a, ((top, bottom), (left, right), (0, 0)))
        ih, iw = a.shape[:2]
    top, left = round((ih - size) / 2.0), round((iw - size) / 2.0)  # torchvision: int(round(...))
    a = a[top:top + size, left:left + size]
    t = torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1).contiguous().to(torch.float32).div(255)  # to_tensor
    mean, std = torch.tensor(cfg.mean), torch.tensor(cfg.std)         # Normalize(mean=torch.tensor(mean), ...)
    return t.sub_(mean[:, None, None]).div_(std[:, None, None]).numpy()


def registered_configs() -> list[Preprocess]:
    """Every preprocessing the model registry gives a model (its weights' configs), and each at 75 px, the
    reference models' size."""
    found = {get_spec(name).preprocess for name in list_models()}
    return sorted(found | {Preprocess(75, p.mean, p.std, p.crop_pct, p.interpolation) for p in found}, key=repr)


def noise(w: int, h: int, seed: int = 0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed + w * 7919 + h).integers(0, 256, (h, w, 3), np.uint8), "RGB")


@pytest.fixture(scope="module")
def shipped_common():
    """device/common.py loaded on its own, as a bundle's run.py imports it (edgeincep_common.py, no package)."""
    spec = importlib.util.spec_from_file_location("edgeincep_common", common.__file__)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_the_registry_configs_are_those_of_timm_and_facenet():
    configs = {(p.input_size, p.crop_pct, p.interpolation) for p in registered_configs()}
    assert {(299, 0.875, "bicubic"), (299, 0.8975, "bicubic"), (160, 1.0, "bilinear")} <= configs


def test_the_longer_side_is_truncated_as_torchvision_does():
    # 500x375 at 299 px / 0.875: the shorter side becomes 341 and the longer 500 * 341 / 375 = 454.67 -> 454
    assert common.resized_shape(500, 375, 341) == (454, 341)
    assert common.resized_shape(375, 500, 341) == (341, 454)
    assert common.crop_box(454, 341, 299) == (78, 21, 377, 320)  # round(77.5) = 78, round(21.0) = 21


@pytest.mark.parametrize("cfg", registered_configs(), ids=lambda p: f"{p.input_size}px-{p.crop_pct}-{p.interpolation}")
def test_every_shape_matches_timm_on_the_host_and_the_device(cfg, shipped_common):
    device_cfg = json.loads(json.dumps(cfg.to_dict()))  # what a bundle's preprocess.json gives the runner
    worst = {}
    for w, h in SHAPES:
        img = noise(w, h)
        want = timm_eval(img, cfg)
        host = preprocess(img, cfg)
        device = shipped_common.preprocess(img, device_cfg)
        assert host.shape == want.shape == (3, cfg.input_size, cfg.input_size) and host.dtype == np.float32
        worst[f"{w}x{h}"] = max(float(np.abs(host - want).max()), float(np.abs(device - want).max()))
    assert max(worst.values()) <= 1e-6, {k: v for k, v in worst.items() if v > 1e-6}


@pytest.mark.parametrize("interpolation", sorted(PIL_MODES))
@pytest.mark.parametrize("crop_pct", [0.875, 0.8975, 0.95, 1.0])
def test_every_interpolation_and_crop_pct(interpolation, crop_pct, shipped_common):
    cfg = Preprocess(96, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), crop_pct, interpolation)
    for w, h in [(500, 375), (375, 500), (97, 131), (3, 2), (640, 480), (96, 96)]:
        img = noise(w, h, seed=1)
        want = timm_eval(img, cfg)
        assert np.abs(preprocess(img, cfg) - want).max() <= 1e-6, (w, h)
        assert np.abs(shipped_common.preprocess(img, cfg.to_dict()) - want).max() <= 1e-6, (w, h)


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_an_exif_rotated_photo_is_seen_upright_then_transformed_as_timm(tmp_path, orientation, shipped_common):
    """A phone's portrait JPEG is stored landscape with an Orientation tag. edgeincep turns it upright first (timm's
    own folder loader does not read the tag), then applies timm's arithmetic to the upright image."""
    cfg = get_spec("inception_resnet_v2").preprocess
    path = tmp_path / f"photo-{orientation}.jpg"
    exif = Image.Exif()
    exif[0x0112] = orientation
    noise(640, 480, seed=2).save(path, quality=92, exif=exif)
    with Image.open(path) as raw:
        upright = ImageOps.exif_transpose(raw).convert("RGB")
    assert upright.size == ((480, 640) if orientation in (6, 8) else (640, 480))
    want = timm_eval(upright, cfg)
    assert np.abs(load_and_preprocess(path, cfg) - want).max() <= 1e-6
    assert np.abs(shipped_common.preprocess(shipped_common.load_image(path), cfg.to_dict()) - want).max() <= 1e-6
