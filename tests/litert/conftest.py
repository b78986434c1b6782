from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def tflite_int8(build_int8):
    return build_int8("tflite")
