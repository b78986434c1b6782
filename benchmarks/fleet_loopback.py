"""On-device accuracy and fleet throughput of Raspberry Pi bundles on a loopback fleet: an x86-64 board (this
host's Python) and emulated Raspberry Pi 4 and Pi 5 boards (Debian's arm64 python3 under qemu-user), each behind
its own OpenSSH server on 127.0.0.1, as the fleet tests set them up.

    python benchmarks/fleet_loopback.py out/*/inception_*.tflite.rpi --images data/fashion-mnist/val \\
        --count 2000 --out out/fleet-bench

Writes OUT/fleet_loopback.json: per bundle, the `fleet validate` record (per-board images/s, overhead per shard,
agreement of each board with the host's INT8), and OUT/<bundle>.html. Needs make test-prerequisites (sshd, the
arm64 sysroot).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the loopback sshd the tests use

from sshd_server import start_sshd, stop_sshd  # noqa: E402

from edgeincep.bundle import emulate  # noqa: E402
from edgeincep.fleet.inventory import load_inventory  # noqa: E402
from edgeincep.fleet.validate import Fleet  # noqa: E402
from edgeincep.report.fleet import print_fleet, write_html  # noqa: E402


def subset(images: Path, count: int, dest: Path) -> Path:
    """The first count/classes images of each class folder, as links."""
    classes = sorted(p for p in images.iterdir() if p.is_dir())
    per = max(1, count // len(classes))
    for cls in classes:
        (dest / cls.name).mkdir(parents=True)
        for p in sorted(cls.iterdir())[:per]:
            (dest / cls.name / p.name).symlink_to(p.resolve())
    return dest


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bundles", nargs="+", type=Path)
    ap.add_argument("--images", type=Path, required=True)
    ap.add_argument("--count", type=int, default=2000)
    ap.add_argument("--shard-size", type=int, default=100)
    ap.add_argument("--boards", default="x86,pi4,pi5")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    names = args.boards.split(",")
    with tempfile.TemporaryDirectory(prefix="edgeincep-fleet-bench-") as tmp:
        work = Path(tmp)
        images = subset(args.images, args.count, work / "images")
        servers = {n: start_sshd(work / n) for n in names}
        try:
            (work / "known_hosts").write_text("".join(f"[127.0.0.1]:{s.port} {s.host_pub_line}\n"
                                                      for s, _ in servers.values()))
            python = {n: sys.executable if n == "x86" else
                      str(emulate.board_python(emulate.BOARDS[n], work / f"{n}-python")) for n in names}
            entries = "".join(f"  - {{name: {n}, host: {s.user}@127.0.0.1, port: {s.port}, identity: {s.identity}, "
                              f"device: rpi, python: '{python[n]}', dest: '{work / n / 'device'}'}}\n"
                              for n, (s, _) in servers.items())
            (work / "fleet.yaml").write_text(f"known_hosts: known_hosts\nboards:\n{entries}")
            results = {}
            for bundle in args.bundles:
                t0 = time.perf_counter()
                record = Fleet(bundle, load_inventory(work / "fleet.yaml")).run(images, shard_size=args.shard_size)
                record["total_s"] = round(time.perf_counter() - t0, 1)
                print_fleet(record)
                write_html(record, args.out / f"{bundle.name}.html")
                results[bundle.name] = record
        finally:
            for _, proc in servers.values():
                stop_sshd(proc)
    (args.out / "fleet_loopback.json").write_text(json.dumps({"schema": "edgeincep.fleet-loopback/1",
                                                              "images": args.count, "boards": names,
                                                              "results": results}, indent=1, default=str))
    print(f"wrote {args.out / 'fleet_loopback.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
