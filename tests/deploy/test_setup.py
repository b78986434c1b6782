"""`edgeincep deploy --setup`: bundles that carry their runtime's wheels, deployed to devices whose Python has none of
it and no network, against a real OpenSSH server on 127.0.0.1 (conftest.py).

The devices: for the Intel bundle, a fresh x86-64 virtual environment (no numpy, Pillow or OpenVINO); for the
Raspberry Pi bundle, Debian's arm64 python3 under qemu-user as a Pi 4 with none of the bundle's wheels installed
(bundle/emulate.board_python). Both run without network: in a network namespace of their own with only a downed
loopback, so an install that reached for an index would fail.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import prerequisites
import pytest
from user_cli import cli, final_error_line

from edgeincep.bundle import emulate
from edgeincep.bundle.writer import verify_bundle
from edgeincep.deploy import remote, ssh
from edgeincep.pipeline.bundle_stage import write_artifact_bundle
from edgeincep.recipes import Recipe


def _offline_or_missing() -> None:
    done = subprocess.run(["unshare", "--net", "true"], capture_output=True, text=True)
    if done.returncode != 0:
        prerequisites.missing(f"cannot run a device without network (unshare --net: {done.stderr.strip()})")


@pytest.fixture(scope="module")
def bare_x86(tmp_path_factory) -> Path:
    """An Intel "device" Python: a fresh virtual environment with nothing installed, and no network."""
    _offline_or_missing()
    d = tmp_path_factory.mktemp("x86-device")
    subprocess.run([sys._base_executable, "-m", "venv", "--without-pip", str(d / "venv")], check=True)
    wrapper = d / "python3"
    wrapper.write_text(f'#!/bin/sh\nexec unshare --net "{d / "venv" / "bin" / "python3"}" "$@"\n')
    wrapper.chmod(0o755)
    probe = subprocess.run([str(wrapper), "-c", "import numpy"], capture_output=True, text=True)
    assert "No module named 'numpy'" in probe.stderr
    return wrapper


@pytest.fixture(scope="module")
def bare_pi4(tmp_path_factory) -> Path:
    """A Raspberry Pi 4 "device" Python: emulated arm64 Debian python3 with none of the bundle's wheels, no network."""
    reason = emulate.unavailable_reason()
    if reason:
        prerequisites.missing(f"the emulated Pi cannot run: {reason}")
    _offline_or_missing()
    wrapper = emulate.board_python(emulate.BOARDS["pi4"], tmp_path_factory.mktemp("pi4-device"), bare=True,
                                   offline=True)
    probe = subprocess.run([str(wrapper), "-c", "import platform; print(platform.machine()); import numpy"],
                           capture_output=True, text=True, timeout=120)
    assert probe.stdout.split() == ["aarch64"] and "No module named 'numpy'" in probe.stderr, probe.stderr
    return wrapper


@pytest.fixture(scope="module")
def intel_bundle(openvino_int8, tmp_path_factory) -> Path:
    return write_artifact_bundle(openvino_int8, "intel", {}, Recipe(), tmp_path_factory.mktemp("intel"),
                                 wheels=True).folder


@pytest.fixture(scope="module")
def rpi_bundle(tflite_int8, tmp_path_factory) -> Path:
    return write_artifact_bundle(tflite_int8, "rpi", {}, Recipe(), tmp_path_factory.mktemp("rpi"), wheels=True).folder


def deploy_args(sshd, tmp_path: Path, bundle: Path, python: Path, *extra: str) -> list:
    return ["deploy", bundle, "--host", f"{sshd.user}@127.0.0.1", "--port", sshd.port, "--identity", sshd.identity,
            "--known-hosts", sshd.known_hosts(tmp_path / "known_hosts"), "--dest", tmp_path / "device",
            "--remote-python", python, *extra]


def runtime_record(dest: Path, name: str) -> dict:
    return json.loads((dest / name / "current" / remote.RUNTIME).read_text())


def test_a_bundle_with_wheels_lists_them_with_checksums_and_says_how_to_install_them(intel_bundle):
    manifest = json.loads((intel_bundle / "manifest.json").read_text())
    wheels = manifest["runtime"]["wheels"]
    assert manifest["runtime"]["imports"] == ["numpy", "PIL", "openvino"]
    assert wheels["machine"] == "x86_64" and wheels["python"] == "3.11"
    names = {Path(f).name.split("-")[0].lower() for f in wheels["files"]}
    assert {"numpy", "pillow", "openvino", "pip"} <= names
    assert all(manifest["files"][f]["sha256"] for f in wheels["files"]) and verify_bundle(intel_bundle) == []
    assert wheels["bytes"] == sum(manifest["files"][f]["size"] for f in wheels["files"])
    readme = (intel_bundle / "README.md").read_text()
    assert "--no-index --find-links wheels -r requirements.txt" in readme and "--setup" in readme


def test_check_on_a_device_without_the_runtime_is_one_line_and_switches_nothing_in(sshd, intel_bundle, bare_x86,
                                                                                  tmp_path):
    done = cli(*deploy_args(sshd, tmp_path, intel_bundle, bare_x86, "--check"), timeout=300)
    assert done.returncode == 11
    line = final_error_line(done)
    assert "the bundle's runtime is missing on the device" in line and "cannot import numpy" in line
    assert "(Python 3.11" in line and "--setup" in line and "--remote-python" in line
    assert not (tmp_path / "device" / intel_bundle.name / "current").exists()


