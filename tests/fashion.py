"""Helpers for tests that need Debian's Fashion-MNIST (installed by .ci/run)."""
from __future__ import annotations

import pytest

from edgeincep.data.fashion_mnist import DEBIAN_DIR

needs_fashion_mnist = pytest.mark.skipif(
    not (DEBIAN_DIR / "t10k-images-idx3-ubyte.gz").exists(),
    reason="Debian package dataset-fashion-mnist is not installed (apt-get install dataset-fashion-mnist)",
)
