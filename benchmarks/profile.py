"""Where an INT8 artifact's time goes, from each runtime's own profiler: per operator type and the top nodes.

ONNX Runtime: its session profiler (`enable_profiling`; kernel events, after graph optimisation, so
what really ran: QLinearConv, the Q/DQ left over, pools, concats). OpenVINO: the CPU plugin's
per-layer performance counters (`PERF_COUNT`, what `benchmark_app -pc` prints), with the primitive
each layer ran on (e.g. jit_avx512_I8, ref). Batch 1, after warm-up, medians over `--runs`.

    python benchmarks/profile.py ARTIFACT... [--runs 20] [--threads 2] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from edgeincep.pipeline.artifacts import artifact_for_file  # noqa: E402
from edgeincep.registry import get_backend  # noqa: E402


def _summary(per_node: dict[str, list[float]], kind: dict[str, str], extra: dict[str, str], wall: list[float]) -> dict:
    node_ms = {n: statistics.median(v) for n, v in per_node.items()}
    by_type: dict[str, float] = defaultdict(float)
    count: dict[str, int] = defaultdict(int)
    for n, ms in node_ms.items():
        by_type[kind[n]] += ms
        count[kind[n]] += 1
    total = sum(node_ms.values())
    return {"wall_ms": statistics.median(wall), "nodes_ms": total,
            "by_type": [{"type": t, "ms": round(ms, 3), "share": round(ms / total, 4), "nodes": count[t]}
                        for t, ms in sorted(by_type.items(), key=lambda kv: -kv[1])],
            "top_nodes": [{"node": n, "type": kind[n], "ms": round(ms, 3), **({"exec": extra[n]} if n in extra else {})}
                          for n, ms in sorted(node_ms.items(), key=lambda kv: -kv[1])[:15]]}


def profile_ort(path: Path, x: np.ndarray, runs: int, threads: int, optimize: bool = True) -> dict:
    import time

    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimize
                                   else ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
    so.intra_op_num_threads = threads
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.enable_profiling = True
    so.profile_file_prefix = str(Path(tempfile.mkdtemp()) / "ort")
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    feed = {sess.get_inputs()[0].name: x}
    for _ in range(3):
        sess.run(None, feed)
    wall = []
    for _ in range(runs):
        t0 = time.perf_counter()
        sess.run(None, feed)
        wall.append((time.perf_counter() - t0) * 1e3)
    events = json.loads(Path(sess.end_profiling()).read_text())
    per_node: dict[str, list[float]] = defaultdict(list)
    kind: dict[str, str] = {}
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            node = e["name"].removesuffix("_kernel_time")
            per_node[node].append(e["dur"] / 1e3)
            kind[node] = e["args"].get("op_name", "?")
    # The first 3 runs were warm-up: keep each node's last `runs` samples.
    per_node = {n: v[-runs:] for n, v in per_node.items()}
    return _summary(per_node, kind, {}, wall)


def profile_openvino(path: Path, x: np.ndarray, runs: int, threads: int) -> dict:
    import time

    import openvino as ov
    import openvino.properties as props
    import openvino.properties.hint as hints

    core = ov.Core()
    compiled = core.compile_model(str(path), "CPU", {props.enable_profiling: True, props.inference_num_threads: threads,
                                                     hints.inference_precision: ov.Type.f32,
                                                     hints.performance_mode: hints.PerformanceMode.LATENCY})
    req = compiled.create_infer_request()
    for _ in range(3):
        req.infer({0: x})
    per_node: dict[str, list[float]] = defaultdict(list)
    kind, exec_type, wall = {}, {}, []
    for _ in range(runs):
        t0 = time.perf_counter()
        req.infer({0: x})
        wall.append((time.perf_counter() - t0) * 1e3)
        for info in req.profiling_info:
            if info.status != info.Status.EXECUTED:
                continue
            per_node[info.node_name].append(info.real_time.total_seconds() * 1e3)
            kind[info.node_name] = info.node_type
            exec_type[info.node_name] = info.exec_type
    out = _summary(per_node, kind, exec_type, wall)
    by_exec: dict[str, float] = defaultdict(float)
    for n, v in per_node.items():
        by_exec[exec_type[n]] += statistics.median(v)
    out["by_primitive"] = [{"exec": k, "ms": round(v, 3)} for k, v in sorted(by_exec.items(), key=lambda kv: -kv[1])]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("artifacts", nargs="+", type=Path)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    results = {}
    for path in args.artifacts:
        art = artifact_for_file(path)
        meta = get_backend(art.target).metadata(art)
        size = json.loads(meta["edgeincep.preprocess"])["input_size"]
        x = np.random.default_rng(0).standard_normal((1, 3, size, size), dtype=np.float32)
        if art.target == "openvino":
            rec = profile_openvino(path, x, args.runs, args.threads)
        elif path.suffix == ".onnx":
            rec = profile_ort(path, x, args.runs, args.threads, optimize=art.target != "tensorrt")
        else:
            print(f"{path.name}: no per-operator profiler wired for {art.target}; skipped")
            continue
        results[path.name] = rec
        print(f"\n{path.name}: {rec['wall_ms']:.2f} ms wall, {rec['nodes_ms']:.2f} ms in operators")
        for t in rec["by_type"][:12]:
            print(f"  {t['type']:<28} {t['ms']:8.2f} ms  {t['share']:6.1%}  ({t['nodes']} nodes)")
        for e in rec.get("by_primitive", [])[:8]:
            print(f"  primitive {e['exec']:<30} {e['ms']:8.2f} ms")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
