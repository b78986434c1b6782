"""Validation split across Ray tasks gives the single-process logits bit for bit."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from edgeincep.data.folders import select_images
from edgeincep.export.onnx import preprocess_from_metadata, read_metadata
from edgeincep.registry import get_backend
from edgeincep.validate.ort import reference_predictor
from edgeincep.validate.runner import run_predictors
from edgeincep.validate.sharded import bounds, sharded_logits


def test_shards_start_on_batch_boundaries_and_cover_every_image_once():
    assert bounds(150, 3, 16) == [(0, 64), (64, 128), (128, 150)]
    assert bounds(10, 4, 16) == [(0, 10)]
    spans = bounds(1000, 7, 64)
    assert spans[0][0] == 0 and spans[-1][1] == 1000 and all(a % 64 == 0 for a, _ in spans)
    assert all(b == c for (_, b), (c, _) in itertools.pairwise(spans))


@pytest.fixture(scope="module")
def ray_runtime():
    from edgeincep.ray_runtime import ray_session

    with ray_session(None) as ray:  # one local runtime for the module
        yield ray


def test_sharded_logits_equal_the_single_process_ones(ray_runtime, reference_fp32, build_int8, fmnist_val):
    art = build_int8("onnxruntime")
    images = select_images(fmnist_val, 150)
    pre = preprocess_from_metadata(read_metadata(reference_fp32))
    predictors = [reference_predictor(reference_fp32, 1), get_backend("onnxruntime").load(art, 1)]
    want, want_labels, want_kept = run_predictors(predictors, images, pre, batch_size=16, show=False)
    got, labels, kept = sharded_logits(reference_fp32, [art], images, pre, batch_size=16, threads=1, shards=3)
    assert kept == want_kept == list(range(150))
    np.testing.assert_array_equal(labels, want_labels)
    assert set(got) == set(want)
    for name in want:
        np.testing.assert_array_equal(got[name], want[name])


def test_the_validate_stage_on_ray_writes_the_same_record(ray_runtime, reference_fp32, build_int8, fmnist_val):
    from edgeincep.pipeline.validate_stage import validate

    art = build_int8("onnxruntime")
    images = select_images(fmnist_val, 100)
    here = validate(reference_fp32, [art], images, batch_size=16)
    there = validate(reference_fp32, [art], images, batch_size=16, ray=True, shards=2)
    assert there == here
