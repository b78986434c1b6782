"""`edgeincep deploy` against a real OpenSSH server on 127.0.0.1 (conftest.py): host keys, device-side
verification, safe extraction, atomic switch, rollback, interrupted uploads and the on-device --check."""
from __future__ import annotations

import ast
import contextlib
import fcntl
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
import uuid
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from user_cli import cli, one_error_line

from edgeincep.bundle.writer import write_bundle
from edgeincep.deploy import remote, ssh
from edgeincep.device import COMMON_NAME, COMMON_SOURCE
from edgeincep.device import JETSON_RUNNER_SOURCE as RUNNER_SOURCE
from edgeincep.fsutil import sha256_file
from edgeincep.paths import DEFAULT_CALIBRATION

SIZE = 16


# --- helpers -----------------------------------------------------------------------------------------

def plain_bundle(root: Path, version: str, name: str = "demo", extra: dict[str, bytes] | None = None) -> Path:
    files: dict[str, bytes | str | Path] = {"model.bin": f"weights {version}\n".encode() * 50,
                                            "labels.json": json.dumps(["a", "b"]), "run.py": "print('ok')\n",
                                            "notes/README.md": f"version {version}\n", **(extra or {})}
    return write_bundle(root / version / name, files, manifest={"device": "test", "version": version},
                        executable={"run.py"}).folder


def device_dir(dest: Path, name: str = "demo") -> Path:
    return dest / name


def current_version(dest: Path, name: str = "demo") -> str:
    return json.loads((device_dir(dest, name) / "current" / "manifest.json").read_text())["version"]


def leftovers(dest: Path, name: str = "demo") -> list[str]:
    d = device_dir(dest, name)
    return sorted([p.name for p in d.glob(".incoming-*")] + [p.name for p in (d / "releases").glob(".staged-*")]
                  + [p.name for p in d.glob(".check-*")])


