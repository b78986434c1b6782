"""Deploy a bundle to a device over SSH: host-key checked, verified on the device, switched in atomically.

The protocol, one SSH connection per command:

1. The host verifies the bundle (every sha256 against manifest.json, no extra or linked files) and
   packs exactly the verified files into a temporary tar.gz. A tampered bundle stops here.
2. Connect; the server's host key must already be in known_hosts (or, with --accept-new-host-key,
   is recorded when the host has no key at all there). A changed key is always refused. Only then
   does authentication, and anything on the device, happen.
3. remote.py (standard library only) is piped to the device's python3 over stdin, followed by the
   archive. It extracts into NAME/.incoming-XXXX refusing absolute, '..', link and special members,
   recomputes every sha256, checks the manifest is the one the host verified, renames the folder to
   NAME/releases/<id> and switches the `current` symlink with rename(2); the old target becomes
   `previous`. Any failure removes the upload and leaves `current` as it was.
4. With --setup, the release is staged first and given a virtual environment with the bundle's runtime,
   installed from the bundle's own wheels with pip --no-index (or, with --index, from the device's
   package index); one environment serves every release with the same device Python and requirements.
5. With --check, the release is staged first, the helper tests that the bundle's runtime imports (a
   missing module is one line naming it, the Python and the fix), the bundle's own check command runs
   there on the bundle's sample images, and it becomes current only if its top-1 predictions equal the host's.

Paramiko rather than the ssh binary: the host key is examined before authentication with full control
over the decision and its message (fingerprints of both keys, no parsing of ssh's stderr), the upload
streams with exact byte progress, and a device needs nothing but sshd and python3.
"""
from __future__ import annotations

import base64
import contextlib
import getpass
import hashlib
import json
import os
import re
import shlex
import shutil
import socket
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import paramiko

from edgeincep.core.errors import UserError
from edgeincep.deploy import remote

REMOTE_SOURCE = Path(remote.__file__).read_bytes()
CHUNK = 256 * 1024
DEFAULT_DEST = "~/edgeincep"
# Exec'd on the device: reads exactly the helper's bytes from stdin, leaving the archive that follows for it.
_BOOT = ("import sys;sys.version_info>=(3,8) or sys.exit('edgeincep needs Python 3.8+ on the device, not '"
         "+sys.version.split()[0]);exec(compile(sys.stdin.buffer.read({n}),'edgeincep-remote.py','exec'))")


class DeployError(UserError):
    """The deploy could not happen or was refused; the device's `current` is unchanged unless the message says so."""

    exit_code = 11


class HostKeyError(DeployError):
    """The device's SSH host key is unknown, changed or revoked: nothing was sent to it."""

    exit_code = 12


# --- the device's address ----------------------------------------------------------------------------

_HOST = re.compile(r"^(?:(?P<user>[A-Za-z0-9._][A-Za-z0-9._-]*)@)?"
                   r"(?P<host>\[[0-9A-Fa-f:.]+\]|[0-9A-Fa-f]*:[0-9A-Fa-f:.]+|[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?)$")


@dataclass(frozen=True)
class Target:
    user: str
    host: str
    port: int

    @property
    def label(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def known_hosts_name(self) -> str:
        """The name OpenSSH files this host under: bare on port 22, `[host]:port` otherwise."""
        return self.host if self.port == 22 else f"[{self.host}]:{self.port}"


def parse_target(spec: str, port: int | None = None) -> Target:
    m = _HOST.match(spec or "")
    if not m:
        raise DeployError(f"--host {spec!r}: expected user@host or host (an IPv6 address in brackets); "
                          "give the port with --port")
    if port is not None and not 0 < port < 65536:
        raise DeployError(f"--port {port}: not a TCP port (1-65535)")
    return Target(m["user"] or getpass.getuser(), m["host"].strip("[]"), port or 22)


# --- host keys -------------------------------------------------------------------------------------

def fingerprint(key: paramiko.PKey) -> str:
    """OpenSSH's form: `ssh-ed25519 SHA256:<base64 of the key blob's sha256, unpadded>`."""
    digest = base64.b64encode(hashlib.sha256(key.asbytes()).digest()).decode().rstrip("=")
    return f"{key.get_name()} SHA256:{digest}"


def default_known_hosts() -> Path:
    return Path.home() / ".ssh" / "known_hosts"


GLOBAL_KNOWN_HOSTS = Path("/etc/ssh/ssh_known_hosts")


def _host_matches(patterns: list[str], name: str) -> bool:
    """OpenSSH's known_hosts host field: names, hashed |1| names, * and ? wildcards, ! negations."""
    hit = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        pattern = pattern.removeprefix("!")
        if pattern.startswith("|1|"):
            ok = paramiko.HostKeys.hash_host(name, pattern) == pattern
        else:
            # only * and ? are wildcards: the brackets of [host]:port are literal, unlike fnmatch's
            rx = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern.lower())
            ok = re.fullmatch(rx, name.lower()) is not None
        if ok and negated:
            return False
        hit = hit or ok
    return hit


