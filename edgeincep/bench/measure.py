"""`edgeincep bench`: every artifact measured in one run, side by side.

Latency (batch 1) and throughput (batch B) come from interleaved rounds in this process, so
ratios between artifacts survive a noisy machine; load time and peak memory come from a fresh
process per artifact (see probe.py); each result is also put against the model's compute
floor on this machine (see machine.py).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass

import numpy as np

from edgeincep.bench.latency import interleaved_latency
from edgeincep.bench.machine import machine_record, peak_record
from edgeincep.bench.probe import measure as probe
from edgeincep.console import progress
from edgeincep.core.artifact import Artifact
from edgeincep.core.errors import UserError
from edgeincep.registry import get_backend

SCHEMA = "edgeincep.bench/1"


@dataclass(frozen=True)
class BenchSettings:
    threads: int = 0          # 0: every core this process may use
    batch: int = 8            # throughput batch
    runs: int = 30            # interleaved rounds at batch 1
    batch_runs: int = 10      # interleaved rounds at `batch`
    warmup: int = 5
    memory: bool = True       # the per-artifact fresh-process probe
    serving_seconds: float = 3.0  # each runtime's own throughput mode (streams), per artifact and round; 0: off
    serving_rounds: int = 3

    def resolved_threads(self) -> int:
        return self.threads or len(os.sched_getaffinity(0))


def model_facts(art: Artifact) -> dict:
    """Model name, width, classes and input size from the artifact's own metadata, and its MACs."""
    from edgeincep.models.stats import model_stats

    meta = get_backend(art.target).metadata(art)
    pre = json.loads(meta.get("edgeincep.preprocess", "{}"))
    facts = {"model": meta.get("edgeincep.model"), "input_size": pre.get("input_size")}
    if facts["model"] and facts["input_size"]:
        width = float(meta.get("edgeincep.width", "1.0"))
        classes = int(meta["edgeincep.num_classes"]) if "edgeincep.num_classes" in meta else None
        st = model_stats(facts["model"], facts["input_size"], width=width, num_classes=classes)
        facts |= {"width": width, "macs": st["macs"], "params": st["params"]}
    return facts


def _labels(arts: list[Artifact]) -> list[str]:
    """Short unique names: the file name, with the parent folder where two files share one."""
    names = [a.path.name for a in arts]
    return [f"{a.path.parent.name}/{n}" if names.count(n) > 1 else n for a, n in zip(arts, names, strict=True)]


def benchmark(arts: list[Artifact], settings: BenchSettings = BenchSettings()) -> dict:
    threads = settings.resolved_threads()
    labels = _labels(arts)
    facts = [model_facts(a) for a in arts]
    peaks = peak_record(threads)
    rows = []
    for art, label, f in zip(arts, labels, facts, strict=True):
        rows.append({"name": label, **art.to_dict(), **f})
    sizes = {f.get("input_size") or 299 for f in facts}
    if len(sizes) > 1:
        raise UserError(f"artifacts take different input sizes ({sorted(sizes)}); bench one model at a time")
    size = sizes.pop()
    if settings.memory:
        for row, art in zip(rows, arts, strict=True):
            mem = probe(art, threads=threads, shape=(1, 3, size, size))
            row["load_s"], row["first_run_s"] = mem["load_s"], mem["first_run_s"]
            row["memory_mb"] = {"runtime": mem["runtime_mb"], "peak": mem["peak_mb"],
                                "model": mem["peak_mb"] - mem["runtime_mb"], "torch_imported": mem["torch_imported"]}
    predictors = [_load(art, threads, label) for art, label in zip(arts, labels, strict=True)]
    executed = {p.name: p.executed_precision for p in predictors}
    rng = np.random.default_rng(0)
    x1 = rng.standard_normal((1, 3, size, size), dtype=np.float32)
    xb = rng.standard_normal((settings.batch, 3, size, size), dtype=np.float32)
    with progress() as bar:
        task = bar.add_task(f"batch 1, {len(arts)} artifacts interleaved", total=settings.runs)
        lat = interleaved_latency(predictors, x1, runs=settings.runs, warmup=settings.warmup,
                                  on_round=lambda: bar.advance(task))
        task = bar.add_task(f"batch {settings.batch}, interleaved", total=settings.batch_runs)
        thr = interleaved_latency(predictors, xb, runs=settings.batch_runs, warmup=1,
                                  on_round=lambda: bar.advance(task))
    # The throughput modes compile their own copies; the latency sessions are let go first (their
    # memory, and ONNX Runtime's idle threads).
    predictors.clear()
    serving = serving_rates(arts, labels, threads, x1, settings)
    for row, label in zip(rows, labels, strict=True):
        row["executed_precision"] = executed[label]
        row["latency"] = lat[label]
        row["throughput"] = thr[label]
        if label in serving:
            row["serving"] = serving[label]
        if row.get("macs"):
            rate = peaks["int8_gmacs_per_s" if row["precision"] == "int8" else "fp32_gmacs_per_s"]
            row["floor_ms"] = row["macs"] / (rate * 1e9) * 1e3
            row["x_floor"] = row["latency"]["p50_ms"] / row["floor_ms"]
    return {"schema": SCHEMA, "machine": machine_record(threads), "peak": peaks,
            "settings": {**settings.__dict__, "threads": threads}, "results": rows, "ratios": ratios(rows),
            "peer_ratios": peer_ratios(rows)}


