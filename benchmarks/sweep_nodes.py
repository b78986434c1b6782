"""The same sweep on a 1-node and on a 2-node Ray cluster on loopback (one CPU per node), each from an empty store:
wall time, the sum of the trials' own times, the scheduler's overhead per trial and peak memory.

    python benchmarks/sweep_nodes.py --grid sweep.yaml --model inception_resnet_v1 --target onnxruntime \\
        --val data/fashion-mnist/val --limit 300 --out out/sweep-bench

Writes OUT/sweep_nodes.json. On 2 cores the ratio between the two runs means something, the absolute times
less so.
"""
from __future__ import annotations

import argparse
import json
import os
import secrets
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from edgeincep.sweep.run import sweep
from edgeincep.sweep.space import load_space

RAY = str(Path(sys.executable).with_name("ray"))


def ray_rss_mb() -> float:
    """Resident memory of every Ray process on this machine (raylets, GCS, workers), in MB."""
    out = subprocess.run(["ps", "-eo", "rss=,args="], capture_output=True, text=True).stdout
    return sum(int(line.split(None, 1)[0]) for line in out.splitlines()
               if "ray" in line.split(None, 1)[-1] and "sweep_nodes" not in line) / 1024


def run_on(nodes: int, args, work: Path) -> dict:
    port = 26100 + nodes
    address = f"127.0.0.1:{port}"
    peak = [0.0]
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.5):
            peak[0] = max(peak[0], ray_rss_mb())

    try:
        subprocess.run([RAY, "start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(port), "--num-cpus",
                        "1", "--include-dashboard", "false", "--disable-usage-stats"], check=True, capture_output=True)
        for _ in range(nodes - 1):
            subprocess.run([RAY, "start", "--address", address, "--node-ip-address", "127.0.0.1", "--num-cpus", "1"],
                           check=True, capture_output=True)
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        t0 = time.perf_counter()
        record = sweep(args.model, args.target, load_space(args.grid), weights="reference", val_dir=args.val,
                       out_dir=work / f"out-{nodes}", limit=args.limit, store=work / f"store-{nodes}", address=address)
        wall = time.perf_counter() - t0
    finally:
        stop.set()
        subprocess.run([RAY, "stop", "--force"], capture_output=True)
    trials = [r for r in record["trials"] if r["status"] == "ok"]
    busy = sum(r["seconds"] for r in trials)
    return {"nodes": nodes, "wall_s": round(wall, 1), "trials": len(record["trials"]), "ok": len(trials),
            "trial_seconds_sum": round(busy, 1),
            # what a trial costs beyond its own work: Ray's scheduling, worker start, result transfer, export
            "overhead_per_trial_s": round((wall * nodes - busy) / max(1, len(trials)), 2),
            "peak_trial_rss_mb": max((r["peak_rss_mb"] for r in trials), default=None),
            "peak_ray_rss_mb_all_nodes": round(peak[0], 1),
            "mean_trial_s": round(busy / max(1, len(trials)), 2)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--grid", type=Path, required=True)
    ap.add_argument("--model", action="append", required=True)
    ap.add_argument("--target", action="append", required=True)
    ap.add_argument("--val", type=Path, required=True)
    ap.add_argument("--limit", type=int, default=300)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="edgeincep-sweep-bench-") as tmp:
        token = Path(tmp) / "auth_token"
        token.write_text(secrets.token_hex(32))
        os.environ.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(token), RAY_USAGE_STATS_ENABLED="0")
        runs = [run_on(n, args, Path(tmp)) for n in (1, 2)]
    record = {"schema": "edgeincep.sweep-nodes/1", "grid": str(args.grid), "models": args.model,
              "targets": args.target, "limit": args.limit, "runs": runs,
              "speedup_2_nodes": round(runs[0]["wall_s"] / runs[1]["wall_s"], 2)}
    (args.out / "sweep_nodes.json").write_text(json.dumps(record, indent=1))
    print(json.dumps(record, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
