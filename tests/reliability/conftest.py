"""Fixtures shared by the catalogue's subprocess rows."""
from __future__ import annotations

from pathlib import Path

import pytest
from reliability_support import make_split_images


@pytest.fixture(scope="session")
def split_images(tmp_path_factory) -> tuple[Path, Path]:
    return make_split_images(tmp_path_factory.mktemp("split"))
