"""The benchmark suite (`make bench`): FP32 vs INT8 on every runtime here, full-size models at 299 px.

For Inception-v4 and Inception-ResNet-v2 it runs the real pipeline (`edgeincep run`, recipe
benchmarks/pipeline.yaml) in a child process, recording each stage's wall time and peak memory
and the whole run's, then `edgeincep bench` over the artifacts it built. Speed does not depend
on weight values, so the networks carry deterministic synthetic weights: the accuracy columns
of these runs mean nothing, the speed and cost columns are the point.

Beside our artifacts, each runtime's own INT8 recipe with its defaults (`edgeincep peers`: ONNX
Runtime quantize_static, NNCF, TensorFlow's converter, ModelOpt), built from the same FP32 ONNX and
the same calibration images and benched in the same interleaved run. Since synthetic weights say
nothing about accuracy, the same comparison also runs on the three trained reference models
(Fashion-MNIST, `--reference-images` validation images): a faster artifact that agrees less with
FP32 is not a win.

Writes OUT/suite.json (and each model's report.html / bench.html) and prints every goal with the
measured value beside it.
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
         # our INT8 / the runtime's own defaults, batch-1 p50 (aim: 0.8); agreement at least the peer's
         "vs_peer": 1.0, "vs_peer_aim": 0.8,
         # INT8 p50 / the model's compute floor on this CPU, every INT8 artifact that runs here
         "x_floor": 1.15,
         "pipeline_seconds": 300.0, "pipeline_peak_mb": 4096.0}
# ModelOpt's file is for TensorRT: its rows here are ONNX Runtime running Q/DQ, reported, never compared.
NOT_COMPARED = {"tensorrt"}
REFERENCE_MODELS = ("inception_resnet_v2", "inception_resnet_v1", "inception_v4")


def timed(cmd: list[str], log: Path) -> dict:
    """Run `cmd` to completion; its wall time, exit code and peak RSS (from the kernel, via wait4)."""
    t0 = time.perf_counter()
    with open(log, "w") as f:
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=ROOT)
        _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return {"cmd": " ".join(cmd[2:]), "rc": proc.returncode, "seconds": round(time.perf_counter() - t0, 1),
            "peak_rss_mb": round(usage.ru_maxrss / 1024, 1), "log": str(log)}


def edgeincep(args: list[str], log: Path, what: str) -> dict:
    res = timed([*EDGEINCEP, *args], log)
    if res["rc"] != 0:
        sys.exit(f"{what}: edgeincep {args[0]} failed (exit {res['rc']}); see {res['log']}")
    return res


def one_model(model: str, out: Path, val: Path, threads: int, runs: int, *, weights: str = "synthetic",
              limit: int | None = None) -> dict:
    """Our pipeline from scratch, the peers from its FP32 ONNX, the peers validated on the run's images,
    then every artifact benched side by side."""
    # From scratch every time: the pipeline's stage cache would otherwise hide what the stages cost.
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    print(f"== {model} ({weights} weights): pipeline (export, every CPU target, validation) ...", flush=True)
    recipe = ["--recipe", str(ROOT / "benchmarks" / "pipeline.yaml")] if weights == "synthetic" else []
    run = edgeincep(["run", "--model", model, "--weights", weights, "--val", str(val), "--out", str(out),
                     *recipe, *(["--limit", str(limit)] if limit else []), "--threads", str(threads)],
                    out / "run.log", model)
    report = json.loads((out / "report.json").read_text())
    fp32 = report["validation"]["reference"]["path"]
    print(f"== {model}: peer defaults from {Path(fp32).name} ...", flush=True)
    peers = edgeincep(["peers", fp32, "--out", str(out / "peers"), "--json", str(out / "peers.json")],
                      out / "peers.log", model)
    peer_record = json.loads((out / "peers.json").read_text())
    peer_paths = [r["artifact"]["path"] for r in peer_record["peers"] if "artifact" in r]
    count = report["validation"]["images"]["count"]
    print(f"== {model}: peers on the run's {count} validation images ...", flush=True)
    edgeincep(["validate", fp32, *peer_paths, "--images", str(val), "--limit", str(limit or count),
               "--threads", str(threads), "--json", str(out / "peers.validation.json")], out / "peers.validate.log", model)
    peer_validation = json.loads((out / "peers.validation.json").read_text())
    arts = [fp32, *(a["path"] for a in report["validation"]["artifacts"]), *peer_paths]
    print(f"== {model}: bench over {len(arts)} artifacts ...", flush=True)
    bench_run = edgeincep(["bench", *arts, "--threads", str(threads), "--runs", str(runs),
                       "--json", str(out / "bench.json"), "--html", str(out / "bench.html")], out / "bench.log", model)
    stages = report.get("stages", {})
    # The run resets its RSS high-water mark at each stage (to measure stages apart), so the kernel's
    # figure at exit covers only the last stage: the run's peak is the largest of all of them (each
    # stage's figure includes the child processes it ran: ModelOpt, the TFLite converter and workers).
    run["peak_rss_mb"] = round(max([run["peak_rss_mb"], *(st.get("peak_rss_mb") or 0 for st in stages.values())]), 1)
    record = json.loads((out / "bench.json").read_text())
    accuracy = {a["path"]: a for a in [*report["validation"]["artifacts"], *peer_validation["artifacts"]]}
    for row in record["results"]:
        a = accuracy.get(row["path"])
        if a is not None:
            row["validation"] = {"images": count, "top1": a.get("top1"),
                                 "top1_agreement": a["drift"]["top1_agreement"],
                                 "top1_drop_points": a["drift"].get("top1_drop_points")}
    return {"model": model, "weights": weights, "pipeline": {**run, "stages": stages},
            "peers": {**peers, "built": peer_record["peers"]}, "bench_run": bench_run, "bench": record}


def _met(row: dict) -> dict:
    if row.get("at_least") is not None:
        row["met"] = row["value"] >= row["at_least"]
    else:
        row["met"] = None if row.get("limit") is None else row["value"] <= row["limit"]
    return row


def _ours_and_peers(res: dict) -> list[tuple[dict, dict]]:
    rows = {r["name"]: r for r in res["bench"]["results"]}
    return [(rows[p["ours"]], rows[p["peer"]]) for p in res["bench"].get("peer_ratios", [])
            if p["target"] not in NOT_COMPARED]


def peer_goals(results: dict, reference: dict) -> list[dict]:
    """Per runtime: our INT8 latency against the peer default's on the full-size models, and our agreement
    with FP32 against the peer's on the trained reference models (same images)."""
    rows = []
    for model, res in results.items():
        for ours, peer in _ours_and_peers(res):
            rows.append(_met({"goal": f"{model} {ours['target']} INT8 / peer default ({peer['name']}) latency",
                              "value": round(ours["latency"]["p50_ms"] / peer["latency"]["p50_ms"], 3),
                              "limit": GOALS["vs_peer"], "aim": GOALS["vs_peer_aim"], "unit": "x"}))
    for model, res in reference.items():
        for ours, peer in _ours_and_peers(res):
            a, b = ours.get("validation"), peer.get("validation")
            if not a or not b:
                continue
            rows.append(_met({"goal": f"reference {model} {ours['target']} agreement with FP32, ours vs peer default "
                                      f"({a['images']} images)", "value": round(a["top1_agreement"], 5),
                              "at_least": round(b["top1_agreement"], 5), "unit": ""}))
            rows.append(_met({"goal": f"reference {model} {ours['target']} INT8 / peer default latency",
                              "value": round(ours["latency"]["p50_ms"] / peer["latency"]["p50_ms"], 3),
                              "limit": GOALS["vs_peer"], "aim": GOALS["vs_peer_aim"], "unit": "x"}))
    return rows


