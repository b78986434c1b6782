#!/usr/bin/env python3
"""edgeincep's device-side deploy helper: sent over SSH and run by the device's own python3.

It must run on a bare device (JetPack 5 ships Python 3.8): standard library only, no syntax or
calls newer than 3.8. The host imports the same file to check an archive before uploading, so
the host and the device refuse exactly the same things.

Layout under the destination root, per bundle NAME:

    NAME/releases/<utc>-<sha12>/   one verified copy per deployed version (at most current + previous)
    NAME/current  -> releases/...  symlink, switched with rename(2): always a whole, verified release
    NAME/previous -> releases/...  what `--rollback` returns to
    NAME/.lock                     flock: one deploy or rollback of NAME at a time
    NAME/.incoming-XXXX/           an upload in progress (removed on failure, swept by the next deploy)
    NAME/envs/<key>/               a virtual environment `setup` made (per device Python x requirements.txt),
                                   shared by the releases whose .edgeincep-runtime.json names it

Commands (stdout carries exactly one JSON object; exit 0 ok, 3 refused):
    install  --root R --name N --manifest-sha S --bytes B [--commit]   tar.gz on stdin
    commit   --root R --name N --release ID
    discard  --root R --name N --release ID
    rollback --root R --name N
    status   --root R --name N
    check    --root R --name N --release ID [--timeout S]
    setup    --root R --name N --release ID [--index] [--timeout S]
    classify --root R --name N --release ID --bytes B [--timeout S]    tar.gz of images/ on stdin
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import stat
import subprocess
import sys
import tarfile
import tempfile
import time
import zlib

SCHEMA = "edgeincep.bundle/1"
MANIFEST = "manifest.json"
CHUNK = 1 << 20
STAGED = ".staged-"
# Room beyond the bundle itself, so a deploy never fills the device's disk to the last block.
SPARE_BYTES = 16 << 20
# Device state inside a release (not in its manifest): the interpreter `setup` made for it.
RUNTIME = ".edgeincep-runtime.json"
ENVS = "envs"
ENV_DONE = ".edgeincep-env.json"
# Run by the interpreter under test: which of the modules run.py needs does not import, and why (one line).
PROBE = """import importlib, json, sys
bad = None
for name in sys.argv[1:]:
    try:
        importlib.import_module(name)
    except BaseException as e:
        text = str(e).strip().splitlines()
        bad = [name, type(e).__name__ + (': ' + text[0] if text else '')]
        break
