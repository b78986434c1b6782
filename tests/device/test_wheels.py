"""The device's wheels, downloaded on the host for the device's platform (what `--wheels` bundles carry)."""
from __future__ import annotations

import pytest
from user_cli import cli, one_error_line

from edgeincep.core.errors import UserError
from edgeincep.device import wheels
from edgeincep.device.kinds import device_kind
from edgeincep.device.wheels import device_wheels, manylinux_platforms, needed_glibc

SMALL = "typing_extensions==4.16.0\n"  # one small pure wheel: the download and cache paths, cheaply


@pytest.fixture
def offline(monkeypatch):
    """pip with no reachable index and none of this machine's pip configuration (its extra indexes, find-links)."""
    monkeypatch.setenv("PIP_CONFIG_FILE", "/dev/null")
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")
    monkeypatch.setenv("PIP_RETRIES", "0")
    monkeypatch.setenv("PIP_TIMEOUT", "2")


def test_every_manylinux_tag_up_to_the_devices_glibc_is_named():
    tags = manylinux_platforms("aarch64", "2.36")
    assert tags[0] == "manylinux2014_aarch64" and tags[1] == "manylinux_2_17_aarch64"
    assert tags[-1] == "manylinux_2_36_aarch64" and len(tags) == 1 + 20


def test_the_oldest_glibc_a_wheel_admits_is_read_from_its_tags():
    assert needed_glibc("numpy-2.4.6-cp311-cp311-manylinux_2_27_aarch64.manylinux_2_28_aarch64.whl") == (2, 27)
    assert needed_glibc("protobuf-7.36.2-cp310-abi3-manylinux2014_aarch64.whl") == (2, 17)
    assert needed_glibc("pip-25.0.1-py3-none-any.whl") == (0, 0)


def test_a_device_python_that_is_not_a_cpython_version_is_refused():
    with pytest.raises(UserError, match=r"expected a CPython version like 3\.11"):
        device_wheels(SMALL, device_kind("rpi").platform, "python3")


def test_wheels_are_downloaded_once_then_come_from_the_cache_offline(tmp_path, monkeypatch, request):
    monkeypatch.setenv("EDGEINCEP_CACHE", str(tmp_path))
    first = device_wheels(SMALL, device_kind("rpi").platform)
    names = sorted(p.name for p in first.files)
    assert names[0].startswith("pip-25.0.1-") and names[1].startswith("typing_extensions-4.16.0-")
    assert first.installer.name.startswith("pip-") and first.manifest("wheels")["glibc"] is None
    request.getfixturevalue("offline")
    again = device_wheels(SMALL, device_kind("rpi").platform)
    assert again.folder == first.folder and again.files == first.files
    # A damaged cache is noticed (size differs from the record) and downloaded again, here: refused offline.
    first.files[1].write_bytes(b"truncated")
    with pytest.raises(UserError, match=r"cannot download the device's wheels \(aarch64, CPython 3.11\)"):
        device_wheels(SMALL, device_kind("rpi").platform)


def test_offline_bundle_with_wheels_is_one_line_and_writes_nothing(tflite_int8, tmp_path, offline, monkeypatch):
    monkeypatch.setenv("EDGEINCEP_CACHE", str(tmp_path / "cache"))
    done = cli("bundle", "--device", "rpi", tflite_int8.path, "--out", tmp_path / "out", "--wheels", timeout=300)
    assert done.returncode == 2
    line = one_error_line(done)
    assert "cannot download the device's wheels (aarch64, CPython 3.11) from the package index" in line
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
    assert not list((tmp_path / "cache" / "wheels").glob("*/" + wheels.RECORD))


def test_device_python_needs_wheels(tflite_int8, tmp_path):
    done = cli("bundle", "--device", "rpi", tflite_int8.path, "--out", tmp_path, "--device-python", "3.12")
    assert done.returncode == 2 and "add --wheels" in one_error_line(done)