def goals(results: dict, reference: dict | None = None) -> list[dict]:
    rows = []
    v4 = results.get("inception_v4")
    if v4:
        int8 = [r for r in v4["bench"]["results"] if r["precision"] == "int8" and not r.get("meta", {}).get("peer")]
        best = min(int8, key=lambda r: r["latency"]["p50_ms"])
        rows.append({"goal": "best INT8 Inception-v4, batch 1", "value": round(best["latency"]["p50_ms"], 2),
                     "limit": GOALS["best_int8_v4_ms"], "unit": "ms", "which": best["name"]})
    for model, res in results.items():
        int8 = {r["target"]: r for r in res["bench"]["results"]
                if r["precision"] == "int8" and not r.get("meta", {}).get("peer")}
        if "executorch" in int8 and "tflite" in int8:
            rows.append({"goal": f"{model} ExecuTorch INT8 / LiteRT INT8 latency", "unit": "x",
                         "value": round(int8["executorch"]["latency"]["p50_ms"] / int8["tflite"]["latency"]["p50_ms"], 3),
                         "limit": GOALS["executorch_vs_tflite"]})
        for r in res["bench"]["ratios"]:
            limit = GOALS["ratio"].get(r["target"])
            rows.append({"goal": f"{model} {r['target']} INT8/FP32 latency", "value": round(r["latency_ratio"], 3),
                         "limit": limit, "unit": "x"})
        for target, r in int8.items():
            if target in NOT_COMPARED or r.get("x_floor") is None:
                continue
            rows.append({"goal": f"{model} {target} INT8 latency / compute floor", "value": round(r["x_floor"], 3),
                         "limit": GOALS["x_floor"], "unit": "x"})
    rows += peer_goals(results, reference or {})
    irv2 = results.get("inception_resnet_v2")
    if irv2:
        p = irv2["pipeline"]
        rows.append({"goal": "Inception-ResNet-v2 pipeline wall time", "value": p["seconds"],
                     "limit": GOALS["pipeline_seconds"], "unit": "s"})
        rows.append({"goal": "Inception-ResNet-v2 pipeline peak memory", "value": p["peak_rss_mb"],
                     "limit": GOALS["pipeline_peak_mb"], "unit": "MB"})
    return [_met(r) for r in rows]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "out" / "bench")
    ap.add_argument("--val", type=Path, default=ROOT / "data" / "fashion-mnist" / "val")
    ap.add_argument("--models", nargs="*", default=["inception_v4", "inception_resnet_v2"],
                    help="full-size models, synthetic weights (speed and pipeline cost)")
    ap.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--reference-models", nargs="*", default=list(REFERENCE_MODELS),
                    help="trained reference models whose agreement decides the peer comparison (none: skip)")
    ap.add_argument("--reference-images", type=int, default=10000,
                    help="validation images for the reference models (class-balanced subset)")
    args = ap.parse_args()
    if not args.val.is_dir():
        sys.exit(f"{args.val}: validation folder not found (make data)")
    print("Synthetic deterministic weights: speed does not depend on weight values; accuracy here means nothing.")
    results = {m: one_model(m, args.out / m, args.val, args.threads, args.runs) for m in args.models}
    reference = {m: one_model(m, args.out / "reference" / m, args.val, args.threads, args.runs, weights="reference",
                              limit=args.reference_images) for m in args.reference_models}
    record = {"schema": "edgeincep.bench-suite/1", "weights": "synthetic (speed only)", "threads": args.threads,
              "results": results, "reference": reference, "goals": goals(results, reference)}
    args.out.mkdir(parents=True, exist_ok=True)
    tmp = args.out / ".suite.json.part"
    tmp.write_text(json.dumps(record, indent=2))
    tmp.replace(args.out / "suite.json")
    for model, res in [*results.items(), *((f"reference {m}", r) for m, r in reference.items())]:
        print(f"\n{model}: pipeline {res['pipeline']['seconds']:.0f} s, peak {res['pipeline']['peak_rss_mb']:.0f} MB;"
              f" peers built in {res['peers']['seconds']:.0f} s")
        for name, st in res["pipeline"]["stages"].items():
            kids = st.get("children_peak_rss_mb") or 0
            print(f"  {name:<22} {st['seconds']:>8.1f} s  {st['peak_rss_mb'] or 0:>8.0f} MB"
                  + (f"  (child processes up to {kids:.0f} MB)" if kids else ""))
        for r in res["bench"]["results"]:
            v = r.get("validation") or {}
            agree = f"  agree {v['top1_agreement']:.2%}" if v else ""
            serving = f"  {r['serving']['images_per_s']:6.1f} img/s streams" if "serving" in r else ""
            print(f"  {r['name']:<52} p50 {r['latency']['p50_ms']:8.2f} ms  {r['throughput']['images_per_s']:7.1f} img/s"
                  f"{serving}  {r.get('x_floor', 0):5.2f}x floor{agree}  {r['executed_precision']}")
    print("\ngoals:")
    for g in record["goals"]:
        mark = {True: "met", False: "MISSED", None: "-"}[g["met"]]
        bound = f">= {g['at_least']}" if g.get("at_least") is not None else f"<= {g.get('limit')}"
        print(f"  {g['goal']:<90} {g['value']:>9} {g['unit']:<2} ({bound}) {mark}")
    print(f"\nwrote {args.out / 'suite.json'}")


if __name__ == "__main__":
    main()