print(json.dumps({'missing': bad, 'python': sys.executable, 'version': sys.version.split()[0]}))
"""


class Refused(Exception):
    """A problem to report to the host as one line; nothing of the new version was kept."""


# --- safe extraction -------------------------------------------------------------------------------

def member_path(name: str, top: str) -> str:
    """The path of a tar member inside the bundle folder `top`, or Refused if it could land anywhere else."""
    if not name or name.startswith("/") or "\\" in name or "\x00" in name:
        raise Refused(f"archive member {name!r}: absolute or not a plain relative path")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise Refused(f"archive member {name!r}: '..' would escape the bundle folder")
    if not parts or parts[0] != top:
        raise Refused(f"archive member {name!r}: not inside the bundle folder {top!r}")
    return "/".join(parts[1:])


def _mkdirs(dest: str, rel: str) -> None:
    # Only directories this extraction made can be on the way: a pre-existing symlink is refused.
    path = dest
    for part in [p for p in rel.split("/") if p]:
        path = os.path.join(path, part)
        try:
            os.mkdir(path, 0o755)
        except FileExistsError:
            if os.path.islink(path) or not os.path.isdir(path):
                raise Refused(f"archive member path {rel!r} runs through a non-directory") from None


def safe_extract(fileobj, dest: str, top: str, limit: int) -> list[str]:
    """Extract a tar.gz stream into the empty folder `dest`: regular files and folders only, all under `top`/.

    Refuses absolute names, '..', members outside `top`, links, devices, duplicates and more than
    `limit` bytes; file modes come from the archive's owner-execute bit, never its owners or setuid bits.
    """
    seen: set[str] = set()
    total = 0
    try:
        with tarfile.open(fileobj=fileobj, mode="r|gz") as tar:
            for m in tar:
                rel = member_path(m.name, top)
                if m.isdir():
                    _mkdirs(dest, rel)
                    continue
                if not m.isreg():
                    kind = "symlink" if m.issym() else "hardlink" if m.islnk() else "special-file"
                    raise Refused(f"archive member {m.name!r}: {kind} members are not allowed")
                if not rel or rel in seen:
                    raise Refused(f"archive member {m.name!r}: duplicate or empty name")
                seen.add(rel)
                total += m.size
                if total > limit:
                    raise Refused(f"archive holds more than the {limit} bytes announced")
                parent = os.path.dirname(rel)
                _mkdirs(dest, parent)
                target = os.path.join(dest, rel)
                fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
                src = tar.extractfile(m)
                with os.fdopen(fd, "wb") as f:
                    while True:
                        block = src.read(CHUNK)
                        if not block:
                            break
                        f.write(block)
                    f.flush()
                    os.fsync(f.fileno())  # the release must survive a power cut once it is made current
                os.chmod(target, 0o755 if m.mode & stat.S_IXUSR else 0o644)
    except (tarfile.TarError, EOFError, zlib.error) as e:
        raise Refused(f"archive incomplete or not a tar.gz ({type(e).__name__}: {e})") from None
    except OSError as e:
        raise Refused(f"cannot write the upload on the device ({e.strerror or e})") from None
    if not seen:
        raise Refused("the archive holds no files")
    return sorted(seen)


# --- verification ----------------------------------------------------------------------------------

def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def read_manifest(folder: str) -> dict:
    try:
        with open(os.path.join(folder, MANIFEST), "rb") as f:
            record = json.loads(f.read().decode("utf-8"))
    except (OSError, ValueError) as e:
        raise Refused(f"{MANIFEST}: unreadable ({e})") from None
    if not isinstance(record, dict) or record.get("schema") != SCHEMA or not isinstance(record.get("files"), dict):
        raise Refused(f"{MANIFEST}: not an {SCHEMA} manifest")
    return record


def verify_tree(folder: str, installed: bool = False) -> tuple[list[str], list[str]]:
    """(problems, extras): listed files missing, of the wrong size or sha256, or not executable; unlisted files.

    A fresh upload must have no extras; an installed release may have gained some (a device-built engine),
    and its runtime record is the device's own state, not an extra.
    """
    record = read_manifest(folder)
    problems: list[str] = []
    for name, want in sorted(record["files"].items()):
        path = os.path.join(folder, name)
        try:
            member_path(f"x/{name}", "x")
        except Refused:
            problems.append(f"{name}: not a plain relative name")
            continue
        if os.path.islink(path) or not os.path.isfile(path):
            problems.append(f"{name}: missing")
        elif os.path.getsize(path) != want.get("size") or sha256_file(path) != want.get("sha256"):
            problems.append(f"{name}: content differs from the manifest (sha256)")
        elif want.get("executable") and not os.stat(path).st_mode & stat.S_IXUSR:
            problems.append(f"{name}: not executable")
    listed = set(record["files"]) | {MANIFEST}
    extras: list[str] = []
    for base, dirs, files in os.walk(folder):
        for entry in dirs + files:
            path = os.path.join(base, entry)
            rel = os.path.relpath(path, folder).replace(os.sep, "/")
            if os.path.islink(path):
                problems.append(f"{rel}: a symlink inside the release")
            elif entry in files and rel not in listed and not (installed and rel == RUNTIME):
                extras.append(rel)
    return problems, sorted(extras)


# --- releases --------------------------------------------------------------------------------------

def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _link(bundle: str, which: str) -> str | None:
    path = os.path.join(bundle, which)
    return os.readlink(path) if os.path.islink(path) else None


def _point(bundle: str, which: str, target: str) -> None:
    """Switch the `which` symlink to `target` with one rename(2): readers see the old or the new, never neither."""
    tmp = os.path.join(bundle, f".{which}.{os.getpid()}.tmp")
    if os.path.lexists(tmp):
        os.unlink(tmp)
    os.symlink(target, tmp)
    os.replace(tmp, os.path.join(bundle, which))


def _release_id(manifest_sha: str) -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + manifest_sha[:12]


class Bundle:
    """One bundle NAME under the destination root, locked for the lifetime of the object."""

    def __init__(self, root: str, name: str, shared: bool = False, create: bool = False):
        if not name or "/" in name or "\\" in name or "\x00" in name or name.startswith("."):
            raise Refused(f"bundle name {name!r} is not a plain folder name")
        self.root = os.path.abspath(os.path.expanduser(root))
        self.path = os.path.join(self.root, name)
        self.name = name
        if not create and not os.path.isdir(os.path.join(self.path, "releases")):
            raise Refused(f"nothing deployed as {name} under {self.root}")
        try:
            os.makedirs(os.path.join(self.path, "releases"), exist_ok=True)
            self._lock = open(os.path.join(self.path, ".lock"), "a")  # noqa: SIM115 (held until exit)
        except OSError as e:
            raise Refused(f"{self.path}: cannot create the deploy folder ({e.strerror or e})") from None
        import fcntl

        try:
            fcntl.flock(self._lock, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except OSError:
            raise Refused(f"another deploy or rollback of {name} is running on this device") from None

    def release_path(self, release: str) -> str:
        if not release or "/" in release or release in (".", ".."):
            raise Refused(f"bad release id {release!r}")
        return os.path.join(self.path, "releases", release)

    def current(self) -> str | None:
        target = _link(self.path, "current")
        return os.path.basename(target) if target else None

    def previous(self) -> str | None:
        target = _link(self.path, "previous")
        return os.path.basename(target) if target else None

    def sweep(self) -> None:
        """Uploads, staged releases and image batches left by a deploy or a classify that died (we hold the lock
        exclusively, so none is live)."""
        for entry in os.listdir(self.path):
            if entry.startswith((".incoming-", ".work-")):
                shutil.rmtree(os.path.join(self.path, entry), ignore_errors=True)
        rel = os.path.join(self.path, "releases")
        for entry in os.listdir(rel):
            if entry.startswith(STAGED) and time.time() - os.path.getmtime(os.path.join(rel, entry)) > 3600:
                shutil.rmtree(os.path.join(rel, entry), ignore_errors=True)

    def prune(self, also_keep: str | None = None) -> None:
        keep = {self.current(), self.previous()}
        rel = os.path.join(self.path, "releases")
        for entry in os.listdir(rel):
            if entry not in keep and not entry.startswith(STAGED):
                shutil.rmtree(os.path.join(rel, entry), ignore_errors=True)
        # Environments no kept release runs on (a staged one being set up counts as kept).
        used = {(read_runtime(self.release_path(r)) or {}).get("env") for r in (*keep, also_keep) if r}
        envs = os.path.join(self.path, ENVS)
        for entry in os.listdir(envs) if os.path.isdir(envs) else ():
            if entry not in used:
                shutil.rmtree(os.path.join(envs, entry), ignore_errors=True)

    def switch_to(self, release: str) -> dict:
        """Make `release` current and the old current previous; both switches are atomic renames."""
        old = self.current()
        if old == release:
            return self.describe()
        if old is not None:
            _point(self.path, "previous", os.path.join("releases", old))
        _point(self.path, "current", os.path.join("releases", release))
        _fsync_dir(self.path)
        self.prune()
        return self.describe()

    def describe(self) -> dict:
        return {"path": self.path, "current": self.current(), "previous": self.previous()}


def _installed_sha(bundle: Bundle, release: str | None) -> str | None:
    if release is None:
        return None
    try:
        return sha256_file(os.path.join(bundle.release_path(release), MANIFEST))
    except OSError:
        return None


def _require_space(folder: str, need: int, what: str) -> None:
    free = shutil.disk_usage(folder).free
    if free < need + SPARE_BYTES:
        raise Refused(f"not enough space on the device for {what}: {need / 1e6:.1f} MB needed in {folder}, "
                      f"{free / 1e6:.1f} MB free")


def install(args, stdin) -> dict:
    bundle = Bundle(args.root, args.name, create=True)
    bundle.sweep()
    _require_space(bundle.path, args.bytes, "the bundle")
    incoming = tempfile.mkdtemp(prefix=".incoming-", dir=bundle.path)
    try:
        os.chmod(incoming, 0o755)
        safe_extract(stdin, incoming, args.name, args.bytes)
        problems, extras = verify_tree(incoming)
        problems += [f"{x}: not in the manifest" for x in extras]
        if problems:
            raise Refused(f"device copy failed verification: {'; '.join(problems[:5])}"
                          + (f" (+{len(problems) - 5} more)" if len(problems) > 5 else ""))
        got = sha256_file(os.path.join(incoming, MANIFEST))
        if got != args.manifest_sha:
            raise Refused(f"uploaded manifest sha256 {got[:12]} is not the one the host verified "
                          f"({args.manifest_sha[:12]})")
        files = len(read_manifest(incoming)["files"])
        current = bundle.current()
        if current is not None and _installed_sha(bundle, current) == got and not verify_tree(
                bundle.release_path(current), installed=True)[0]:
            shutil.rmtree(incoming, ignore_errors=True)
            return {**bundle.describe(), "release": current, "unchanged": True, "files": files}
        release = _release_id(got)
        final = bundle.release_path(release if args.commit else STAGED + release)
        if os.path.lexists(final):
            shutil.rmtree(final)
        carry_runtime(bundle, current, incoming)
        _fsync_dir(incoming)
        os.rename(incoming, final)
        _fsync_dir(os.path.dirname(final))
    except BaseException:
        shutil.rmtree(incoming, ignore_errors=True)
        raise
    if not args.commit:
        return {**bundle.describe(), "release": os.path.basename(final), "staged": True, "files": files}
    return {**bundle.switch_to(release), "release": release, "unchanged": False, "files": files}


def commit(args) -> dict:
    bundle = Bundle(args.root, args.name)
    staged = bundle.release_path(args.release)
    if not args.release.startswith(STAGED):
        return {**bundle.describe(), "release": args.release}  # an unchanged re-deploy: nothing was staged
    if not os.path.isdir(staged):
        raise Refused(f"staged release {args.release} is gone (removed by a concurrent deploy?)")
    release = args.release[len(STAGED):]
    os.rename(staged, bundle.release_path(release))
    return {**bundle.switch_to(release), "release": release}


def discard(args) -> dict:
    bundle = Bundle(args.root, args.name)
    if args.release.startswith(STAGED):
        shutil.rmtree(bundle.release_path(args.release), ignore_errors=True)
    return bundle.describe()


def rollback(args) -> dict:
    bundle = Bundle(args.root, args.name)
    current, previous = bundle.current(), bundle.previous()
    if previous is None or not os.path.isdir(bundle.release_path(previous)):
        raise Refused(f"{bundle.path}: no previous version to roll back to")
    problems, _ = verify_tree(bundle.release_path(previous), installed=True)
    if problems:
        raise Refused(f"previous version {previous} no longer verifies: {'; '.join(problems[:3])}")
    # Current first: the moment it switches, the device runs the old version; previous then names the new one.
    _point(bundle.path, "current", os.path.join("releases", previous))
    if current is not None:
        _point(bundle.path, "previous", os.path.join("releases", current))
    _fsync_dir(bundle.path)
    return {**bundle.describe(), "release": previous, "rolled_back_from": current}


def status(args) -> dict:
    bundle = Bundle(args.root, args.name, shared=True)
    out = bundle.describe()
    for which in ("current", "previous"):
        release = out[which]
        if release is not None:
            problems, extras = verify_tree(bundle.release_path(release), installed=True)
            out[which + "_problems"], out[which + "_extras"] = problems, extras
            out[which + "_manifest_sha256"] = _installed_sha(bundle, release)
            out[which + "_runtime"] = read_runtime(bundle.release_path(release))
    return out


# --- the runtime: what run.py imports, and the environment `setup` makes for it ----------------------

def read_runtime(folder: str) -> dict | None:
    """The release's runtime record (written by `setup`), or None when it runs on the device's own Python."""
    try:
        with open(os.path.join(folder, RUNTIME), "rb") as f:
            record = json.loads(f.read().decode("utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and isinstance(record.get("python"), str) else None


def _write_runtime(folder: str, record: dict) -> None:
    tmp = os.path.join(folder, RUNTIME + ".tmp")
    with open(tmp, "w") as f:
        json.dump(record, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, os.path.join(folder, RUNTIME))


def env_key(manifest: dict) -> str:
    """One environment per (this device Python, the bundle's requirements.txt, OS packages visible or not): a
    later release with the same runtime set runs on the same environment."""
    wheels = (manifest.get("runtime") or {}).get("wheels") or {}
    reqs = (manifest["files"].get("requirements.txt") or {}).get("sha256")
    ident = [os.path.abspath(sys.executable), sys.version, platform.machine(), reqs,
             bool(wheels.get("system_site_packages"))]
    return hashlib.sha256(json.dumps(ident).encode()).hexdigest()[:16]


def _env_ready(env: str) -> bool:
    return os.path.isfile(os.path.join(env, ENV_DONE)) and os.path.exists(os.path.join(env, "bin", "python"))


def carry_runtime(bundle: Bundle, current: str | None, folder: str) -> None:
    """A new release whose runtime set is the current one's runs on the same environment, without --setup."""
    record = read_runtime(bundle.release_path(current)) if current else None
    if record is None:
        return
    env = os.path.join(bundle.path, ENVS, env_key(read_manifest(folder)))
    if record.get("env") == os.path.basename(env) and _env_ready(env):
        _write_runtime(folder, record)


def runtime_python(folder: str) -> str:
    record = read_runtime(folder)
    return record["python"] if record and os.path.exists(record["python"]) else sys.executable


def _probe(python: str, modules: list, timeout: float) -> dict:
    try:
        proc = subprocess.run([python, "-c", PROBE, *map(str, modules)], stdin=subprocess.DEVNULL,
                              capture_output=True, timeout=timeout)
    except OSError as e:
        raise Refused(f"cannot run {python} on the device ({e.strerror or e})") from None
    except subprocess.TimeoutExpired:
        raise Refused(f"{python} did not import the bundle's runtime within {timeout:g} s") from None
    lines = proc.stdout.decode("utf-8", "replace").strip().splitlines()
    try:
        return json.loads(lines[-1])
    except (IndexError, ValueError):
        tail = proc.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or [f"exit status {proc.returncode}"]
        raise Refused(f"{python} could not run the import probe: {tail[0]}") from None


def require_runtime(python: str, manifest: dict, timeout: float, after_setup: bool = False) -> dict:
    """Refused, in one line, unless `python` imports every module the bundle's run.py needs."""
    runtime = manifest.get("runtime") or {}
    found = _probe(python, runtime.get("imports") or [], timeout)
    if not found.get("missing"):
        return found
    module, why = found["missing"]
    where = f"{found.get('python') or python} (Python {found.get('version', '?')})"
    if after_setup:
        raise Refused(f"the environment --setup made cannot import {module} ({why}): {where}")
    if runtime.get("wheels"):
        fix = ("deploy again with --setup (it installs the bundle's own wheels into an environment on the device, "
               "no network needed), or pass --remote-python PATH of a Python that has it")
    else:
        fix = ("deploy again with --setup --index (pip installs requirements.txt from the device's package index), "
               "write the bundle with --wheels and deploy it with --setup (no network needed on the device), or "
               "pass --remote-python PATH of a Python that has it")
    raise Refused(f"the bundle's runtime is missing on the device: {where} cannot import {module} ({why}); "
                  f"fix: {fix}")


def _python_xy() -> str:
    return "{}.{}".format(*sys.version_info[:2])


def _wheels_misfit(wheels: dict) -> str | None:
    want = (str(wheels.get("machine")), str(wheels.get("python")))
    have = (platform.machine(), _python_xy())
    if want != have:
        return (f"the bundle's wheels are for {want[0]} CPython {want[1]}, the device's Python ({sys.executable}) is "
                f"{have[0]} CPython {have[1]}")
    libc, version = platform.libc_ver()
    needed = str(wheels.get("glibc") or "")

    def key(v: str) -> tuple:
        return tuple(int(x) for x in v.split(".")[:2] if x.isdigit())

    if needed and libc == "glibc" and version and key(version) < key(needed):
        return f"the bundle's wheels need glibc {needed} or newer, the device has glibc {version}"
    return None


def _last_error(output: bytes) -> str:
    lines = [ln.strip() for ln in output.decode("utf-8", "replace").splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("ERROR:")]
    return (errors or lines[-1:] or ["no message"])[0]


def _run_step(argv: list, what: str, timeout: float, env: dict | None = None) -> None:
    try:
        proc = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              timeout=timeout, env=env)
    except OSError as e:
        raise Refused(f"{what}: cannot run {argv[0]} ({e.strerror or e})") from None
    except subprocess.TimeoutExpired:
        raise Refused(f"{what}: did not finish within {timeout:g} s") from None
    if proc.returncode != 0:
        raise Refused(f"{what} failed: {_last_error(proc.stdout)}")