@dataclass
class KnownHosts:
    """The user's known_hosts (read, and written by --accept-new-host-key) plus the system-wide one (read only)."""

    path: Path
    extra: tuple[Path, ...] = ()

    def _load(self) -> tuple[list[paramiko.PKey], list[tuple[Path, list[str], paramiko.PKey]]]:
        """(revoked keys, [(file, host patterns, key)]); like ssh, a line that does not parse is skipped."""
        revoked: list[paramiko.PKey] = []
        entries: list[tuple[Path, list[str], paramiko.PKey]] = []
        for path in (self.path, *self.extra):
            if not path.is_file():
                continue
            try:
                text = path.read_text(encoding="utf-8", errors="replace")
            except OSError as e:
                raise DeployError(f"known_hosts file cannot be read ({e.strerror or e})", path) from None
            for raw in text.splitlines():
                line = raw.strip()
                if not line or line.startswith("#"):
                    continue
                marker = None
                if line.startswith("@"):
                    marker, _, line = line.partition(" ")
                    line = line.strip()
                try:
                    entry = paramiko.hostkeys.HostKeyEntry.from_line(line)
                except (paramiko.hostkeys.InvalidHostKey, paramiko.SSHException, ValueError, TypeError):
                    continue
                if entry is None or entry.key is None:
                    continue
                if marker == "@revoked":
                    # paramiko has no notion of @revoked; a revoked key must never pass as merely unknown.
                    revoked.append(entry.key)
                elif marker is None:
                    entries.append((path, entry.hostnames, entry.key))
        return revoked, entries

    def _lookup(self, target: Target) -> tuple[list[paramiko.PKey], list[tuple[Path, paramiko.PKey]]]:
        revoked, entries = self._load()
        return revoked, [(path, key) for path, names, key in entries if _host_matches(names, target.known_hosts_name)]

    def known(self, target: Target) -> list[paramiko.PKey]:
        return [key for _, key in self._lookup(target)[1]]

    def check(self, target: Target, key: paramiko.PKey, accept_new: bool) -> str | None:
        """Raise HostKeyError unless `key` is the known key of `target`; returns a note when it was just recorded."""
        revoked, known = self._lookup(target)
        seen = fingerprint(key)
        if any(r.asbytes() == key.asbytes() for r in revoked):
            raise HostKeyError(f"{target.label}: host key {seen} is marked @revoked in known_hosts; refusing to connect")
        if any(k.asbytes() == key.asbytes() for _, k in known):
            return None
        if known:
            was = ", ".join(sorted({fingerprint(k) for _, k in known}))
            where = ", ".join(sorted({str(p) for p, _ in known}))
            raise HostKeyError(f"{target.label}: HOST KEY CHANGED: known_hosts ({where}) has {was}, the server "
                               f"presented {seen}; someone may be intercepting the connection, or the device was "
                               f"reinstalled; refusing (if the change is expected, remove the old key with "
                               f"ssh-keygen -R '{target.known_hosts_name}' and verify the new one)")
        if not accept_new:
            raise HostKeyError(f"{target.label}: host key is not known ({seen}); verify it and add it to "
                               f"{self.path}, or pass --accept-new-host-key")
        self._record(target, key)
        return f"recorded {target.label}'s host key {seen} in {self.path}"

    def _record(self, target: Target, key: paramiko.PKey) -> None:
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            text = self.path.read_text(encoding="utf-8") if self.path.is_file() else ""
            with self.path.open("a", encoding="utf-8") as f:
                f.write(("" if not text or text.endswith("\n") else "\n")
                        + f"{target.known_hosts_name} {key.get_name()} {key.get_base64()}\n")
        except OSError as e:
            raise DeployError(f"cannot record the host key ({e.strerror or e})", self.path) from None


