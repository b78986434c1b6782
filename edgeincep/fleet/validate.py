"""`edgeincep fleet validate`: a bundle's accuracy on the devices themselves, the image set sharded across boards.

1. Boards whose device kind is not the bundle's are excluded. The others get the bundle with the verified,
   atomic `deploy --check` (or, with deploy=False, what they already run is re-verified file by file and
   checked): a board that fails either is excluded with the reason.
2. The host computes its own INT8 logits (the bundle's run.py with the host's runtime) and, given the FP32
   ONNX, the FP32 logits, for every image.
3. One thread per ready board takes shards from a shared queue (shards.py): the images are streamed to the
   board, its run.py classifies them there and the results come back. A board that fails mid-shard (connection
   lost, process killed, disk full) is dropped and its shard goes to another board.
4. Per board and merged: top-1/top-5 on the device, agreement with the host's INT8 and with FP32, every
   image where the board's top-1 is not the host's, output differences in the bundle's own tolerance unit
   (the one `run.py --check` uses), throughput and the cost of a shard beyond classifying it.
"""
from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import paramiko

from edgeincep.core.errors import DataError, UserError
from edgeincep.data.folders import model_labels, scan_folder
from edgeincep.deploy import ssh
from edgeincep.device.common import describe_tolerance, deviation
from edgeincep.fleet.inventory import Board, Inventory
from edgeincep.fleet.shards import Shard, ShardQueue, split
from edgeincep.fsutil import link_by_index
from edgeincep.validate import metrics as M

SCHEMA = "edgeincep.fleet/1"
MAX_LISTED = 50


class FleetDisagreement(UserError):
    """A board's results differ from the host's beyond the bundle's tolerance."""

    exit_code = 13


class FleetIncomplete(UserError):
    """Some images were classified by no board (every board was excluded or dropped)."""

    exit_code = 14


Event = Callable[[str, str, dict], None]  # (kind, board name, details)


@dataclass
class BoardRun:
    board: Board
    target: ssh.Target
    state: str = "pending"            # excluded, ready, dropped, finished
    reason: str | None = None
    release: str | None = None
    python: str | None = None
    backend: str | None = None
    versions: dict = field(default_factory=dict)
    shards: int = 0
    images: int = 0
    wall_s: float = 0.0               # from packing the shard to its results on the host
    device_s: float = 0.0             # run.py on the board, interpreter start included
    failures: list[str] = field(default_factory=list)
    node: str | None = None           # the Ray node its shard loop ran on (None: a thread of this process)


@dataclass
class Images:
    paths: list[Path]
    labels: np.ndarray | None
    class_names: list[str]


def _images(images_dir: Path, model_names: list[str]) -> Images:
    found = scan_folder(images_dir)
    if not len(found):
        raise DataError("no images found", images_dir)
    return Images(list(found.paths), model_labels(found, model_names), model_names or found.class_names)


def _shard_archive(paths: list[Path], indices: list[int], work: Path) -> tuple[Path, int]:
    """The shard's images as images/<index>.<suffix> in a tar.gz (the index names the result), and their bytes."""
    archive = work / "shard.tar.gz"
    total = 0
    with tarfile.open(archive, "w:gz", compresslevel=1) as tar:
        for i in indices:
            p = paths[i]
            with p.open("rb") as f:  # the file's own stat: a linked image travels as its content
                info = tar.gettarinfo(arcname=f"images/{i:07d}{p.suffix.lower()}", fileobj=f)
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                info.mode = 0o644
                total += info.size
                tar.addfile(info, f)
    return archive, total