def _make_env(env: str, folder: str, manifest: dict, source: str, timeout: float) -> None:
    wheels = (manifest.get("runtime") or {}).get("wheels") or {}
    venv = [sys.executable, "-m", "venv"] + (["--system-site-packages"] if wheels.get("system_site_packages") else [])
    python = os.path.join(env, "bin", "python")
    reqs = os.path.join(folder, "requirements.txt")
    quiet = ["--disable-pip-version-check", "--no-input", "--no-warn-script-location", "-q"]
    if source == "wheels":
        # The bundle's own pip, run from its wheel file, with the device's pip configuration kept out: an index
        # URL or constraints file set on the device must not change what an offline install does.
        _run_step([*venv, "--without-pip", env], f"creating a virtual environment with {sys.executable}", timeout)
        pip = [python, os.path.join(folder, str(wheels["installer"]), "pip")]
        _run_step([*pip, "install", *quiet, "--no-index", "--find-links", os.path.join(folder, str(wheels["dir"])),
                   "-r", reqs], "installing the bundle's wheels", timeout,
                  env={**os.environ, "PIP_CONFIG_FILE": os.devnull})
    else:
        _run_step([*venv, env], f"creating a virtual environment with pip ({sys.executable} -m venv; Debian and "
                  "Ubuntu need the python3-venv package)", timeout)
        _run_step([python, "-m", "pip", "install", *quiet, "-r", reqs],
                  "installing requirements.txt from the device's package index", timeout)