def test_setup_installs_the_bundles_own_wheels_offline_then_the_check_passes(sshd, intel_bundle, bare_x86,
                                                                              tmp_path):
    done = cli(*deploy_args(sshd, tmp_path, intel_bundle, bare_x86, "--setup", "--check"), timeout=600)
    assert done.returncode == 0, done.stderr
    assert "6/6 top-1 equal" in done.stdout and "from the bundle's wheels" in done.stdout
    dest = tmp_path / "device"
    record = runtime_record(dest, intel_bundle.name)
    assert record["source"] == "wheels" and record["python"].startswith(str(dest / intel_bundle.name / "envs"))
    assert not (dest / intel_bundle.name / "current" / "env").exists()  # the environment lives beside the releases
    versions = subprocess.run([record["python"], "-c", "import numpy, openvino; print(numpy.__version__)"],
                              capture_output=True, text=True, check=True).stdout.strip()
    assert versions == "2.4.6"
    status = ssh.status(intel_bundle.name, ssh.Target(sshd.user, "127.0.0.1", sshd.port), dest=str(dest),
                        known_hosts=ssh.KnownHosts(tmp_path / "known_hosts"), identity=sshd.identity,
                        remote_python=str(bare_x86))
    assert status["current_runtime"] == record and status["current_problems"] == status["current_extras"] == []
    print(done.stdout)


def test_later_deploys_reuse_the_environment_and_new_releases_of_the_same_runtime_run_on_it(
        sshd, openvino_int8, intel_bundle, bare_x86, fmnist_val, tmp_path):
    common = {"dest": str(tmp_path / "device"), "identity": sshd.identity, "remote_python": str(bare_x86),
              "known_hosts": ssh.KnownHosts(sshd.known_hosts(tmp_path / "known_hosts"))}
    target = ssh.Target(sshd.user, "127.0.0.1", sshd.port)
    first = ssh.deploy(intel_bundle, target, setup=True, **common)
    again = ssh.deploy(intel_bundle, target, setup=True, check=True, **common)
    assert first["setup"]["reused"] is False and again["setup"]["reused"] is True
    assert again["setup"]["env"] == first["setup"]["env"] and again["unchanged"]
    # A new version of the bundle (other samples, no wheels, the same requirements): no --setup needed.
    newer = write_artifact_bundle(openvino_int8, "intel", {}, Recipe(), tmp_path / "newer",
                                  sample_dir=fmnist_val).folder
    assert (newer / "manifest.json").read_bytes() != (intel_bundle / "manifest.json").read_bytes()
    third = ssh.deploy(newer, target, check=True, **common)
    assert third["check"]["flipped"] == 0 and third["check"]["python"] == first["setup"]["python"]
    envs = sorted(p.name for p in (tmp_path / "device" / newer.name / "envs").iterdir())
    assert envs == [first["setup"]["env"]]


def test_setup_without_wheels_says_how_to_get_them(sshd, openvino_int8, bare_x86, tmp_path):
    plain = write_artifact_bundle(openvino_int8, "intel", {}, Recipe(), tmp_path / "plain").folder
    assert json.loads((plain / "manifest.json").read_text())["runtime"]["wheels"] is None
    done = cli(*deploy_args(sshd, tmp_path, plain, bare_x86, "--setup"), timeout=300)
    assert done.returncode == 11
    line = final_error_line(done)
    assert "carries no wheels" in line and "--wheels" in line and "--index" in line
    assert not (tmp_path / "device" / plain.name / "current").exists()


def test_wheels_for_another_device_python_are_refused_before_anything_is_installed(monkeypatch):
    import platform

    here = platform.machine()
    assert remote._wheels_misfit({"machine": here, "python": "{}.{}".format(*sys.version_info[:2])}) is None
    assert "CPython 3.9" in remote._wheels_misfit({"machine": here, "python": "3.9"})
    assert "riscv64" in remote._wheels_misfit({"machine": "riscv64", "python": "3.11"})
    monkeypatch.setattr(platform, "libc_ver", lambda *a, **k: ("glibc", "2.31"))
    misfit = remote._wheels_misfit({"machine": here, "python": "{}.{}".format(*sys.version_info[:2]),
                                    "glibc": "2.35"})
    assert misfit == "the bundle's wheels need glibc 2.35 or newer, the device has glibc 2.31"


def test_rpi_bundle_sets_up_from_its_wheels_on_an_emulated_pi_and_passes_its_check(sshd, rpi_bundle, bare_pi4,
                                                                                   tmp_path):
    before = cli(*deploy_args(sshd, tmp_path, rpi_bundle, bare_pi4, "--check"), timeout=600)
    assert before.returncode == 11 and "cannot import numpy" in final_error_line(before)
    done = cli(*deploy_args(sshd, tmp_path, rpi_bundle, bare_pi4, "--setup", "--check"), timeout=900)
    assert done.returncode == 0, done.stderr
    print(done.stdout)
    assert "6/6 top-1 equal" in done.stdout and "litert-cpu" in done.stdout
    record = runtime_record(tmp_path / "device", rpi_bundle.name)
    assert record["machine"] == "aarch64" and record["source"] == "wheels"
    probe = subprocess.run([record["python"], "-c", "import platform, ai_edge_litert; print(platform.machine())"],
                           capture_output=True, text=True, timeout=120)
    assert probe.stdout.strip() == "aarch64", probe.stderr