def host_logits(bundle: Path, paths: list[Path], timeout: float = 3600) -> tuple[np.ndarray, str, list[str | None]]:
    """The host's INT8 logits: the bundle's own run.py with this machine's runtime (what the host validated)."""
    with tempfile.TemporaryDirectory(prefix="edgeincep-fleet-host-") as tmp:
        listing = link_by_index(paths, Path(tmp) / "images")
        out = Path(tmp) / "host.json"
        done = subprocess.run([sys.executable, str(bundle / "run.py"), "--json", str(out), "--top", "5", str(listing)],
                              cwd=bundle, capture_output=True, text=True, timeout=timeout)
        if done.returncode not in (0, 2) or not out.is_file():
            tail = (done.stderr.strip().splitlines() or ["no message"])[-1]
            raise UserError(f"the bundle's run.py failed on the host (exit {done.returncode}): {tail}", bundle)
        ran = json.loads(out.read_text())
    width = max((len(r["logits"]) for r in ran["results"] if "logits" in r), default=0)
    logits = np.full((len(paths), width), np.nan, np.float32)  # NaN: an image run.py could not read
    errors: list[str | None] = [None] * len(paths)
    for r in ran["results"]:
        i = int(Path(r["image"]).stem)  # the file names are the indices
        if "logits" in r:
            logits[i] = r["logits"]
        else:
            errors[i] = r.get("error", "no logits")
    return logits, ran.get("backend") or "?", errors


def fp32_beside(manifest: dict) -> Path | None:
    """The FP32 ONNX the bundle's model was made from, where `edgeincep run` left it (beside the INT8 file), if
    this machine has it."""
    source = Path(str((manifest.get("source") or {}).get("path") or ""))
    found = sorted(source.parent.glob("*.fp32.onnx")) if source.name else []
    return found[0] if found else None


def fp32_logits(onnx_path: Path, paths: list[Path], threads: int = 0) -> np.ndarray:
    from edgeincep.data.folders import ImageSet
    from edgeincep.export.onnx import preprocess_from_metadata, read_metadata
    from edgeincep.validate.ort import reference_predictor
    from edgeincep.validate.runner import run_predictors

    pred = reference_predictor(onnx_path, threads)
    pre = preprocess_from_metadata(read_metadata(onnx_path), onnx_path)
    images = ImageSet(Path(paths[0]).parent, list(paths), None, [])
    logits, _, kept = run_predictors([pred], images, pre, skip_bad=True)
    out = np.full((len(paths), logits[pred.name].shape[1]), np.nan, np.float32)
    out[kept] = logits[pred.name]
    return out


def _why(e: Exception, run: BoardRun) -> str:
    """One line for what went wrong with a board: our own errors as they are, anything else named by its type."""
    if isinstance(e, UserError):
        return str(e).removeprefix(f"{run.target.label}: ")
    kind = "SSH" if isinstance(e, paramiko.SSHException) else type(e).__name__
    return f"{kind}: {' '.join(str(e).split()) or 'no message'}"


