"""The kinds of device edgeincep makes bundles for: one record each, and the one place a kind is defined.

A backend names the kinds it bundles for (`Backend.bundle_devices`); the wheels a bundle carries are downloaded
for the kind's platform; the run's device check emulates the kinds whose runner runs on an arm64 Linux CPU. Each
kind's pinned runtime requirements stay in `pins.py`, which must run without this package
(ci/arm64-sysroot.sh), and a test holds its keys to these kinds.
"""
from __future__ import annotations

from dataclasses import dataclass

from edgeincep.core.bundle import DevicePlatform
from edgeincep.core.errors import UserError


@dataclass(frozen=True)
class DeviceKind:
    name: str                 # the manifest's "device", a bundle folder's suffix: rpi, coral, intel, jetson
    board: str                # what a person calls it
    platform: DevicePlatform  # its usual OS, for the wheels a bundle carries
    # its bundles' runner runs on an arm64 Linux CPU, so the host runs them as the board would (qemu-user)
    emulated: bool = False


# Each kind's usual OS: Raspberry Pi OS / Debian 12 (glibc 2.36, CPython 3.11) on a Pi or a Coral host, Ubuntu
# 22.04 or newer on an Intel box (glibc 2.35; CPython 3.11, the oldest the numpy pin supports), and JetPack 6
# (Ubuntu 22.04, CPython 3.10), whose TensorRT bindings come from the OS, not from the bundle.
KINDS: dict[str, DeviceKind] = {k.name: k for k in (
    DeviceKind("rpi", "Raspberry Pi 4 / 5", DevicePlatform("aarch64", "3.11", "2.36"), emulated=True),
    # the Coral bundle's CPU model runs where no Edge TPU is attached
    DeviceKind("coral", "Coral Edge TPU", DevicePlatform("aarch64", "3.11", "2.36"), emulated=True),
    DeviceKind("intel", "Intel CPU", DevicePlatform("x86_64", "3.11", "2.35")),
    DeviceKind("jetson", "NVIDIA Jetson (JetPack 6)",
               DevicePlatform("aarch64", "3.10", "2.35", provided=("tensorrt",), system_site_packages=True)),
)}


def device_kind(name: str) -> DeviceKind:
    try:
        return KINDS[name]
    except KeyError:
        raise UserError(f"unknown device '{name}' (known: {', '.join(KINDS)})") from None


def emulated_kinds() -> tuple[str, ...]:
    return tuple(k.name for k in KINDS.values() if k.emulated)