def wait_for(predicate, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


@pytest.fixture()
def known(sshd, tmp_path) -> Path:
    return sshd.known_hosts(tmp_path / "known_hosts")


@pytest.fixture()
def opts(sshd, known, tmp_path) -> dict:
    """Keyword arguments of ssh.deploy/rollback/status for the loopback device."""
    return {"dest": str(tmp_path / "device"), "known_hosts": ssh.KnownHosts(known), "identity": sshd.identity}


@pytest.fixture()
def target(sshd) -> ssh.Target:
    return ssh.parse_target(f"{sshd.user}@127.0.0.1", sshd.port)


def cli_base(sshd, known: Path, dest: Path) -> list[object]:
    return ["--host", f"{sshd.user}@127.0.0.1", "--port", sshd.port, "--identity", sshd.identity,
            "--known-hosts", known, "--dest", dest]


# --- deploy, host keys ------------------------------------------------------------------------------

def test_deploy_puts_a_verified_copy_on_the_device_and_status_reverifies_it(sshd, known, tmp_path):
    folder = plain_bundle(tmp_path, "v1")
    dest = tmp_path / "device"
    proc = cli("deploy", folder, *cli_base(sshd, known, dest))
    assert proc.returncode == 0, proc.stderr
    assert "files verified on the device" in proc.stdout and "switched in" in proc.stdout

    current = device_dir(dest) / "current"
    assert current.is_symlink() and os.readlink(current).startswith("releases/")
    manifest = json.loads((folder / "manifest.json").read_text())
    on_device = sorted(p.relative_to(current.resolve()).as_posix() for p in current.resolve().rglob("*") if p.is_file())
    assert on_device == sorted([*manifest["files"], "manifest.json"])
    for name, entry in manifest["files"].items():
        assert sha256_file(current / name) == entry["sha256"]
    assert os.access(current / "run.py", os.X_OK) and not os.access(current / "labels.json", os.X_OK)
    assert leftovers(dest) == []

    proc = cli("deploy", "--status", "--name", "demo", *cli_base(sshd, known, dest))
    assert proc.returncode == 0, proc.stderr
    assert "yes" in proc.stdout and os.readlink(current).removeprefix("releases/") in proc.stdout
    # the tool notices a file changed on the device
    (current / "labels.json").write_text("[]")
    proc = cli("deploy", "--status", "--name", "demo", *cli_base(sshd, known, dest))
    assert "labels.json: content differs" in proc.stdout, proc.stdout


def test_unknown_host_key_is_refused_in_one_line_and_nothing_is_uploaded(sshd, tmp_path):
    folder = plain_bundle(tmp_path, "v1")
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    proc = cli("deploy", folder, *cli_base(sshd, empty, tmp_path / "device"))
    assert proc.returncode == ssh.HostKeyError.exit_code == 12
    line = one_error_line(proc)
    assert line == (f"error: 127.0.0.1:{sshd.port}: host key is not known (ssh-ed25519 "
                    f"{sshd.ssh_fingerprint(sshd.host_pub)}); verify it and add it to {empty}, "
                    "or pass --accept-new-host-key")
    assert not (tmp_path / "device").exists() and empty.read_text() == ""


def test_changed_host_key_is_refused_naming_both_keys_even_with_accept_new(sshd, tmp_path):
    folder = plain_bundle(tmp_path, "v1")
    other = sshd.keygen(tmp_path / "impostor", "not-the-device")
    known = sshd.known_hosts(tmp_path / "known_hosts", other)
    for extra in ([], ["--accept-new-host-key"]):
        proc = cli("deploy", folder, *cli_base(sshd, known, tmp_path / "device"), *extra)
        assert proc.returncode == 12
        line = one_error_line(proc)
        assert "HOST KEY CHANGED" in line
        assert sshd.ssh_fingerprint(tmp_path / "impostor.pub") in line
        assert sshd.ssh_fingerprint(sshd.host_pub) in line
    assert not (tmp_path / "device").exists()
    assert known.read_text() == f"[127.0.0.1]:{sshd.port} {other}\n"


def test_accept_new_host_key_records_it_and_later_deploys_need_no_flag(sshd, tmp_path):
    folder = plain_bundle(tmp_path, "v1")
    known = tmp_path / "ssh" / "known_hosts"  # not there yet: the folder is created too
    proc = cli("deploy", folder, *cli_base(sshd, known, tmp_path / "device"), "--accept-new-host-key")
    assert proc.returncode == 0, proc.stderr
    assert f"recorded 127.0.0.1:{sshd.port}'s host key" in proc.stderr
    assert known.read_text() == f"[127.0.0.1]:{sshd.port} {sshd.host_pub_line}\n"
    # OpenSSH itself accepts the recorded line for this host
    found = subprocess.run(["ssh-keygen", "-F", f"[127.0.0.1]:{sshd.port}", "-f", str(known)], capture_output=True)
    assert found.returncode == 0
    proc = cli("deploy", folder, *cli_base(sshd, known, tmp_path / "device"))
    assert proc.returncode == 0, proc.stderr
    assert "unchanged" in proc.stdout
    assert known.read_text().count("\n") == 1


def test_hashed_known_hosts_entries_are_recognised(sshd, known, tmp_path, target, opts):
    # Debian's ssh_config hashes known_hosts names (HashKnownHosts yes); such a file must work unchanged.
    subprocess.run(["ssh-keygen", "-H", "-f", str(known)], check=True, capture_output=True)
    assert known.read_text().startswith("|1|")
    assert ssh.deploy(plain_bundle(tmp_path, "v1"), target, **opts)["current"]


def test_revoked_host_key_is_refused(sshd, tmp_path, target, opts):
    known = tmp_path / "known_hosts"
    known.write_text(f"[127.0.0.1]:{sshd.port} {sshd.host_pub_line}\n@revoked * {sshd.host_pub_line}\n")
    with pytest.raises(ssh.HostKeyError, match="@revoked"):
        ssh.deploy(plain_bundle(tmp_path, "v1"), target, **{**opts, "known_hosts": ssh.KnownHosts(known)})


@pytest.mark.parametrize("case", ["bad-host", "closed-port", "wrong-key", "missing-bundle"])
def test_user_mistakes_are_one_line_without_traceback(sshd, known, tmp_path, case):
    folder = plain_bundle(tmp_path, "v1")
    args = cli_base(sshd, known, tmp_path / "device")
    if case == "bad-host":
        args[1], expect = "root@bad host!", "--host 'root@bad host!': expected user@host"
    elif case == "closed-port":
        args[3], expect = _closed_port(), "cannot connect"
    elif case == "wrong-key":
        sshd.keygen(tmp_path / "stranger", "stranger")
        args[5], expect = tmp_path / "stranger", "authentication failed"
    else:
        folder, expect = tmp_path / "nope", "bundle not found"
    proc = cli("deploy", folder, *args)
    assert proc.returncode == ssh.DeployError.exit_code == 11
    assert expect in one_error_line(proc)
    assert not (tmp_path / "device").exists()


def _closed_port() -> int:
    import socket

    with socket.socket() as s:  # bound but never listening: connections are refused
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- tampering and hostile archives ----------------------------------------------------------------

def test_tampered_bundle_is_refused_before_anything_changes_on_the_device(sshd, known, tmp_path, target, opts):
    ssh.deploy(plain_bundle(tmp_path, "v1"), target, **opts)
    dest = Path(opts["dest"])
    before = sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*"))
    v2 = plain_bundle(tmp_path, "v2")
    data = bytearray((v2 / "model.bin").read_bytes())
    data[7] ^= 1
    (v2 / "model.bin").write_bytes(bytes(data))
    for bundle in (v2, v2.with_name("demo.tar.gz")):
        if bundle.suffix == ".gz":  # the archive too, with the same byte flipped inside
            with tarfile.open(bundle, "w:gz") as tar:
                tar.add(v2, arcname="demo")
        proc = cli("deploy", bundle, *cli_base(sshd, known, dest))
        assert proc.returncode == 11
        assert "model.bin: content differs from the manifest" in one_error_line(proc)
    assert sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*")) == before
    assert current_version(dest) == "v1"


def _evil_archive(path: Path, kind: str, outside: Path) -> Path:
    manifest = json.dumps({"schema": remote.SCHEMA, "files": {}}).encode()
    with tarfile.open(path, "w:gz") as tar:
        def add(name: str, data: bytes = b"x", **kw) -> None:
            info = tarfile.TarInfo(name)
            info.size = len(data) if "type" not in kw else 0
            for k, v in kw.items():
                setattr(info, k, v)
            tar.addfile(info, io.BytesIO(data) if "type" not in kw else None)

        add("demo/manifest.json", manifest)
        if kind == "dotdot":
            add("demo/../../" + outside.name, b"pwned")  # from the upload folder up to outside's
        elif kind == "absolute":
            add(str(outside), b"pwned")
        elif kind == "symlink":
            add("demo/link", type=tarfile.SYMTYPE, linkname=str(outside.parent))
            add(f"demo/link/{outside.name}", b"pwned")
        elif kind == "hardlink":
            add("demo/hard", type=tarfile.LNKTYPE, linkname=str(outside))
    return path


@pytest.mark.parametrize("kind", ["dotdot", "absolute", "symlink", "hardlink"])
def test_device_refuses_hostile_archives_and_writes_nothing_outside(sshd, tmp_path, target, opts, kind):
    ssh.deploy(plain_bundle(tmp_path, "v1"), target, **opts)
    dest = Path(opts["dest"])
    # demo/../../evil from the upload folder lands in the bundle folder; the others aim at the test's folder
    outside = (device_dir(dest) / f"evil-{uuid.uuid4().hex}") if kind == "dotdot" else tmp_path / f"evil-{uuid.uuid4().hex}"
    evil = _evil_archive(tmp_path / "evil.tar.gz", kind, outside)
    # Straight to the device helper, skipping the host's own check (which refuses the same archive).
    with ssh.Device.connect(target, known_hosts=opts["known_hosts"], identity=sshd.identity) as device, \
            pytest.raises(ssh.DeployError, match=r"members are not allowed|escape|absolute") as info:
        device.call("install", root=opts["dest"], name="demo", payload=evil, manifest_sha="0" * 64, bytes=1000,
                    commit=True)
    assert str(info.value).startswith(f"127.0.0.1:{sshd.port}: archive member")
    assert not outside.exists()
    assert leftovers(dest) == [] and current_version(dest) == "v1"
    with pytest.raises(ssh.DeployError, match="refused: archive member"):
        ssh.deploy(evil.rename(tmp_path / "demo.tar.gz"), target, **opts)


@pytest.mark.parametrize("change", ["flipped-byte", "extra-file", "missing-file", "other-manifest"])
def test_device_recomputes_every_sha256_and_refuses_a_copy_that_differs(sshd, tmp_path, target, opts, change):
    dest = Path(opts["dest"])
    ssh.deploy(plain_bundle(tmp_path, "v1"), target, **opts)
    good = plain_bundle(tmp_path, "v2")
    manifest_sha = sha256_file(good / "manifest.json")
    if change == "flipped-byte":
        (good / "model.bin").write_bytes(b"X" + (good / "model.bin").read_bytes()[1:])
    elif change == "extra-file":
        (good / "notes" / "extra.txt").write_text("not listed")
    elif change == "missing-file":
        (good / "labels.json").unlink()
    else:
        manifest_sha = "f" * 64  # the host verified another manifest than the one that arrived
    with tarfile.open(tmp_path / "raw.tar.gz", "w:gz") as tar:
        tar.add(good, arcname="demo")
    expect = {"flipped-byte": "model.bin: content differs", "extra-file": "notes/extra.txt: not in the manifest",
              "missing-file": "labels.json: missing", "other-manifest": "is not the one the host verified"}[change]
    # Straight to the device helper: the host's own verification would stop all but the last case first.
    with ssh.Device.connect(target, known_hosts=opts["known_hosts"], identity=sshd.identity) as device, \
            pytest.raises(ssh.DeployError, match=expect):
        device.call("install", root=opts["dest"], name="demo", payload=tmp_path / "raw.tar.gz",
                    manifest_sha=manifest_sha, bytes=100_000, commit=True)
    assert leftovers(dest) == [] and current_version(dest) == "v1"
    assert len(list((device_dir(dest) / "releases").iterdir())) == 1


def test_device_helper_is_python_3_8_syntax():
    # JetPack 5 devices run Python 3.8; the helper is parsed there, so nothing newer may slip in.
    ast.parse(Path(remote.__file__).read_text(), feature_version=(3, 8))


def test_safe_extract_refuses_each_hostile_member_locally(tmp_path):
    for kind in ("dotdot", "absolute", "symlink", "hardlink"):
        out = tmp_path / kind
        out.mkdir()
        with (_evil_archive(tmp_path / f"{kind}.tar.gz", kind, tmp_path / "outside")).open("rb") as f, \
                pytest.raises(remote.Refused):
            remote.safe_extract(f, str(out), "demo", 10_000)
        assert not (tmp_path / "outside").exists() and not list(out.rglob("link"))


# --- versions ----------------------------------------------------------------------------------------

def test_second_deploy_keeps_the_first_as_previous_and_rollback_restores_it(sshd, known, tmp_path, target, opts):
    dest = Path(opts["dest"])
    first = ssh.deploy(plain_bundle(tmp_path, "v1"), target, **opts)
    second = ssh.deploy(plain_bundle(tmp_path, "v2"), target, **opts)
    assert second["previous"] == first["current"] and second["current"] != first["current"]
    assert current_version(dest) == "v2"
    assert json.loads((device_dir(dest) / "previous" / "manifest.json").read_text())["version"] == "v1"

    proc = cli("deploy", "--rollback", "--name", "demo", *cli_base(sshd, known, dest))
    assert proc.returncode == 0, proc.stderr
    assert current_version(dest) == "v1"
    state = ssh.status("demo", target, **opts)
    assert (state["current"], state["previous"]) == (first["current"], second["current"])
    assert state["current_problems"] == state["previous_problems"] == []
    # a third version drops the oldest release: only current and previous stay on the device
    ssh.deploy(plain_bundle(tmp_path, "v3"), target, **opts)
    assert sorted(p.name for p in (device_dir(dest) / "releases").iterdir()) == sorted(
        [first["current"], ssh.status("demo", target, **opts)["current"]])


def test_rollback_without_previous_is_one_line(sshd, known, tmp_path, target, opts):
    ssh.deploy(plain_bundle(tmp_path, "v1"), target, **opts)
    proc = cli("deploy", "--rollback", "--name", "demo", *cli_base(sshd, known, Path(opts["dest"])))
    assert proc.returncode == 11
    assert "no previous version to roll back to" in one_error_line(proc)
    assert current_version(Path(opts["dest"])) == "v1"


def test_a_second_deploy_while_one_runs_is_refused(sshd, tmp_path, target, opts):
    dest = Path(opts["dest"])
    ssh.deploy(plain_bundle(tmp_path, "v1"), target, **opts)
    with (device_dir(dest) / ".lock").open("a") as held:  # loopback: the device's own lock file
        fcntl.flock(held, fcntl.LOCK_EX)
        with pytest.raises(ssh.DeployError, match="another deploy or rollback of demo is running on this device"):
            ssh.deploy(plain_bundle(tmp_path, "v2"), target, **opts)
    assert current_version(dest) == "v1" and leftovers(dest) == []


def test_status_of_nothing_deployed_creates_nothing(sshd, tmp_path, target, opts):
    with pytest.raises(ssh.DeployError, match="nothing deployed as demo under"):
        ssh.status("demo", target, **opts)
    assert not Path(opts["dest"]).exists()


def _device_helpers() -> list[int]:
    """Pids of the device-side helper (loopback: they are processes on this machine)."""
    pids = []
    for proc in Path("/proc").glob("[0-9]*"):
        with contextlib.suppress(OSError):
            cmd = (proc / "cmdline").read_bytes()
            if b"edgeincep-remote.py" in cmd and b"install" in cmd:
                pids.append(int(proc.name))
    return pids


def test_interrupted_upload_leaves_current_untouched(sshd, tmp_path, target, opts):
    dest = Path(opts["dest"])
    ssh.deploy(plain_bundle(tmp_path, "v1"), target, **opts)
    big = plain_bundle(tmp_path, "v2", extra={"blob.bin": np.random.default_rng(0).bytes(1 << 20)})

    class Cut(Exception):
        pass

    def cut_mid_upload(kill: bool):
        def on_bytes(n: int) -> None:
            # only once the device really is writing the upload: the cut must hit a transfer in progress
            assert wait_for(lambda: list(device_dir(dest).glob(".incoming-*/*")), 10)
            if kill:
                assert wait_for(_device_helpers, 10)
                for pid in _device_helpers():
                    os.kill(pid, signal.SIGKILL)
            raise Cut
        return on_bytes

    # the connection drops: the helper sees the archive end early and removes its upload folder
    with pytest.raises(Cut):
        ssh.deploy(big, target, **opts, on_bytes=cut_mid_upload(kill=False))
    assert wait_for(lambda: leftovers(dest) == []), leftovers(dest)
    assert current_version(dest) == "v1"
    # the helper is killed outright: its upload folder stays, hidden, never current; the next deploy sweeps it
    with pytest.raises(Cut):
        ssh.deploy(big, target, **opts, on_bytes=cut_mid_upload(kill=True))
    assert wait_for(lambda: not _device_helpers())
    assert len(leftovers(dest)) == 1 and current_version(dest) == "v1"
    assert len(list((device_dir(dest) / "releases").iterdir())) == 1
    ssh.deploy(big, target, **opts)
    assert leftovers(dest) == [] and current_version(dest) == "v2"


# --- --check -------------------------------------------------------------------------------------------

def _tiny_onnx(path: Path) -> None:
    """A real classifier graph small enough for a test: flatten 3x16x16, one dense layer to 10 logits."""
    rng = np.random.default_rng(3)
    w = numpy_helper.from_array(rng.standard_normal((3 * SIZE * SIZE, 10)).astype(np.float32), "w")
    b = numpy_helper.from_array(np.zeros(10, np.float32), "b")
    graph = helper.make_graph(
        [helper.make_node("Flatten", ["input"], ["flat"], axis=1), helper.make_node("Gemm", ["flat", "w", "b"], ["logits"])],
        "tiny", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, SIZE, SIZE])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])], [w, b])
    # IR version 8 pairs with opset 17; onnx's default (its newest) can be ahead of the onnxruntime installed.
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), path)