class Fleet:
    """One `fleet validate` run: the boards, the queue, and the results as they come back."""

    def __init__(self, bundle: Path, inventory: Inventory, *, deploy: bool = True, setup: bool = False,
                 check_timeout: float = 600.0, shard_timeout: float = 1800.0, on_event: Event | None = None,
                 ray: bool = False, ray_address: str | None = None):
        self.bundle, self.inventory = Path(bundle), inventory
        self.deploy, self.setup = deploy, setup
        self.ray, self.ray_address = ray or ray_address is not None, ray_address
        self.check_timeout, self.shard_timeout = check_timeout, shard_timeout
        self.on_event = on_event or (lambda kind, board, details: None)
        default_kh = ssh.default_known_hosts()
        self.known_hosts = ssh.KnownHosts(inventory.known_hosts or default_kh,
                                          () if inventory.known_hosts else (ssh.GLOBAL_KNOWN_HOSTS,))
        self.boards = [BoardRun(b, ssh.parse_target(b.host, b.port)) for b in inventory.boards]
        self._lock = threading.Lock()

    # --- getting each board ready ----------------------------------------------------------------------

    def _connect(self, run: BoardRun) -> ssh.Device:
        return ssh.Device.connect(run.target, known_hosts=self.known_hosts, identity=run.board.identity,
                                  remote_python=run.board.python)

    def _prepare(self, run: BoardRun, local: ssh.LocalBundle) -> None:
        b = run.board
        want = local.manifest.get("device")
        if b.device != want:
            run.state, run.reason = "excluded", f"device kind {b.device}; the bundle is for {want}"
            return
        try:
            if self.deploy:
                result = ssh.deploy(self.bundle, run.target, dest=b.dest, known_hosts=self.known_hosts,
                                    identity=b.identity, check=True, setup=self.setup, remote_python=b.python,
                                    check_timeout=self.check_timeout)
                run.release, run.python = result["current"], result["check"].get("python")
            else:
                with self._connect(run) as device:
                    status = device.call("status", root=b.dest, name=local.name)
                    current = status.get("current")
                    if current is None:
                        raise ssh.DeployError("nothing deployed there (run without --no-deploy)")
                    if status.get("current_problems"):
                        raise ssh.DeployError("the deployed copy fails verification: "
                                              + "; ".join(status["current_problems"][:3]))
                    if status.get("current_manifest_sha256") != local.manifest_sha256:
                        raise ssh.DeployError(f"it runs another version of the bundle ({current})")
                    checked = ssh.run_check(device, local, ssh.check_spec(local), b.dest, current,
                                            self.check_timeout, run.target, True)
                    run.release, run.python = current, checked.get("python")
        except Exception as e:  # noqa: BLE001 (a board that cannot be made ready is excluded, whatever the cause)
            run.state, run.reason = "excluded", _why(e, run)
            return
        run.state = "ready"

    # --- the shards ------------------------------------------------------------------------------------

    def _classify(self, device: ssh.Device, run: BoardRun, name: str, shard: Shard, paths: list[Path]) -> dict:
        with tempfile.TemporaryDirectory(prefix="edgeincep-shard-") as tmp:
            archive, total = _shard_archive(paths, shard.images, Path(tmp))
            return device.call("classify", root=run.board.dest, name=name, payload=archive, bytes=total,
                               release=run.release, timeout=self.shard_timeout)

    def _work(self, run: BoardRun, name: str, queue: ShardQueue, paths: list[Path], collect) -> None:
        try:
            device = self._connect(run)
        except UserError as e:
            run.state, run.reason = "dropped", f"could not connect for the shards: {e}"
            return
        with contextlib.closing(device):
            while (shard := queue.take(run.board.name)) is not None:
                self.on_event("shard-start", run.board.name, {"shard": shard.index, "images": len(shard.images)})
                t0 = time.perf_counter()
                try:
                    answer = self._classify(device, run, name, shard, paths)
                    expected = {f"{i:07d}" for i in shard.images}
                    got = {Path(r["image"]).stem for r in answer["results"]}
                    if got != expected:
                        raise ssh.DeployError(f"run.py returned {len(got)} results for {len(expected)} images")
                except Exception as e:  # noqa: BLE001 (whatever stopped this board, the shard must go back)
                    why = _why(e, run)
                    run.failures.append(f"shard {shard.index}: {why}")
                    queue.fail(shard, run.board.name, why)
                    run.state, run.reason = "dropped", f"failed during shard {shard.index}: {why}"
                    self.on_event("shard-failed", run.board.name, {"shard": shard.index, "why": why})
                    return
                wall = time.perf_counter() - t0
                if queue.complete(shard, run.board.name, answer["results"]):
                    with self._lock:
                        run.shards += 1
                        run.images += len(shard.images)
                        run.wall_s += wall
                        run.device_s += float(answer.get("seconds") or 0.0)
                        run.backend, run.versions = answer.get("backend"), answer.get("versions") or {}
                    collect(shard, run.board.name, answer["results"])
                    self.on_event("shard-done", run.board.name, {"shard": shard.index, "images": len(shard.images),
                                                                 "seconds": wall})
        run.state = "finished"

    # --- the whole run ---------------------------------------------------------------------------------

    def run(self, images_dir: Path, *, shard_size: int = 64, fp32: Path | None = None, threads: int = 0) -> dict:
        """Classify `images_dir` on the boards; `fp32`: the FP32 ONNX (default: the one beside the bundle's
        source artifact, if present)."""
        started = time.perf_counter()
        with ssh.prepared(self.bundle) as local:
            fp32 = fp32 or fp32_beside(local.manifest)
            labels_json = json.loads((local.folder / "labels.json").read_text())
            images = _images(images_dir, labels_json)
            expected = json.loads((local.folder / "expected.json").read_text())
            prep = [threading.Thread(target=self._prepare, args=(r, local), daemon=True) for r in self.boards]
            for t in prep:
                t.start()
            host, host_backend, host_errors = host_logits(local.folder, images.paths)
            ref = fp32_logits(fp32, images.paths, threads) if fp32 is not None else None
            for t in prep:
                t.join()
            for r in self.boards:
                self.on_event("board-" + r.state, r.board.name, {"reason": r.reason})
            ready = [r for r in self.boards if r.state == "ready"]
            shards = split(len(images.paths), shard_size)
            device = np.full_like(host, np.nan)
            owner: list[str | None] = [None] * len(images.paths)
            errors: dict[int, str] = {}
            lock = threading.Lock()

            def collect(shard: Shard, board: str, results: list[dict]) -> None:
                with lock:
                    for r in results:
                        i = int(Path(r["image"]).stem)
                        owner[i] = board
                        if "logits" in r:
                            device[i] = r["logits"]
                        else:
                            errors[i] = r.get("error", "no logits")

            self.on_event("start", "", {"images": len(images.paths), "shards": len(shards),
                                        "boards": [r.board.name for r in ready]})
            t0 = time.perf_counter()
            if self.ray:
                from edgeincep.fleet.ray_boards import run_on_ray

                results, lost, runs = run_on_ray(self, ready, local.name, images.paths, shards, self.ray_address,
                                                 self.on_event)
                by_name = {r.board.name: r for r in runs}
                self.boards = [by_name.get(r.board.name, r) for r in self.boards]
                for index, (board, rows) in sorted(results.items()):
                    collect(Shard(index, []), board, rows)
            else:
                queue = ShardQueue(shards)
                work = [threading.Thread(target=self._work, args=(r, local.name, queue, images.paths, collect),
                                         daemon=True) for r in ready]
                for t in work:
                    t.start()
                for t in work:
                    t.join()
                lost = queue.abandon()
            sharding_s = time.perf_counter() - t0
            record = summarize(self, local, images, expected, host, host_backend, ref, device, owner, errors, lost)
            record["images"]["shards"] = len(shards)
            record["sharding_s"] = round(sharding_s, 2)
            record["fleet_images_per_s"] = record["images"]["classified"] / sharding_s if sharding_s else None
        record["wall_s"] = round(time.perf_counter() - started, 1)
        record["host_errors"] = sum(e is not None for e in host_errors)
        return record