def setup(args) -> dict:
    """An environment with the bundle's runtime for the release, from its own wheels (or, with --index, the
    device's package index), recorded in the release; reused when one with the same runtime set exists."""
    bundle = Bundle(args.root, args.name)
    release = args.release or bundle.current()
    if release is None:
        raise Refused(f"{bundle.path}: nothing deployed to set up")
    folder = bundle.release_path(release)
    manifest = read_manifest(folder)
    wheels = (manifest.get("runtime") or {}).get("wheels")
    if wheels:
        misfit = _wheels_misfit(wheels)
        if misfit and not args.index:
            raise Refused(f"{misfit}; write the bundle with --device-python {_python_xy()}, "
                          "pass --remote-python PATH of a matching Python, or add --index to install from the "
                          "device's package index instead")
        source = "index" if misfit else "wheels"
    elif args.index:
        source = "index"
    else:
        raise Refused("the bundle carries no wheels to set up from: write it with --wheels (`edgeincep bundle "
                      "--wheels` or `edgeincep run --wheels`) and deploy again with --setup, or add --index to "
                      "install requirements.txt from the device's package index")
    key = env_key(manifest)
    env = os.path.join(bundle.path, ENVS, key)
    started = time.monotonic()
    reused = _env_ready(env)
    if not reused:
        shutil.rmtree(env, ignore_errors=True)  # an environment a failed setup left half made
        os.makedirs(os.path.dirname(env), exist_ok=True)
        try:
            _make_env(env, folder, manifest, source, args.timeout)
            python = os.path.join(env, "bin", "python")
            require_runtime(python, manifest, args.timeout, after_setup=True)
            with open(os.path.join(env, ENV_DONE), "w") as f:
                json.dump({"key": key, "source": source, "base_python": sys.executable}, f)
        except BaseException:
            shutil.rmtree(env, ignore_errors=True)
            raise
    python = os.path.join(env, "bin", "python")
    record = {"python": python, "env": key, "source": source, "base_python": sys.executable,
              "version": sys.version.split()[0], "machine": platform.machine()}
    _write_runtime(folder, record)
    bundle.prune(also_keep=release)
    return {"release": release, **record, "reused": reused, "seconds": round(time.monotonic() - started, 1)}


