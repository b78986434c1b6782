"""The reference model's LiteRT builds (the INT8 one is tests/conftest.py's `tflite_int8`, shared with other tests)."""
from __future__ import annotations

import pytest

from edgeincep.recipes import Recipe
from edgeincep.registry import get_backend


@pytest.fixture(scope="session")
def tflite_floats(reference_fp32) -> dict:
    arts = get_backend("tflite").references(reference_fp32, Recipe(), reference_fp32.parent)
    return {a.precision: a for a in arts}
