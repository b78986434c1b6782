"""System pieces the test suite runs for real (Debian packages, the arm64 sysroot), installed by
`make test` (ci/system-packages.sh --tests, ci/arm64-sysroot.sh).

A test whose piece is missing skips with the reason when someone runs pytest by hand on a machine without
it; with CI set it fails instead, since there the set-up must have provided it and a skip would hide that.
"""
from __future__ import annotations

import os
from typing import NoReturn

import pytest

from edgeincep.data import fashion_mnist as fm


def missing(reason: str) -> NoReturn:
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; the set-up (make test) must provide it, so this test may not be skipped here")
    pytest.skip(f"{reason} (make test installs it)")


def require_fashion_mnist() -> None:
    if not all((fm.DEBIAN_DIR / f).is_file() for pair in fm.FILES.values() for f in pair):
        missing(f"Debian package dataset-fashion-mnist is not installed ({fm.DEBIAN_DIR} is missing)")