def check(args) -> dict:
    """Run the bundle's own check command in the (staged or current) release; return what it predicted."""
    bundle = Bundle(args.root, args.name, shared=True)
    release = args.release or bundle.current()
    if release is None:
        raise Refused(f"{bundle.path}: nothing deployed to check")
    folder = bundle.release_path(release)
    manifest = read_manifest(folder)
    python = runtime_python(folder)
    require_runtime(python, manifest, args.timeout)
    spec = manifest.get("check")
    if not isinstance(spec, dict) or not isinstance(spec.get("command"), list) or not spec["command"]:
        raise Refused(f"{MANIFEST} has no 'check' entry (command + expected), so the bundle cannot be checked")
    # Outside the release: the check must not add files that later fail its verification.
    work = tempfile.mkdtemp(prefix=".check-", dir=bundle.path)
    try:
        output = os.path.join(work, "predictions.json")
        argv = [str(a).replace("{output}", output).replace("{python}", python) for a in spec["command"]]
        try:
            proc = subprocess.run(argv, cwd=folder, stdin=subprocess.DEVNULL, capture_output=True,
                                  timeout=args.timeout)
        except FileNotFoundError:
            raise Refused(f"check command {argv[0]!r} not found on the device") from None
        except subprocess.TimeoutExpired:
            raise Refused(f"check command did not finish within {args.timeout:g} s") from None
        tail = proc.stderr.decode("utf-8", "replace").strip().splitlines()[-3:]
        if proc.returncode != 0:
            # The last line says what went wrong (the runner's `error:` line, or an exception's own line).
            raise Refused(f"check command exited {proc.returncode}: {(tail or ['no message'])[-1].strip()}")
        try:
            with open(output, "rb") as f:
                predictions = json.loads(f.read().decode("utf-8"))
        except (OSError, ValueError) as e:
            raise Refused(f"check command wrote no readable predictions to {{output}} ({e})") from None
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {"release": release, "predictions": predictions, "stderr_tail": tail, "python": python}


