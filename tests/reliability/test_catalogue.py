"""The reliability catalogue (docs/reliability.md), rows that run in-process through the real CLI.

Each test drives `edgeincep` with a broken or hostile input and asserts the exit code, exactly one
`error:` line matching the documented message, no traceback, and no artifact left behind. The
CLI's catch-all turns any exception that is not a UserError into exit 1 "unexpected ...", so a
regression to an uncaught exception fails these tests on the exit code.
"""
from __future__ import annotations

import importlib.util
import os
import pickle
import re
import struct
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from edgeincep.core.preprocess import Preprocess
from edgeincep.data.images import load_image
from edgeincep.models import create_model
from edgeincep.paths import DEFAULT_CALIBRATION

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "reliability.md"
TINY = ["--model", "inception_resnet_v1_cls", "--width", "0.125", "--input-size", "75"]


def one_error(res, code: int, pattern: str) -> str:
    """The run failed with `code` and exactly one `error:` line matching `pattern`, and no traceback."""
    text = res.stdout + res.stderr
    assert "Traceback" not in text, text
    errors = [line for line in res.stderr.splitlines() if line.startswith("error:")]
    assert res.exit_code == code, f"exit {res.exit_code}, expected {code}: {res.stderr}"
    assert len(errors) == 1, res.stderr
    assert re.search(pattern, errors[0]), f"{pattern!r} not in {errors[0]!r}"
    return errors[0]


def no_artifacts(out: Path) -> None:
    assert not out.exists() or not [p for p in out.rglob("*") if p.name != ".edgeincep.lock"], list(out.rglob("*"))


def export_with_images(cli, tmp_path, *files: tuple[str, bytes]):
    """`export` whose verification images are `files` (name, bytes) in a flat folder."""
    folder = tmp_path / "imgs"
    folder.mkdir(exist_ok=True)
    for name, data in files:
        (folder / name).write_bytes(data)
    return cli("export", *TINY, "--num-classes", "10", "--verify-images", folder, "--out", tmp_path / "o"), folder