# --- keys for logging in -------------------------------------------------------------------------

def _load_key(path: Path) -> paramiko.PKey:
    try:
        return paramiko.PKey.from_path(path)
    except FileNotFoundError:
        raise DeployError("identity file not found", path) from None
    except paramiko.PasswordRequiredException:
        raise DeployError(f"key is passphrase-protected; load it into ssh-agent (ssh-add {path}) and retry "
                          "without --identity", path) from None
    except (paramiko.SSHException, ValueError, OSError, UnicodeDecodeError) as e:
        raise DeployError(f"not a usable SSH private key ({e})", path) from None


def login_keys(identity: Path | None) -> list[tuple[str, paramiko.PKey]]:
    """--identity alone when given; else ssh-agent's keys and the usual ~/.ssh/id_* files that load without a passphrase."""
    if identity is not None:
        return [(str(identity), _load_key(Path(identity)))]
    keys: list[tuple[str, paramiko.PKey]] = []
    if os.environ.get("SSH_AUTH_SOCK"):
        with contextlib.suppress(paramiko.SSHException, OSError):
            keys += [(f"agent key {fingerprint(k)}", k) for k in paramiko.Agent().get_keys()]
    for name in ("id_ed25519", "id_ecdsa", "id_rsa"):
        path = Path.home() / ".ssh" / name
        if path.is_file():
            with contextlib.suppress(DeployError):
                keys.append((str(path), _load_key(path)))
    if not keys:
        raise DeployError("no SSH key to log in with: pass --identity KEY or load one into ssh-agent")
    return keys


# --- the connection ----------------------------------------------------------------------------------

def _remote_word(path: str) -> str:
    # `~/x` must stay expandable by the device's shell; everything else is quoted verbatim.
    return '"$HOME"/' + shlex.quote(path[2:]) if path.startswith("~/") else shlex.quote(path)