def classify(args, stdin) -> dict:
    """Run the release's run.py on the images streamed in (a tar.gz of images/); return its per-image results.

    The work folder is outside the release and removed afterwards; the release must still be the one the
    caller verified (a redeploy in between is refused, not silently classified with another model)."""
    bundle = Bundle(args.root, args.name, shared=True)
    if bundle.current() != args.release:
        raise Refused(f"{bundle.path}: current is {bundle.current()}, not the release {args.release} this run verified")
    folder = bundle.release_path(args.release)
    python = runtime_python(folder)
    _require_space(bundle.path, args.bytes, "the images")
    work = tempfile.mkdtemp(prefix=".work-", dir=bundle.path)
    try:
        safe_extract(stdin, work, "images", args.bytes)
        output = os.path.join(work, "results.json")
        started = time.monotonic()
        try:
            proc = subprocess.run([python, "run.py", "--json", output, "--top", "5", os.path.join(work)],
                                  cwd=folder, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE, timeout=args.timeout)
        except subprocess.TimeoutExpired:
            raise Refused(f"run.py did not finish within {args.timeout:g} s") from None
        seconds = time.monotonic() - started
        # Exit 2: some images could not be read; their results say why, the others are good.
        if proc.returncode not in (0, 2) or not os.path.isfile(output):
            tail = proc.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or ["no message"]
            raise Refused(f"run.py exited {proc.returncode}: {tail[0].strip()}")
        with open(output, "rb") as f:
            ran = json.loads(f.read().decode("utf-8"))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    for r in ran.get("results", []):
        r["image"] = os.path.basename(str(r.get("image", "")))
    return {"release": args.release, "backend": ran.get("backend"), "versions": ran.get("versions"),
            "results": ran.get("results", []), "seconds": round(seconds, 3), "python": python}


