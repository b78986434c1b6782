"""A real OpenSSH server on 127.0.0.1 for the deploy and fleet tests: throwaway host and user keys.

`make test` installs Debian's openssh-server; without it the tests skip, or fail under CI (prerequisites.py).
"""
from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import prerequisites
import pytest

SSHD = Path("/usr/sbin/sshd")


def require_openssh() -> None:
    missing = [str(p) for p in (SSHD,) if not p.exists()] + [t for t in ("ssh-keygen",) if shutil.which(t) is None]
    if missing:
        prerequisites.missing(f"OpenSSH is not installed ({', '.join(missing)} missing: Debian's openssh-server, "
                              "openssh-client)")


def keygen(path: Path, comment: str) -> str:
    """A passphrase-less ed25519 key pair at `path`; returns the public line `ssh-ed25519 AAAA...`."""
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)], check=True)
    return " ".join(path.with_suffix(".pub").read_text().split()[:2])


def ssh_fingerprint(pub: Path) -> str:
    """The fingerprint as OpenSSH itself prints it, to hold our own formatting against."""
    out = subprocess.run(["ssh-keygen", "-l", "-E", "sha256", "-f", str(pub)], check=True, capture_output=True,
                         text=True).stdout.split()
    return out[1]


@dataclass
class Sshd:
    port: int
    user: str
    identity: Path
    host_pub_line: str
    host_pub: Path
    dir: Path

    keygen = staticmethod(keygen)
    ssh_fingerprint = staticmethod(ssh_fingerprint)

    def known_hosts(self, path: Path, line: str | None = None) -> Path:
        """A known_hosts file holding `line` (default: this server's real key) for [127.0.0.1]:port."""
        path.write_text(f"[127.0.0.1]:{self.port} {line or self.host_pub_line}\n")
        return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _banner(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            return s.recv(64).startswith(b"SSH-2.0-")
    except OSError:
        return False


def start_sshd(d: Path) -> tuple[Sshd, subprocess.Popen]:
    """An sshd on a free port of 127.0.0.1 with its own host key and one authorized user key, under `d`."""
    require_openssh()
    d.mkdir(parents=True, exist_ok=True)
    host_line = keygen(d / "host_key", "edgeincep-test-host")
    (d / "host_key.pub").rename(d / "host.pub")
    keygen(d / "user_key", "edgeincep-test-user")
    (d / "authorized_keys").write_text((d / "user_key.pub").read_text())
    os.chmod(d / "authorized_keys", 0o600)
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege-separation chroot, needed as root
    for _ in range(3):  # another process may take the free port between our probe and sshd's bind
        port = _free_port()
        (d / "sshd_config").write_text(f"""Port {port}
ListenAddress 127.0.0.1
HostKey {d / "host_key"}
PidFile {d / "sshd.pid"}
AuthorizedKeysFile {d / "authorized_keys"}
StrictModes no
UsePAM no
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
MaxStartups 50
LogLevel VERBOSE
""")
        with (d / "sshd.log").open("ab") as log:
            proc = subprocess.Popen([str(SSHD), "-D", "-e", "-f", str(d / "sshd_config")], stdout=log,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while proc.poll() is None and time.monotonic() < deadline and not _banner(port):
            time.sleep(0.05)
        if proc.poll() is None and _banner(port):
            break
        proc.kill()
        proc.wait()
    else:
        pytest.fail(f"sshd did not start: {(d / 'sshd.log').read_text()[-2000:]}")
    # sshd logs in the account of this uid, whatever USER says.
    return Sshd(port, pwd.getpwuid(os.geteuid()).pw_name, d / "user_key", host_line, d / "host.pub", d), proc


def _tree(pid: int) -> list[int]:
    """`pid` and every process below it (sshd gives each connection a session of its own, so no process group
    holds them all)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += children.get(p, [])
    return out


def stop_sshd(proc: subprocess.Popen, hard: bool = False) -> None:
    """Stop the server, every session it serves and what they run (`hard`: SIGKILL, as a board losing power)."""
    for pid in reversed(_tree(proc.pid)) if hard else [proc.pid]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL if hard else signal.SIGTERM)
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