class Device:
    """An authenticated SSH connection to one device, running remote.py there."""

    def __init__(self, target: Target, transport: paramiko.Transport, remote_python: str, notes: list[str]):
        self.target, self.transport, self.remote_python, self.notes = target, transport, remote_python, notes

    @classmethod
    def connect(cls, target: Target, *, known_hosts: KnownHosts, accept_new: bool = False,
                identity: Path | None = None, remote_python: str = "python3", timeout: float = 15.0) -> Device:
        keys = login_keys(identity)
        try:
            sock = socket.create_connection((target.host, target.port), timeout=timeout)
        except socket.gaierror as e:
            raise DeployError(f"{target.label}: cannot resolve the host ({e.strerror or e})") from None
        except OSError as e:
            raise DeployError(f"{target.label}: cannot connect ({e.strerror or e or 'timed out'})") from None
        transport = paramiko.Transport(sock)
        try:
            # Ask for the key types known_hosts holds first, as ssh does, so a known key is not
            # mistaken for a changed one only because the server prefers another algorithm.
            known = {k.get_name() for k in known_hosts.known(target)}
            wanted = [t for t in transport.get_security_options().key_types
                      if t in known or (t.startswith("rsa-sha2") and "ssh-rsa" in known)]
            opts = transport.get_security_options()
            opts.key_types = tuple(wanted + [t for t in opts.key_types if t not in wanted])
            try:
                transport.start_client(timeout=timeout)
            except (paramiko.SSHException, OSError, EOFError) as e:
                raise DeployError(f"{target.label}: SSH handshake failed ({e or type(e).__name__}); "
                                  "is an SSH server listening there?") from None
            note = known_hosts.check(target, transport.get_remote_server_key(), accept_new)
            cls._authenticate(transport, target, keys)
            transport.set_keepalive(30)  # a long upload or check must not be dropped by an idle NAT on the way
        except BaseException:
            transport.close()
            raise
        return cls(target, transport, remote_python, [note] if note else [])

    @staticmethod
    def _authenticate(transport: paramiko.Transport, target: Target, keys: list[tuple[str, paramiko.PKey]]) -> None:
        for _, key in keys:
            try:
                transport.auth_publickey(target.user, key)
            except paramiko.BadAuthenticationType as e:
                raise DeployError(f"{target.user}@{target.label}: the server does not accept public keys "
                                  f"(it allows: {', '.join(e.allowed_types) or 'nothing'})") from None
            except (paramiko.AuthenticationException, paramiko.SSHException):
                continue
            if transport.is_authenticated():
                return
        tried = ", ".join(name for name, _ in keys)
        raise DeployError(f"{target.user}@{target.label}: authentication failed (tried {tried}); is the public key "
                          "in the device's authorized_keys?")

    def close(self) -> None:
        self.transport.close()

    def __enter__(self) -> Device:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def call(self, command: str, *, root: str, name: str, payload: Path | None = None,
             on_bytes: Callable[[int], None] | None = None, **options: str | int | bool) -> dict:
        """Run `remote.py COMMAND` on the device (streaming `payload` after it) and return its JSON answer."""
        argv = [command, "--root", root, "--name", name]
        for key, value in options.items():
            if value is True:
                argv.append(f"--{key.replace('_', '-')}")
            elif value not in (False, None, ""):
                argv += [f"--{key.replace('_', '-')}", str(value)]
        line = " ".join([_remote_word(self.remote_python), "-c", shlex.quote(_BOOT.format(n=len(REMOTE_SOURCE))),
                         *map(shlex.quote, argv)])
        try:
            chan = self.transport.open_session(timeout=30)
        except (paramiko.SSHException, OSError) as e:
            raise DeployError(f"{self.target.label}: cannot open an SSH session ({e})") from None
        with contextlib.closing(chan):
            try:
                chan.exec_command(line)
                chan.sendall(REMOTE_SOURCE)
                if payload is not None:
                    with payload.open("rb") as f:
                        while block := f.read(CHUNK):
                            chan.sendall(block)
                            if on_bytes is not None:
                                on_bytes(len(block))
                chan.shutdown_write()
            except OSError:
                pass  # the helper stopped reading (it refused the upload): its answer says why
            except paramiko.SSHException as e:
                raise DeployError(f"{self.target.label}: the SSH connection failed during the upload ({e})") from None
            stdout = chan.makefile("rb").read().decode("utf-8", "replace")
            stderr = chan.makefile_stderr("rb").read().decode("utf-8", "replace")
            status = chan.recv_exit_status()
        answer = _last_json(stdout)
        if answer is None:
            tail = " | ".join(stderr.strip().splitlines()[-2:]) or f"exit status {status}"
            if status == 127:
                raise DeployError(f"{self.target.label}: no {self.remote_python!r} on the device ({tail}); "
                                  "install python3 there or pass --remote-python PATH")
            raise DeployError(f"{self.target.label}: the device helper gave no answer ({tail})")
        if not answer.get("ok"):
            raise DeployError(f"{self.target.label}: {str(answer.get('error', 'refused')).replace(chr(10), ' | ')}")
        return answer


def _last_json(text: str) -> dict | None:
    for line in reversed(text.strip().splitlines()):
        with contextlib.suppress(ValueError):
            value = json.loads(line)
            if isinstance(value, dict):
                return value
    return None


# --- the bundle on the host ----------------------------------------------------------------------

@dataclass
class LocalBundle:
    name: str
    source: Path  # what the user named: the folder or the archive
    folder: Path  # verified: exactly the manifest's files
    archive: Path  # those files, packed under NAME/
    manifest: dict
    manifest_sha256: str
    total_bytes: int