@pytest.fixture(scope="module")
def check_files(tmp_path_factory) -> dict[str, bytes]:
    """The Jetson runner, a tiny model, four real sample images and the host's predictions for them."""
    stage = tmp_path_factory.mktemp("check-stage")
    _tiny_onnx(stage / "model.onnx")
    (stage / "run.py").write_bytes(RUNNER_SOURCE.read_bytes())
    (stage / COMMON_NAME).write_bytes(COMMON_SOURCE.read_bytes())
    (stage / "preprocess.json").write_text(json.dumps({"input_size": SIZE, "crop_pct": 1.0, "interpolation": "bilinear",
                                                        "mean": [0.5] * 3, "std": [0.25] * 3}))
    (stage / "labels.json").write_text(json.dumps([f"class{i}" for i in range(10)]))
    (stage / "manifest.json").write_text(json.dumps({"runner": {"onnx": "model.onnx", "engine": "model.engine"}}))
    (stage / "samples").mkdir()
    for cls in sorted(p for p in DEFAULT_CALIBRATION.iterdir() if p.is_dir())[:4]:
        shutil.copy(sorted(cls.glob("*.png"))[0], stage / "samples" / f"{cls.name}.png")
    subprocess.run([sys.executable, "run.py", "--backend", "onnxruntime", "--json", "expected.json", "samples"],
                   cwd=stage, check=True, capture_output=True)
    (stage / "manifest.json").unlink()
    return {p.relative_to(stage).as_posix(): p.read_bytes() for p in stage.rglob("*") if p.is_file()}