def _tolerance_for(expected: dict, backend: str | None):
    tolerances = expected.get("tolerance") or {}
    return tolerances.get(backend) if backend in tolerances else None


def _agreement(a: np.ndarray, b: np.ndarray) -> float | None:
    """Over the images both sides classified (a board's missing rows are NaN)."""
    ok = ~(np.isnan(a).any(1) | np.isnan(b).any(1))
    return M.top1_agreement(a[ok], b[ok]) if ok.any() else None


def _topk(logits: np.ndarray, labels: np.ndarray | None, k: int) -> float | None:
    if labels is None or not len(logits):
        return None
    ok = ~np.isnan(logits).any(1)
    return M.accuracy(logits[ok], labels[ok], k) if ok.any() else None


def _name(names: list[str], c: int) -> str:
    return names[c] if 0 <= c < len(names) else str(c)


def board_record(rows: np.ndarray, host: np.ndarray, ref: np.ndarray | None, labels: np.ndarray | None,
                 paths: list[Path], names: list[str], tol) -> dict:
    """One board's (or the merged) numbers over the images it classified (`rows` selects them)."""
    dev, hst = rows, host
    beyond, worst, flips = 0, 0.0, []
    for j in range(len(dev)):
        if np.isnan(dev[j]).any() or np.isnan(hst[j]).any():
            continue
        diff, within = deviation(tol, dev[j], hst[j])
        worst = max(worst, float(diff))
        d, h = int(dev[j].argmax()), int(hst[j].argmax())
        if d != h:
            flips.append({"image": str(paths[j]), "host": _name(names, h), "device": _name(names, d)})
        if d != h or not within:
            beyond += 1
    return {"images": len(dev), "top1": _topk(dev, labels, 1), "top5": _topk(dev, labels, 5),
            "host_top1": _topk(hst, labels, 1),
            "agreement_host_int8": _agreement(dev, hst),
            "agreement_fp32": _agreement(dev, ref) if ref is not None else None,
            "host_agreement_fp32": _agreement(hst, ref) if ref is not None else None,
            "identical_logits": float(np.mean(np.all(dev == hst, axis=1))) if len(dev) else None,
            "max_difference": worst, "beyond_tolerance": beyond,
            "disagreements": len(flips), "disagreement_list": flips[:MAX_LISTED]}