# --- entry point -----------------------------------------------------------------------------------

def main(argv: list[str] | None = None, stdin=None) -> int:
    ap = argparse.ArgumentParser(prog="edgeincep-remote")
    ap.add_argument("command", choices=("install", "commit", "discard", "rollback", "status", "check", "setup",
                                        "classify"))
    ap.add_argument("--root", required=True)
    ap.add_argument("--name", required=True)
    ap.add_argument("--manifest-sha", default="")
    ap.add_argument("--bytes", type=int, default=0)
    ap.add_argument("--commit", action="store_true")
    ap.add_argument("--release", default="")
    ap.add_argument("--timeout", type=float, default=600.0)
    ap.add_argument("--index", action="store_true")
    args = ap.parse_args(argv)
    try:
        if args.command in ("install", "classify"):
            result = {"install": install, "classify": classify}[args.command](
                args, stdin if stdin is not None else sys.stdin.buffer)
        else:
            result = {"commit": commit, "discard": discard, "rollback": rollback, "status": status,
                      "check": check, "setup": setup}[args.command](args)
    except Refused as e:
        print(json.dumps({"ok": False, "error": str(e)}))
        return 3
    except Exception as e:  # noqa: BLE001 (whatever happened on the device comes back as one line)
        print(json.dumps({"ok": False, "error": f"device helper failed: {type(e).__name__}: {e}"}))
        return 4
    print(json.dumps({"ok": True, **result}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