def serving_rates(arts: list[Artifact], labels: list[str], threads: int, image: np.ndarray,
                  settings: BenchSettings) -> dict[str, dict]:
    """Per artifact whose runtime has a throughput mode: its median images/s over rounds that alternate
    between the artifacts (a slow moment of the machine then hits each alike)."""
    if settings.serving_seconds <= 0:
        return {}
    runs: dict[str, list[dict]] = {}
    for _ in range(settings.serving_rounds):
        for art, label in zip(arts, labels, strict=True):
            rec = get_backend(art.target).serving_throughput(art, threads, image, settings.serving_seconds)
            if rec is not None:
                runs.setdefault(label, []).append(rec)
    out = {}
    for label, recs in runs.items():
        rates = [r["images_per_s"] for r in recs]
        out[label] = {**recs[0], "images_per_s": float(np.median(rates)), "rounds": rates,
                      "images": sum(r["images"] for r in recs)}
    return out


def _load(art: Artifact, threads: int, label: str):
    try:
        pred = get_backend(art.target).load(art, threads)
    except Exception as e:  # noqa: BLE001 - each runtime raises its own types for a file it cannot read
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise UserError(f"{art.target} cannot load it: {first[:300]}", art.path) from None
    pred.name = label
    return pred


def peer_ratios(rows: list[dict]) -> list[dict]:
    """Ours / the runtime's own defaults (a row whose artifact record names a peer), per runtime and model:
    below 1.0, our INT8 is faster than what the runtime's tools give by themselves."""
    out = []
    for peer in rows:
        if not peer.get("meta", {}).get("peer"):
            continue
        ours = next((r for r in rows if r["target"] == peer["target"] and r["precision"] == "int8"
                     and not r.get("meta", {}).get("peer") and r.get("model") == peer.get("model")), None)
        if ours:
            rec = {"target": peer["target"], "ours": ours["name"], "peer": peer["name"],
                   "peer_name": get_backend(peer["target"]).peer, "peer_call": peer["meta"]["peer"],
                   "latency_ratio": ours["latency"]["p50_ms"] / peer["latency"]["p50_ms"],
                   "throughput_ratio": ours["throughput"]["images_per_s"] / peer["throughput"]["images_per_s"]}
            if "serving" in ours and "serving" in peer:
                rec["serving_ratio"] = ours["serving"]["images_per_s"] / peer["serving"]["images_per_s"]
            out.append(rec)
    return out


def ratios(rows: list[dict]) -> list[dict]:
    """INT8 / FP32 batch-1 latency within each runtime (what quantization bought on that runtime)."""
    out = []
    for r in rows:
        if r["precision"] != "int8" or r.get("meta", {}).get("peer"):
            continue
        base = next((b for b in rows if b["target"] == r["target"] and b["precision"] == "fp32"
                     and b.get("model") == r.get("model")), None)
        if base:
            out.append({"target": r["target"], "int8": r["name"], "fp32": base["name"],
                        "latency_ratio": r["latency"]["p50_ms"] / base["latency"]["p50_ms"],
                        "throughput_ratio": r["throughput"]["images_per_s"] / base["throughput"]["images_per_s"]})
    return out
