"""The benchmark suite (`make bench`): FP32 vs INT8 on every runtime here, full-size models at 299 px.

For Inception-v4 and Inception-ResNet-v2 it runs the real pipeline (`edgeincep run`, recipe
benchmarks/pipeline.yaml) in a child process, recording each stage's wall time and peak memory
and the whole run's, then `edgeincep bench` over the artifacts it built. Speed does not depend
on weight values, so the networks carry deterministic synthetic weights: the accuracy columns
of these runs mean nothing, the speed and cost columns are the point.

Writes OUT/suite.json (and each model's report.html / bench.html) and prints the goals of the
benchmark issue with the measured value beside each.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EDGEINCEP = [sys.executable, "-m", "edgeincep"]
GOALS = {"best_int8_v4_ms": 35.0,
         "ratio": {"openvino": 0.35, "onnxruntime": 0.45, "tflite": 0.45, "executorch": 0.45},
         # ExecuTorch and LiteRT both run XNNPACK's kernels: ExecuTorch INT8 / LiteRT INT8, batch-1 p50
         "executorch_vs_tflite": 1.1,
         "pipeline_seconds": 600.0, "pipeline_peak_mb": 8192.0}


def timed(cmd: list[str], log: Path) -> dict:
    """Run `cmd` to completion; its wall time, exit code and peak RSS (from the kernel, via wait4)."""
    t0 = time.perf_counter()
    with open(log, "w") as f:
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=ROOT)
        _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return {"cmd": " ".join(cmd[2:]), "rc": proc.returncode, "seconds": round(time.perf_counter() - t0, 1),
            "peak_rss_mb": round(usage.ru_maxrss / 1024, 1), "log": str(log)}


def one_model(model: str, out: Path, val: Path, threads: int, runs: int) -> dict:
    # From scratch every time: the pipeline's stage cache would otherwise hide what the stages cost.
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    print(f"== {model}: pipeline (export, every CPU target, validation) ...", flush=True)
    run = timed([*EDGEINCEP, "run", "--model", model, "--weights", "synthetic", "--val", str(val), "--out", str(out),
                 "--recipe", str(ROOT / "benchmarks" / "pipeline.yaml"), "--threads", str(threads)], out / "run.log")
    if run["rc"] != 0:
        sys.exit(f"{model}: edgeincep run failed (exit {run['rc']}); see {run['log']}")
    report = json.loads((out / "report.json").read_text())
    arts = [report["validation"]["reference"]["path"], *(a["path"] for a in report["validation"]["artifacts"])]
    print(f"== {model}: bench over {len(arts)} artifacts ...", flush=True)
    bench = timed([*EDGEINCEP, "bench", *arts, "--threads", str(threads), "--runs", str(runs),
                   "--json", str(out / "bench.json"), "--html", str(out / "bench.html")], out / "bench.log")
    if bench["rc"] != 0:
        sys.exit(f"{model}: edgeincep bench failed (exit {bench['rc']}); see {bench['log']}")
    stages = report.get("stages", {})
    # The run resets its RSS high-water mark at each stage (to measure stages apart), so the kernel's
    # figure at exit covers only the last stage: the run's peak is the largest of all of them (each
    # stage's figure includes the child processes it ran: ModelOpt, the TFLite converter and workers).
    run["peak_rss_mb"] = round(max([run["peak_rss_mb"], *(st.get("peak_rss_mb") or 0 for st in stages.values())]), 1)
    return {"model": model, "pipeline": {**run, "stages": stages},
            "bench": json.loads((out / "bench.json").read_text())}


def goals(results: dict) -> list[dict]:
    rows = []
    v4 = results.get("inception_v4")
    if v4:
        int8 = [r for r in v4["bench"]["results"] if r["precision"] == "int8"]
        best = min(int8, key=lambda r: r["latency"]["p50_ms"])
        rows.append({"goal": "best INT8 Inception-v4, batch 1", "value": round(best["latency"]["p50_ms"], 2),
                     "limit": GOALS["best_int8_v4_ms"], "unit": "ms", "which": best["name"]})
    for model, res in results.items():
        int8 = {r["target"]: r for r in res["bench"]["results"] if r["precision"] == "int8"}
        if "executorch" in int8 and "tflite" in int8:
            rows.append({"goal": f"{model} ExecuTorch INT8 / LiteRT INT8 latency", "unit": "x",
                         "value": round(int8["executorch"]["latency"]["p50_ms"] / int8["tflite"]["latency"]["p50_ms"], 3),
                         "limit": GOALS["executorch_vs_tflite"]})
        for r in res["bench"]["ratios"]:
            limit = GOALS["ratio"].get(r["target"])
            rows.append({"goal": f"{model} {r['target']} INT8/FP32 latency", "value": round(r["latency_ratio"], 3),
                         "limit": limit, "unit": "x"})
    irv2 = results.get("inception_resnet_v2")
    if irv2:
        p = irv2["pipeline"]
        rows.append({"goal": "Inception-ResNet-v2 pipeline wall time", "value": p["seconds"],
                     "limit": GOALS["pipeline_seconds"], "unit": "s"})
        rows.append({"goal": "Inception-ResNet-v2 pipeline peak memory", "value": p["peak_rss_mb"],
                     "limit": GOALS["pipeline_peak_mb"], "unit": "MB"})
    for row in rows:
        row["met"] = None if row["limit"] is None else row["value"] <= row["limit"]
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "out" / "bench")
    ap.add_argument("--val", type=Path, default=ROOT / "data" / "fashion-mnist" / "val")
    ap.add_argument("--models", nargs="+", default=["inception_v4", "inception_resnet_v2"])
    ap.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    ap.add_argument("--runs", type=int, default=30)
    args = ap.parse_args()
    if not args.val.is_dir():
        sys.exit(f"{args.val}: validation folder not found (make data)")
    print("Synthetic deterministic weights: speed does not depend on weight values; accuracy here means nothing.")
    results = {m: one_model(m, args.out / m, args.val, args.threads, args.runs) for m in args.models}
    record = {"schema": "edgeincep.bench-suite/1", "weights": "synthetic (speed only)", "threads": args.threads,
              "results": results, "goals": goals(results)}
    args.out.mkdir(parents=True, exist_ok=True)
    tmp = args.out / ".suite.json.part"
    tmp.write_text(json.dumps(record, indent=2))
    tmp.replace(args.out / "suite.json")
    for model, res in results.items():
        print(f"\n{model}: pipeline {res['pipeline']['seconds']:.0f} s, peak {res['pipeline']['peak_rss_mb']:.0f} MB")
        for name, st in res["pipeline"]["stages"].items():
            kids = st.get("children_peak_rss_mb") or 0
            print(f"  {name:<22} {st['seconds']:>8.1f} s  {st['peak_rss_mb'] or 0:>8.0f} MB"
                  + (f"  (child processes up to {kids:.0f} MB)" if kids else ""))
        for r in res["bench"]["results"]:
            print(f"  {r['name']:<48} p50 {r['latency']['p50_ms']:8.2f} ms  {r['throughput']['images_per_s']:7.1f} img/s"
                  f"  {r.get('x_floor', 0):5.1f}x floor  {r['executed_precision']}")
    print("\ngoals:")
    for g in record["goals"]:
        mark = {True: "met", False: "MISSED", None: "-"}[g["met"]]
        print(f"  {g['goal']:<52} {g['value']:>9} {g['unit']:<2} (limit {g['limit']}) {mark}")
    print(f"\nwrote {args.out / 'suite.json'}")


if __name__ == "__main__":
    main()