def check_bundle(root: Path, version: str, files: dict[str, bytes], expected: dict | None = None) -> Path:
    body = dict(files)
    if expected is not None:
        body["expected.json"] = json.dumps(expected).encode()
    manifest = {"version": version, "runner": {"onnx": "model.onnx", "engine": "model.engine"},
                "check": {"command": ["{python}", "run.py", "--backend", "onnxruntime", "--json", "{output}", "samples"],
                          "expected": "expected.json"}}
    return write_bundle(root / version / "demo", body, manifest=manifest, executable={"run.py"}).folder


def test_check_runs_the_runner_on_the_device_and_matches_the_host(sshd, tmp_path, target, opts, check_files):
    dest = Path(opts["dest"])
    ssh.deploy(plain_bundle(tmp_path, "v1"), target, **opts)
    # the loopback "device" python3 has no numpy: the venv's stands in for a device with its runtime installed
    result = ssh.deploy(check_bundle(tmp_path, "v2", check_files), target, **opts, check=True,
                        remote_python=sys.executable)
    c = result["check"]
    assert (c["images"], c["flipped"]) == (4, 0) and c["max_abs_diff"] < 1e-4 and c["backend"] == "onnxruntime"
    assert current_version(dest) == "v2" and leftovers(dest) == []


def test_check_with_altered_expectations_fails_and_keeps_the_old_version(sshd, tmp_path, target, opts, check_files):
    dest = Path(opts["dest"])
    ssh.deploy(plain_bundle(tmp_path, "v1"), target, **opts)
    expected = json.loads(check_files["expected.json"])
    expected["results"][0]["top1"] = (expected["results"][0]["top1"] + 1) % 10
    with pytest.raises(ssh.DeployError, match=r"--check failed: top-1 differs from the host's on 1 of 4 sample images"):
        ssh.deploy(check_bundle(tmp_path, "v2", check_files, expected), target, **opts, check=True,
                   remote_python=sys.executable)
    assert current_version(dest) == "v1" and leftovers(dest) == []
    assert len(list((device_dir(dest) / "releases").iterdir())) == 1


def test_check_without_a_check_entry_says_so_before_connecting(tmp_path):
    proc = cli("deploy", plain_bundle(tmp_path, "v1"), "--host", "nobody@127.0.0.1", "--port", _closed_port(),
               "--known-hosts", tmp_path / "kh", "--check")
    assert proc.returncode == 11
    assert "manifest.json has no 'check' entry" in one_error_line(proc)
