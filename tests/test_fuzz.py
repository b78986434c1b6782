"""Fuzzing the two parsers that read user files: recipes and images.

Property: any input gives either a valid result or the tool's own one-line error (UserError and its
subclasses), never another exception. Bounded and derandomized, so CI runs the same examples each
time in a few seconds; raise FUZZ_EXAMPLES locally for a longer hunt.
"""
from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from edgeincep.core.errors import DataError, UserError
from edgeincep.core.preprocess import Preprocess
from edgeincep.data.images import load_and_preprocess
from edgeincep.recipes import Recipe, load_recipe_file

N = int(os.environ.get("FUZZ_EXAMPLES", "150"))
FUZZ = settings(max_examples=N, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
CFG = Preprocess(input_size=75)

# Real section and key names, so generated recipes get past "unknown key" and reach the type checks.
KEYS = ["model", "target", "input_size", "calibration", "onnxruntime", "openvino", "budget", "fallback", "validation",
        "count", "method", "percentile", "num_bins", "seed", "chunk", "format", "per_channel", "compress_fp16",
        "preset", "max_top1_drop", "min_agreement", "enabled", "max_float_nodes", "limit", "batch_size"]
scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=20),
                    st.sampled_from(["minmax", "entropy", "u8s8", "auto", "2001-13-45", "0x", "1e", "~", ".inf"]))
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.one_of(st.sampled_from(KEYS), st.text(max_size=8)), inner,
                                                 max_size=5)), max_leaves=25)
documents = st.dictionaries(st.sampled_from(KEYS), values, max_size=6)
yaml_bits = st.sampled_from(["calibration:", "  count: ", "{", "}", "[", "]", ": ", "- ", "\n", "  ", "&a ", "*a",
                             "!!python/object:os.system", "!!int ", "!!float ", "!!timestamp ", "!!binary ", "? ",
                             "'", '"', "#", "---\n", "%YAML 1.1\n", "\t", "\x00", "\ufeff", "2001-02-30", "300"])


def _load(tmp_path: Path, data: bytes):
    path = tmp_path / "fuzz.yaml"
    path.write_bytes(data)
    try:
        recipe = load_recipe_file(path)
    except UserError as e:
        assert "\n" not in str(e) and str(path) in str(e)
        return None
    assert isinstance(recipe, Recipe)
    return recipe


@FUZZ
@given(data=st.binary(max_size=400))
def test_recipe_from_arbitrary_bytes(tmp_path, data):
    _load(tmp_path, data)


@FUZZ
@given(parts=st.lists(st.one_of(yaml_bits, st.text(max_size=6)), max_size=30))
def test_recipe_from_yaml_like_text(tmp_path, parts):
    _load(tmp_path, "".join(parts).encode("utf-8", "surrogatepass"))


@FUZZ
@given(doc=documents)
def test_recipe_from_arbitrary_nested_settings(tmp_path, doc):
    recipe = _load(tmp_path, yaml.safe_dump(doc, allow_unicode=True).encode("utf-8", "surrogatepass"))
    if recipe is not None:  # what validated must round-trip through its own schema
        assert Recipe.model_validate(recipe.model_dump()) == recipe


def _seed_images() -> list[bytes]:
    rng = np.random.default_rng(0)
    out = []
    for fmt, mode in (("PNG", "RGB"), ("JPEG", "RGB"), ("GIF", "P"), ("WEBP", "RGB"), ("BMP", "RGB"), ("TIFF", "I;16"),
                      ("PNG", "LA"), ("JPEG", "CMYK")):
        img = Image.fromarray(rng.integers(0, 255, (20, 30, 3)).astype(np.uint8))
        img = img.convert(mode) if mode != "I;16" else Image.fromarray(rng.integers(0, 65535, (20, 30)).astype(np.uint16))
        buf = io.BytesIO()
        img.save(buf, fmt)
        out.append(buf.getvalue())
    return out


SEEDS = _seed_images()


def _check_image(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "fuzz.png"  # the suffix is ignored: Pillow sniffs the content
    path.write_bytes(data)
    try:
        x = load_and_preprocess(path, CFG)
    except DataError as e:
        assert "\n" not in str(e) and str(path) in str(e)
        return
    assert x.shape == (3, 75, 75) and x.dtype == np.float32 and np.isfinite(x).all()


@FUZZ
@given(data=st.binary(max_size=2000))
def test_image_loader_arbitrary_bytes(tmp_path, data):
    _check_image(tmp_path, data)


@FUZZ
@given(seed=st.sampled_from(range(len(SEEDS))),
       edits=st.lists(st.tuples(st.sampled_from(["set", "cut", "insert"]), st.floats(0, 1), st.binary(min_size=1, max_size=8)),
                      min_size=1, max_size=6))
def test_image_loader_mutated_real_images(tmp_path, seed, edits):
    data = bytearray(SEEDS[seed])
    for op, where, payload in edits:
        i = int(where * (len(data) - 1))
        if op == "set":
            data[i:i + len(payload)] = payload
        elif op == "cut":
            del data[i:i + 16 * len(payload)]
        else:
            data[i:i] = payload
    _check_image(tmp_path, bytes(data))