@contextlib.contextmanager
def prepared(bundle: Path) -> Iterator[LocalBundle]:
    """Verify BUNDLE (a bundle folder, or its .tar.gz) on the host and pack exactly its verified files."""
    bundle = Path(bundle)
    if not bundle.exists():
        raise DeployError("bundle not found", bundle)
    work = Path(tempfile.mkdtemp(prefix="edgeincep-deploy-"))
    try:
        if bundle.is_dir():
            folder = bundle
        else:
            name = re.sub(r"\.(tar\.gz|tgz)$", "", bundle.name)
            folder = work / name
            folder.mkdir()
            try:
                with bundle.open("rb") as f:
                    remote.safe_extract(f, str(folder), name, 1 << 40)
            except remote.Refused as e:
                raise DeployError(f"refused: {e}", bundle) from None
        try:
            problems, extras = remote.verify_tree(str(folder))
        except remote.Refused as e:
            raise DeployError(str(e), bundle) from None
        problems += [f"{x}: not in the manifest" for x in extras]
        if problems:
            raise DeployError(f"bundle fails verification, nothing was uploaded: {'; '.join(problems[:5])}", bundle)
        manifest = json.loads((folder / remote.MANIFEST).read_text(encoding="utf-8"))
        names = [*sorted(manifest["files"]), remote.MANIFEST]
        archive = work / f"{folder.name}.tar.gz"
        # compresslevel 1: model weights hardly compress, and a slow gzip would only delay the upload.
        with tarfile.open(archive, "w:gz", compresslevel=1) as tar:
            for rel in names:
                info = tar.gettarinfo(str(folder / rel), arcname=f"{folder.name}/{rel}")
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                with (folder / rel).open("rb") as f:
                    tar.addfile(info, f)
        yield LocalBundle(folder.name, bundle, folder, archive, manifest, remote.sha256_file(str(folder / remote.MANIFEST)),
                          sum(int(e["size"]) for e in manifest["files"].values())
                          + (folder / remote.MANIFEST).stat().st_size)
    finally:
        shutil.rmtree(work, ignore_errors=True)


# --- --check: the device's predictions against the host's ------------------------------------------

def check_spec(local: LocalBundle) -> dict:
    spec = local.manifest.get("check")
    if not isinstance(spec, dict) or not isinstance(spec.get("command"), list) or not spec.get("expected"):
        raise DeployError("manifest.json has no 'check' entry ({\"command\": [...], \"expected\": FILE}), "
                          "so --check has nothing to run; deploy without --check", local.source)
    if spec["expected"] not in local.manifest["files"]:
        raise DeployError(f"check.expected {spec['expected']!r} is not a file of the bundle", local.source)
    return spec


def compare_predictions(expected: dict, device: dict) -> dict:
    """Top-1 must be equal on every image; the largest logit difference is reported, not judged."""
    try:
        want = {r["image"]: r for r in expected["results"]}
        got = {r["image"]: r for r in device["results"]}
    except (KeyError, TypeError) as e:
        raise DeployError(f"check predictions are not in the runner's JSON form ({{'results': [...]}}, {e})") from None
    if set(want) != set(got):
        missing, extra = sorted(set(want) - set(got)), sorted(set(got) - set(want))
        raise DeployError(f"the device predicted other images than the host: missing {missing[:3]}, extra {extra[:3]}")
    rows = []
    for image in sorted(want):
        a, b = want[image], got[image]
        la, lb = a.get("logits") or [], b.get("logits") or []
        diff = max((abs(x - y) for x, y in zip(la, lb, strict=False)), default=float("nan")) \
            if len(la) == len(lb) else float("inf")
        rows.append({"image": image, "host": int(a["top1"]), "device": int(b["top1"]), "max_abs_diff": diff})
    flipped = [r for r in rows if r["host"] != r["device"]]
    diffs = [r["max_abs_diff"] for r in rows if r["max_abs_diff"] == r["max_abs_diff"]]
    return {"rows": rows, "images": len(rows), "flipped": len(flipped), "max_abs_diff": max(diffs, default=float("nan")),
            "backend": device.get("backend")}


