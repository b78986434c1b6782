"""`edgeincep sweep`: models x targets x recipe variants, each an ordinary build + validation, on Ray.

The driver exports each model once into the store (the trials' shared input), makes one TrialSpec per
(model, target, variant) from the target's usual recipe with the variant applied, runs them (execute.py), and
keeps per model and target the Pareto front and the winner, whose full recipe it writes as
`best.<model>.<target>.yaml`: `edgeincep run --recipe` takes it as it is.
"""
from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import yaml

from edgeincep.core.errors import UserError
from edgeincep.fsutil import ensure_writable_dir, write_text_atomic
from edgeincep.pipeline.export_stage import run_export
from edgeincep.recipes import find_recipe
from edgeincep.registry import get_backend
from edgeincep.sweep import pareto
from edgeincep.sweep.execute import run_trials
from edgeincep.sweep.space import Space, apply, variants
from edgeincep.sweep.trial import TrialSpec

SCHEMA = "edgeincep.sweep/1"


def plan(models: list[str], targets: list[str], space: Space, *, weights: str, val_dir: Path, limit: int | None,
         store: Path, threads: int = 1, on_export: Callable[[str], None] | None = None) -> list[TrialSpec]:
    for t in targets:
        get_backend(t)  # an unknown target is a usage error before anything is exported
    specs = []
    for model in models:
        if on_export is not None:
            on_export(model)
        fp32 = run_export(model, weights=weights, out_dir=store / "models" / model).path
        for target in targets:
            base = {k: v for k, v in find_recipe(model, target).model_dump(mode="json").items() if k != "source"}
            for variant in variants(space):
                specs.append(TrialSpec(model=model, target=target, variant=variant, recipe=apply(base, variant),
                                       fp32=str(fp32), val_dir=str(val_dir), limit=limit, store=str(store),
                                       threads=threads))
    return specs


def summarize(results: list[dict], cluster: dict, space: Space, out_dir: Path, wall_s: float) -> dict:
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in results:
        groups.setdefault((r["model"], r["target"]), []).append(r)
    fronts, winners = {}, {}
    for (model, target), rows in groups.items():
        key = f"{model}.{target}"
        fronts[key] = [r["id"] for r in pareto.front(rows)]
        best = pareto.winner(rows)
        if best is not None:
            path = out_dir / f"best.{key}.yaml"
            text = (f"# edgeincep sweep winner for {model} on {target}: {best['label']}\n"
                    f"# top-1 agreement {best['top1_agreement']:.4f}, {best['p50_ms']:.2f} ms batch-1 "
                    f"({best['latency_ratio']:.2f}x FP32), {best['size_bytes'] / 1e6:.2f} MB; trial {best['id']}\n"
                    + yaml.safe_dump(best["recipe"], sort_keys=False))
            write_text_atomic(path, text)
            winners[key] = {"id": best["id"], "label": best["label"], "recipe_file": str(path)}
    ok = [r for r in results if r["status"] == "ok" and not r.get("resumed")]
    return {"schema": SCHEMA, "space": space.model_dump(), "cluster": cluster, "wall_s": round(wall_s, 1),
            "trials": results, "fronts": fronts, "winners": winners,
            "counts": {"trials": len(results), "ok": sum(r["status"] == "ok" for r in results),
                       "failed": sum(r["status"] == "failed" for r in results),
                       "resumed": sum(bool(r.get("resumed")) for r in results)},
            "trial_seconds": round(sum(r.get("seconds", 0.0) for r in ok), 1)}


def sweep(models: list[str], targets: list[str], space: Space, *, weights: str, val_dir: Path, out_dir: Path,
          limit: int | None = None, store: Path | None = None, use_ray: bool = True, address: str | None = None,
          threads: int = 1, on_event=None, on_export=None) -> dict:
    if not models or not targets:
        raise UserError("name at least one --model and one --target")
    out_dir = ensure_writable_dir(out_dir)
    store = ensure_writable_dir(store or out_dir / "store")
    t0 = time.perf_counter()
    specs = plan(models, targets, space, weights=weights, val_dir=val_dir, limit=limit, store=store.resolve(),
                 threads=threads, on_export=on_export)
    results, cluster = run_trials(specs, use_ray=use_ray, address=address, on_event=on_event)
    record = summarize(results, cluster, space, out_dir, time.perf_counter() - t0)
    write_text_atomic(out_dir / "sweep.json", json.dumps(record, indent=1, default=str))
    return record
