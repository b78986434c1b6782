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

Commands (stdout carries exactly one JSON object; exit 0 ok, 3 refused):
    install  --root R --name N --manifest-sha S --bytes B [--commit]   tar.gz on stdin
    commit   --root R --name N --release ID
    discard  --root R --name N --release ID
    rollback --root R --name N
    status   --root R --name N
    check    --root R --name N --release ID [--timeout S]
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
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


def verify_tree(folder: str) -> tuple[list[str], list[str]]:
    """(problems, extras): listed files missing, of the wrong size or sha256, or not executable; unlisted files.

    A fresh upload must have no extras; an installed release may have gained some (a device-built engine).
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
            elif entry in files and rel not in listed:
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
        """Uploads and staged releases left by a deploy that died (we hold the lock, so none is live)."""
        for entry in os.listdir(self.path):
            if entry.startswith(".incoming-"):
                shutil.rmtree(os.path.join(self.path, entry), ignore_errors=True)
        rel = os.path.join(self.path, "releases")
        for entry in os.listdir(rel):
            if entry.startswith(STAGED) and time.time() - os.path.getmtime(os.path.join(rel, entry)) > 3600:
                shutil.rmtree(os.path.join(rel, entry), ignore_errors=True)

    def prune(self) -> None:
        keep = {self.current(), self.previous()}
        rel = os.path.join(self.path, "releases")
        for entry in os.listdir(rel):
            if entry not in keep and not entry.startswith(STAGED):
                shutil.rmtree(os.path.join(rel, entry), ignore_errors=True)

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


def install(args, stdin) -> dict:
    bundle = Bundle(args.root, args.name, create=True)
    bundle.sweep()
    free = shutil.disk_usage(bundle.path).free
    if free < args.bytes + SPARE_BYTES:
        raise Refused(f"not enough space on the device: {args.bytes / 1e6:.1f} MB needed in {bundle.path}, "
                      f"{free / 1e6:.1f} MB free")
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
                bundle.release_path(current))[0]:
            shutil.rmtree(incoming, ignore_errors=True)
            return {**bundle.describe(), "release": current, "unchanged": True, "files": files}
        release = _release_id(got)
        final = bundle.release_path(release if args.commit else STAGED + release)
        if os.path.lexists(final):
            shutil.rmtree(final)
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
    problems, _ = verify_tree(bundle.release_path(previous))
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
            problems, extras = verify_tree(bundle.release_path(release))
            out[which + "_problems"], out[which + "_extras"] = problems, extras
            out[which + "_manifest_sha256"] = _installed_sha(bundle, release)
    return out


def check(args) -> dict:
    """Run the bundle's own check command in the (staged or current) release; return what it predicted."""
    bundle = Bundle(args.root, args.name, shared=True)
    release = args.release or bundle.current()
    if release is None:
        raise Refused(f"{bundle.path}: nothing deployed to check")
    folder = bundle.release_path(release)
    spec = read_manifest(folder).get("check")
    if not isinstance(spec, dict) or not isinstance(spec.get("command"), list) or not spec["command"]:
        raise Refused(f"{MANIFEST} has no 'check' entry (command + expected), so the bundle cannot be checked")
    # Outside the release: the check must not add files that later fail its verification.
    work = tempfile.mkdtemp(prefix=".check-", dir=bundle.path)
    try:
        output = os.path.join(work, "predictions.json")
        argv = [str(a).replace("{output}", output).replace("{python}", sys.executable) for a in spec["command"]]
        try:
            proc = subprocess.run(argv, cwd=folder, stdin=subprocess.DEVNULL, capture_output=True,
                                  timeout=args.timeout)
        except FileNotFoundError:
            raise Refused(f"check command {argv[0]!r} not found on the device") from None
        except subprocess.TimeoutExpired:
            raise Refused(f"check command did not finish within {args.timeout:g} s") from None
        tail = proc.stderr.decode("utf-8", "replace").strip().splitlines()[-3:]
        if proc.returncode != 0:
            raise Refused(f"check command exited {proc.returncode}: {' | '.join(tail) or 'no message'}")
        try:
            with open(output, "rb") as f:
                predictions = json.loads(f.read().decode("utf-8"))
        except (OSError, ValueError) as e:
            raise Refused(f"check command wrote no readable predictions to {{output}} ({e})") from None
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {"release": release, "predictions": predictions, "stderr_tail": tail}


# --- entry point -----------------------------------------------------------------------------------

def main(argv: list[str] | None = None, stdin=None) -> int:
    ap = argparse.ArgumentParser(prog="edgeincep-remote")
    ap.add_argument("command", choices=("install", "commit", "discard", "rollback", "status", "check"))
    ap.add_argument("--root", required=True)
    ap.add_argument("--name", required=True)
    ap.add_argument("--manifest-sha", default="")
    ap.add_argument("--bytes", type=int, default=0)
    ap.add_argument("--commit", action="store_true")
    ap.add_argument("--release", default="")
    ap.add_argument("--timeout", type=float, default=600.0)
    args = ap.parse_args(argv)
    try:
        if args.command == "install":
            result = install(args, stdin if stdin is not None else sys.stdin.buffer)
        else:
            result = {"commit": commit, "discard": discard, "rollback": rollback, "status": status,
                      "check": check}[args.command](args)
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