def summarize(fleet: Fleet, local: ssh.LocalBundle, images: Images, expected: dict, host: np.ndarray,
              host_backend: str, ref: np.ndarray | None, device: np.ndarray, owner: list[str | None],
              errors: dict[int, str], lost: list[Shard]) -> dict:
    labels, names, paths = images.labels, images.class_names, images.paths
    boards = []
    for r in fleet.boards:
        entry = {"name": r.board.name, "host": r.target.label, "user": r.target.user, "device": r.board.device,
                 "labels": r.board.labels, "state": r.state, "reason": r.reason, "release": r.release,
                 "ray_node": r.node,
                 "python": r.python, "backend": r.backend, "versions": r.versions, "shards": r.shards,
                 "failures": r.failures}
        idx = [i for i, o in enumerate(owner) if o == r.board.name]
        if idx:
            tol = _tolerance_for(expected, r.backend)
            entry.update(board_record(device[idx], host[idx], None if ref is None else ref[idx],
                                      None if labels is None else labels[idx], [paths[i] for i in idx], names, tol))
            entry["tolerance"] = describe_tolerance(tol)
            entry["images_per_s"] = r.images / r.wall_s if r.wall_s else None
            entry["overhead_per_shard_s"] = (r.wall_s - r.device_s) / r.shards if r.shards else None
            entry["device_s_per_shard"] = r.device_s / r.shards if r.shards else None
        boards.append(entry)
    done = [i for i, o in enumerate(owner) if o is not None]
    merged = board_record(device[done], host[done], None if ref is None else ref[done],
                          None if labels is None else labels[done], [paths[i] for i in done], names,
                          _tolerance_for(expected, next((b["backend"] for b in boards if b.get("backend")), None)))
    return {"schema": SCHEMA, "bundle": {"name": local.name, "device": local.manifest.get("device"),
                                         "model": local.manifest.get("model"), "target": local.manifest.get("target"),
                                         "manifest_sha256": local.manifest_sha256},
            "images": {"count": len(paths), "labelled": labels is not None, "classified": len(done),
                       "unreadable": len(errors)},
            "host": {"backend": host_backend, "fp32": ref is not None},
            "boards": boards, "merged": merged,
            "lost_shards": [{"shard": s.index, "images": len(s.images), "attempts": s.attempts} for s in lost]}


def verdict(record: dict) -> UserError | None:
    """What the run's exit code says: None when every image was classified and every board agrees with the host
    within the bundle's tolerance."""
    if not any(b.get("images") for b in record["boards"]):
        reasons = "; ".join(f"{b['name']}: {b['reason']}" for b in record["boards"])
        return FleetIncomplete(f"no board classified any image ({reasons})")
    if record["lost_shards"]:
        missing = sum(s["images"] for s in record["lost_shards"])
        return FleetIncomplete(f"{missing} of {record['images']['count']} images were classified by no board")
    beyond = [b for b in record["boards"] if b.get("beyond_tolerance")]
    if beyond:
        return FleetDisagreement("boards differ from the host beyond the bundle's tolerance: " + ", ".join(
            f"{b['name']} on {b['beyond_tolerance']} of {b['images']} images" for b in beyond))
    return None
