"""Device kinds are defined once: every backend's bundles, pin list and emulation name only these."""
from __future__ import annotations

import pytest

from edgeincep.core.errors import UserError
from edgeincep.device import pins
from edgeincep.device.kinds import KINDS, device_kind, emulated_kinds
from edgeincep.registry import get_backend, list_backends


def test_every_backend_bundles_for_known_kinds_and_every_kind_has_a_backend():
    named = {d for name in list_backends() for d in get_backend(name).bundle_devices}
    assert named == set(KINDS)


def test_the_pinned_requirements_are_for_known_kinds():
    assert set(pins.REQUIREMENTS) <= set(KINDS) and set(pins.NOTES) <= set(KINDS)


def test_the_emulated_kinds_are_the_arm64_ones_whose_bundles_bring_their_runtime():
    assert set(emulated_kinds()) == {"rpi", "coral"}
    assert all(device_kind(k).platform.machine == "aarch64" for k in emulated_kinds())
    assert device_kind("jetson").platform.provided == ("tensorrt",)


def test_an_unknown_kind_is_one_error_listing_the_known():
    with pytest.raises(UserError, match="unknown device 'pi3' \\(known: rpi, coral, intel, jetson\\)"):
        device_kind("pi3")