def png_header_only(width: int, height: int) -> bytes:
    """A valid PNG signature and IHDR claiming width x height, then a few bytes of IDAT: a bomb's header."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))


def real_png() -> bytes:
    return next(DEFAULT_CALIBRATION.glob("*/*.png")).read_bytes()


# ---------------------------------------------------------------------------------------------- images

def test_image_corrupt_bytes(cli, tmp_path):
    res, folder = export_with_images(cli, tmp_path, ("junk.png", b"\x89PNG\r\n\x1a\n" + bytes(range(200))))
    one_error(res, 4, rf"1 unreadable image\(s\) in {re.escape(str(folder))}: .*junk\.png: not a recognised image; "
                      "fix or remove them, or pass --skip-bad to skip and count them$")
    no_artifacts(tmp_path / "o")


def test_image_truncated(cli, tmp_path):
    data = Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3)).astype(np.uint8))
    path = tmp_path / "full.png"
    data.save(path)
    res, _ = export_with_images(cli, tmp_path, ("cut.png", path.read_bytes()[:300]))
    one_error(res, 4, r"cut\.png: corrupt or truncated \(.*\)")
    no_artifacts(tmp_path / "o")


def test_image_zero_bytes(cli, tmp_path):
    res, _ = export_with_images(cli, tmp_path, ("empty.jpg", b""))
    one_error(res, 4, r"empty\.jpg: empty file \(0 bytes\)")


def test_image_decompression_bomb(cli, tmp_path):
    bomb = png_header_only(100_000, 100_000)  # 10 Gpx claimed by a 100-byte file
    path = tmp_path / "bomb.png"
    path.write_bytes(bomb)
    t0 = time.perf_counter()
    with pytest.raises(Exception, match="decompression-bomb guard"):
        load_image(path)
    assert time.perf_counter() - t0 < 1.0  # refused from the header, never decoded
    res, _ = export_with_images(cli, tmp_path, ("bomb.png", bomb))
    one_error(res, 4, r"bomb\.png: refused, too many pixels \(decompression-bomb guard")


def test_image_just_over_pixel_limit(cli, tmp_path):
    # 10000 x 9000 = 90 Mpx: above the 89.5 Mpx limit but below Pillow's own 2x error threshold, so
    # only edgeincep's own check (Pillow merely warns) stands between it and a 270 MB decode.
    res, _ = export_with_images(cli, tmp_path, ("big.png", png_header_only(10_000, 9_000)))
    one_error(res, 4, r"big\.png: .*decompression-bomb guard")


def test_image_extreme_aspect_ratio(cli, tmp_path):
    path = tmp_path / "strip.png"
    Image.new("L", (2, 200_000), 128).save(path)  # 1 KB file; resizing it unbounded would need 3.5 GB
    t0 = time.perf_counter()
    res, _ = export_with_images(cli, tmp_path, ("strip.png", path.read_bytes()))
    one_error(res, 4, r"strip\.png: 2x200000 px: aspect ratio beyond 100:1")
    assert time.perf_counter() - t0 < 20


def test_image_cmyk_is_converted(tmp_path):
    path = tmp_path / "cmyk.jpg"
    Image.new("RGB", (16, 16), (200, 100, 50)).convert("CMYK").save(path, quality=100)
    assert Image.open(path).mode == "CMYK"
    assert np.abs(np.asarray(load_image(path))[8, 8].astype(int) - (200, 100, 50)).max() <= 2


@pytest.mark.parametrize("fmt", ["png", "tif"])
def test_image_16bit_is_scaled(tmp_path, fmt):
    path = tmp_path / f"g16.{fmt}"
    Image.fromarray(np.full((8, 8), 1000, np.uint16)).save(path)
    assert Image.open(path).mode.startswith("I;16")
    # 1000/65535 of full scale is 3.9/255: scaled, not clipped to 255 nor truncated to 0
    assert tuple(np.asarray(load_image(path))[0, 0]) == (4, 4, 4)


@pytest.mark.parametrize("fmt", ["gif", "png", "webp"])
def test_image_animated_uses_first_frame(tmp_path, fmt):
    frames = [Image.new("RGB", (8, 8), c) for c in ((255, 0, 0), (0, 0, 255))]
    path = tmp_path / f"anim.{fmt}"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0,
                   **({"lossless": True} if fmt == "webp" else {}))
    assert Image.open(path).n_frames == 2
    assert tuple(np.asarray(load_image(path))[0, 0]) == (255, 0, 0)


def test_image_palette_and_alpha_composite_on_white(tmp_path):
    p = Image.new("P", (4, 4), 0)
    p.putpalette([0, 0, 0] * 256)
    p.info["transparency"] = 0
    p.save(tmp_path / "p.png", transparency=0)
    Image.new("LA", (4, 4), (0, 0)).save(tmp_path / "la.png")
    for name in ("p.png", "la.png"):
        assert np.asarray(load_image(tmp_path / name)).min() == 255  # fully transparent black shows as white


def test_image_skip_bad_counts_and_continues(cli, tmp_path):
    res, _ = export_with_images(cli, tmp_path, ("good.png", real_png()), ("bad.png", b"not an image"))
    assert res.exit_code == 4
    res = cli("export", *TINY, "--num-classes", "10", "--verify-images", tmp_path / "imgs", "--skip-bad",
              "--out", tmp_path / "o")
    assert res.exit_code == 0, res.stderr
    assert "on 1 images" in res.stdout


# ------------------------------------------------------------------------------------- image folders

def test_folder_empty(cli, tmp_path):
    (tmp_path / "imgs").mkdir()
    (tmp_path / "imgs" / "notes.txt").write_text("no images here")
    res = cli("export", *TINY, "--verify-images", tmp_path / "imgs", "--out", tmp_path / "o")
    one_error(res, 4, r"imgs: no images found \(looked for .*\.png.*flat or in class subfolders\)")


def test_calibration_smaller_than_asked(tmp_path, capsys):
    from edgeincep.quantize.calibration import load_calibration

    calib = load_calibration(DEFAULT_CALIBRATION / "bag", Preprocess(input_size=75), count=300)
    assert len(calib) == 30 and calib.summary()["requested"] == 300
    assert re.search(r"note: calibration: .*bag has 30 images, fewer than the 300 the recipe asks for; "
                     r"calibrating on all 30", " ".join(capsys.readouterr().err.split()))


def test_calibration_all_images_unreadable(tmp_path):
    from edgeincep.core.errors import DataError
    from edgeincep.quantize.calibration import load_calibration

    for i in range(3):
        (tmp_path / f"bad{i}.png").write_bytes(b"junk")
    with pytest.raises(DataError, match="only 0 calibration images were readable, fewer than the 1 required"):
        load_calibration(tmp_path, Preprocess(input_size=75), count=10, skip_bad=True)


def test_calibration_skipped_files_keep_paths_aligned(tmp_path):
    """With --skip-bad, paths[i] must still name the image in x[i]: labels and cache keys come from paths."""
    from edgeincep.quantize.calibration import load_calibration

    good = sorted(DEFAULT_CALIBRATION.glob("bag/*.png"))[:3]
    for p in good:
        (tmp_path / p.name).write_bytes(p.read_bytes())
    (tmp_path / "0_bad.png").write_bytes(b"junk")
    calib = load_calibration(tmp_path, Preprocess(input_size=75), count=10, skip_bad=True)
    assert len(calib.x) == len(calib.paths) == 3 and calib.skipped == 1
    assert not any("0_bad" in p for p in calib.paths)


def test_unlabelled_folder_where_labels_are_needed(cli, tmp_path):
    for split in ("train", "val"):
        (tmp_path / "d" / split).mkdir(parents=True)
        (tmp_path / "d" / split / "a.png").write_bytes(real_png())
    res = cli("train", "--model", "inception_resnet_v1", "--data", tmp_path / "d", "--out", tmp_path / "m.safetensors")
    one_error(res, 4, r"d: training needs class subfolders in both train/ and val/")
    assert not (tmp_path / "m.safetensors").exists()


# ---------------------------------------------------------------------------------------- checkpoints

@pytest.fixture(scope="module")
def tiny_sd():
    torch.manual_seed(0)
    return {k: v.contiguous() for k, v in create_model("inception_resnet_v1_cls", width=0.125, num_classes=10)
            .state_dict().items()}


def test_checkpoint_missing(cli, tmp_path):
    res = cli("export", *TINY, "--weights", tmp_path / "nope.safetensors", "--out", tmp_path / "o")
    one_error(res, 3, r"nope\.safetensors: checkpoint file not found")
    no_artifacts(tmp_path / "o")


def test_checkpoint_is_a_directory(cli, tmp_path):
    res = cli("export", *TINY, "--weights", tmp_path, "--out", tmp_path / "o")
    one_error(res, 3, r"is a directory, expected a \.safetensors/\.pt/\.pth checkpoint file")


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_checkpoint_truncated(cli, tmp_path, tiny_sd, suffix):
    path = tmp_path / f"cut{suffix}"
    if suffix == ".pt":
        torch.save(tiny_sd, path)
    else:
        save_file(tiny_sd, str(path))
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    res = cli("export", *TINY, "--weights", path, "--out", tmp_path / "o")
    one_error(res, 3, rf"cut{re.escape(suffix)}: not a readable .*corrupt or truncated")
    no_artifacts(tmp_path / "o")


def test_checkpoint_zero_bytes(cli, tmp_path):
    (tmp_path / "e.pt").write_bytes(b"")
    res = cli("export", *TINY, "--weights", tmp_path / "e.pt", "--out", tmp_path / "o")
    one_error(res, 3, r"e\.pt: checkpoint is empty \(0 bytes\)")


def test_checkpoint_wrong_architecture(cli, tmp_path):
    path = tmp_path / "v4.safetensors"
    save_file({k: v.contiguous() for k, v in create_model("inception_v4", width=0.125, num_classes=10)
               .state_dict().items()}, str(path))
    res = cli("export", *TINY, "--weights", path, "--out", tmp_path / "o")
    one_error(res, 3, r"v4\.safetensors: does not fit inception_resnet_v1_cls: \d+ missing, \d+ unexpected")
    no_artifacts(tmp_path / "o")


def test_checkpoint_wrong_class_count(cli, tmp_path, tiny_sd):
    path = tmp_path / "ten.safetensors"
    save_file(tiny_sd, str(path), metadata={"width": "0.125"})
    res = cli("export", *TINY, "--num-classes", "5", "--weights", path, "--out", tmp_path / "o")
    one_error(res, 3, r"ten\.safetensors: has a 10-class classifier, but 5 classes were asked for")
    no_artifacts(tmp_path / "o")


def test_checkpoint_needing_pickle(cli, tmp_path, tiny_sd):
    path = tmp_path / "obj.pth"
    torch.save({"state_dict": tiny_sd, "optimizer_class": Image.Image}, path)  # a class: needs a GLOBAL to unpickle
    res = cli("export", *TINY, "--weights", path, "--out", tmp_path / "o")
    one_error(res, 3, r"obj\.pth: refused: the checkpoint holds pickled Python objects beyond tensors")


class _Payload:
    marker = ""

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("form", ["torch-zip", "torch-legacy", "raw-pickle"])
def test_checkpoint_malicious_pickle_never_runs(cli, tmp_path, tiny_sd, form):
    marker = tmp_path / "pwned"
    _Payload.marker = str(marker)
    path = tmp_path / "evil.pth"
    if form == "raw-pickle":
        path.write_bytes(pickle.dumps({"state_dict": tiny_sd, "x": _Payload()}))
    else:
        torch.save({"state_dict": tiny_sd, "x": _Payload()}, path, _use_new_zipfile_serialization=form == "torch-zip")
    res = cli("export", *TINY, "--weights", path, "--out", tmp_path / "o")
    one_error(res, 3, r"evil\.pth: refused: the checkpoint holds pickled Python objects")
    assert not marker.exists()
    no_artifacts(tmp_path / "o")


# ---------------------------------------------------------------------------------------------- recipes

@pytest.fixture()
def val_dir(tmp_path) -> Path:
    root = tmp_path / "val"
    (root / "bag").mkdir(parents=True)
    (root / "bag" / "a.png").write_bytes(real_png())
    return root


def run_with_recipe(cli, tmp_path, val_dir, text: str | None, recipe: Path | None = None):
    if recipe is None:
        recipe = tmp_path / "r.yaml"
        recipe.write_text(text)
    t0 = time.perf_counter()
    res = cli("run", "--model", "inception_resnet_v1", "--val", val_dir, "--recipe", recipe, "--out", tmp_path / "o")
    # refused before the export starts: nothing written, and no minutes lost
    assert time.perf_counter() - t0 < 10
    no_artifacts(tmp_path / "o")
    return res


def test_recipe_unknown_key(cli, tmp_path, val_dir):
    res = run_with_recipe(cli, tmp_path, val_dir, "calibraton: {count: 10}\n")
    one_error(res, 2, r"r\.yaml: recipe key 'calibraton': Extra inputs are not permitted")


def test_recipe_wrong_type(cli, tmp_path, val_dir):
    res = run_with_recipe(cli, tmp_path, val_dir, "budget: {max_top1_drop: lots}\n")
    one_error(res, 2, r"r\.yaml: recipe key 'budget\.max_top1_drop': Input should be a valid number")


def test_recipe_impossible_value(cli, tmp_path, val_dir):
    res = run_with_recipe(cli, tmp_path, val_dir, "calibration: {count: 0, percentile: 120}\n")
    one_error(res, 2, r"recipe key 'calibration\.count': Input should be greater than or equal to 1 \(\+1 more problems\)")


def test_recipe_missing_file_references(cli, tmp_path, val_dir):
    res = run_with_recipe(cli, tmp_path, val_dir, None, recipe=tmp_path / "gone.yaml")
    one_error(res, 2, r"gone\.yaml: recipe file not found")
    res = cli("run", "--model", "inception_resnet_v1", "--val", tmp_path / "noval", "--out", tmp_path / "o")
    one_error(res, 4, r"noval: image folder not found")
    res = cli("run", "--model", "inception_resnet_v1", "--val", val_dir, "--calib", tmp_path / "nocalib",
              "--out", tmp_path / "o2")
    one_error(res, 4, r"nocalib: image folder not found")
    assert not list((tmp_path / "o2").glob("*.onnx"))


def test_recipe_hostile_yaml_tag_never_runs(cli, tmp_path, val_dir):
    marker = tmp_path / "pwned"
    res = run_with_recipe(cli, tmp_path, val_dir, f"calibration: !!python/object/apply:os.system ['touch {marker}']\n")
    one_error(res, 2, r"recipe is not valid YAML at line 1, column 14: could not determine a constructor for the tag")
    assert not marker.exists()


@pytest.mark.parametrize("text,message", [
    ("calibration: {seed: 2001-13-45}\n", r"recipe is not valid YAML: a malformed value \(month must be in 1\.\.12\)"),
    ("[" * 5000 + "]" * 5000, r"recipe is not valid YAML: nested too deeply"),
    ("calibration: {count: 3}\ncalibration: {count: 4}\n",
     r"recipe is not valid YAML at line 2, column 1: key 'calibration' appears twice \(lines 1 and 2\)"),
    ("model: x\x00\n", r"recipe is not valid YAML: unacceptable character #x0000"),
])
def test_recipe_malformed_yaml(cli, tmp_path, val_dir, text, message):
    one_error(run_with_recipe(cli, tmp_path, val_dir, text), 2, message)


# ----------------------------------------------------------------------------------------- the CLI itself

def test_debug_flag_shows_the_traceback(tmp_path):
    from click.testing import CliRunner

    from edgeincep.cli import main
    from edgeincep.core.errors import CheckpointError

    res = CliRunner().invoke(main, ["--debug", "export", *TINY, "--weights", str(tmp_path / "x.pt"), "--out",
                                    str(tmp_path / "o")])
    assert isinstance(res.exception, CheckpointError)  # re-raised, so Python prints the traceback


def test_corrupt_onnx_given_to_validate(cli, tmp_path, val_dir):
    (tmp_path / "model.onnx").write_bytes(b"\x08\x07" + os.urandom(300))
    res = cli("validate", tmp_path / "model.onnx", "--images", val_dir)
    one_error(res, 2, r"model\.onnx: not a readable ONNX model")


# --------------------------------------------------------------------------- the table and the tests agree

def _table_rows() -> list[list[str]]:
    rows = []
    for line in DOC.read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells and cells[0].isdigit():
            rows.append(cells)
    return rows


def test_catalogue_table_and_tests_are_in_sync():
    rows = _table_rows()
    assert len(rows) >= 25 and [int(r[0]) for r in rows] == list(range(1, len(rows) + 1))
    named = set()
    for row in rows:
        ids = re.findall(r"`(tests/[\w/]+\.py)::(\w+)`", row[-1])
        assert ids or "pending" in row[-1], f"row {row[0]} names no test: {row}"
        assert row[4].strip("`").lstrip("-").isdigit() or "pending" in row[-1] or row[4] == "-", row
        for file, name in ids:
            spec = importlib.util.spec_from_file_location(f"_catalogue_{Path(file).stem}", ROOT / file)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            assert callable(getattr(module, name, None)), f"row {row[0]}: {file}::{name} does not exist"
            named.add((file, name))
    tested = [r for r in rows if "pending" not in r[-1]]
    assert len(tested) >= 25
    # every catalogue test is listed in the table, so neither side can rot alone
    for path in sorted((ROOT / "tests" / "reliability").glob("test_*.py")):
        file = str(path.relative_to(ROOT))
        text = path.read_text(encoding="utf-8")
        for name in re.findall(r"^def (test_\w+)", text, flags=re.M):
            if name != "test_catalogue_table_and_tests_are_in_sync":
                assert (file, name) in named, f"{file}::{name} is not in docs/reliability.md"