# --- the three operations ----------------------------------------------------------------------------

def deploy(bundle: Path, target: Target, *, dest: str = DEFAULT_DEST, known_hosts: KnownHosts,
           accept_new: bool = False, identity: Path | None = None, check: bool = False, setup: bool = False,
           index: bool = False, remote_python: str = "python3", check_timeout: float = 600.0,
           setup_timeout: float = 1800.0, on_start: Callable[[int], None] | None = None,
           on_bytes: Callable[[int], None] | None = None,
           on_stage: Callable[[str], None] | None = None) -> dict:
    """Upload, verify on the device and switch `current` to BUNDLE; with `setup`, give it its runtime first; with
    `check`, only if its predictions match. `on_stage` hears what the device is doing after the upload."""
    if index and not setup:
        raise DeployError("--index says where --setup installs from: add --setup")
    with prepared(bundle) as local:
        spec = check_spec(local) if check else None
        with Device.connect(target, known_hosts=known_hosts, accept_new=accept_new, identity=identity,
                            remote_python=remote_python) as device:
            if on_start is not None:
                on_start(local.archive.stat().st_size)
            staging = spec is not None or setup
            result = device.call("install", root=dest, name=local.name, payload=local.archive, on_bytes=on_bytes,
                                 manifest_sha=local.manifest_sha256, bytes=local.total_bytes, commit=not staging)
            result["notes"] = device.notes
            if staging:
                staged = result["release"]
                try:
                    if setup:
                        if on_stage is not None:
                            on_stage("setting up the bundle's runtime on the device"
                                     + (" (from its package index)" if index else " (from the bundle's wheels)"))
                        result["setup"] = device.call("setup", root=dest, name=local.name, release=staged,
                                                      index=index, timeout=setup_timeout)
                    if spec is not None:
                        if on_stage is not None:
                            on_stage("running the bundle's check on the device")
                        result["check"] = run_check(device, local, spec, dest, staged, check_timeout, target,
                                                     result.get("unchanged"))
                except BaseException:
                    with contextlib.suppress(DeployError, OSError, paramiko.SSHException):
                        device.call("discard", root=dest, name=local.name, release=staged)
                    raise
                result.update(device.call("commit", root=dest, name=local.name, release=staged))
    result.update(host=target.label, user=target.user, name=local.name)
    return result


def run_check(device: Device, local: LocalBundle, spec: dict, dest: str, release: str, timeout: float,
               target: Target, unchanged: bool | None) -> dict:
    ran = device.call("check", root=dest, name=local.name, release=release, timeout=timeout)
    expected = json.loads((local.folder / spec["expected"]).read_text(encoding="utf-8"))
    c = compare_predictions(expected, ran["predictions"])
    c["python"] = ran.get("python")
    if c["flipped"]:
        raise DeployError(f"{target.label}: --check failed: top-1 differs from the host's on {c['flipped']} of "
                          f"{c['images']} sample images (logits max |diff| {c['max_abs_diff']:.3g}); "
                          + ("it was already current" if unchanged else "the new version was not made current"))
    return c


def rollback(name: str, target: Target, *, dest: str = DEFAULT_DEST, known_hosts: KnownHosts,
             identity: Path | None = None, remote_python: str = "python3") -> dict:
    with Device.connect(target, known_hosts=known_hosts, identity=identity, remote_python=remote_python) as device:
        result = device.call("rollback", root=dest, name=name)
    return {**result, "host": target.label, "user": target.user, "name": name}


def status(name: str, target: Target, *, dest: str = DEFAULT_DEST, known_hosts: KnownHosts,
           identity: Path | None = None, remote_python: str = "python3") -> dict:
    """What is deployed as NAME, with every file of `current` and `previous` re-verified on the device."""
    with Device.connect(target, known_hosts=known_hosts, identity=identity, remote_python=remote_python) as device:
        result = device.call("status", root=dest, name=name)
    return {**result, "host": target.label, "user": target.user, "name": name}
