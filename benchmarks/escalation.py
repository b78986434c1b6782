"""The hard case, measured (`make escalation`): the strict-budget recipe (benchmarks/strict.yaml) on the three
reference models and every target that runs here, each run climbing the escalation ladder.

Per model and target it records which rung met the budget on the probe (or that none did), what shipped,
its batch-1 latency against plain INT8 (both measured side by side against FP32 on the probe), the ladder's
wall time, and the verdict on the validation set. The runs themselves are `edgeincep run` child processes
(exit 10, a budget missed, is an outcome here, not a failure). Writes OUT/escalation.json and
OUT/escalation.md; `--summarize` re-reads runs already in OUT.

The reference models were trained on the whole Fashion-MNIST training split, so a probe drawn from it (`make
data`'s probe folder) is easier than unseen images and a rung that passes there can miss on the validation set.
By default the probe here is held out from the test split instead (200 images per class, seeded) and the
validation set is the remaining 8,000; `--train-split-probe` uses `make data`'s folders as a run does by default.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODELS = ("inception_resnet_v2", "inception_resnet_v1", "inception_v4")
DATA = ROOT / "data" / "fashion-mnist"


def held_out_split(out: Path, per_class: int = 200, seed: int = 7) -> tuple[Path, Path]:
    """(probe, val) folders of links into the test split: `per_class` images of each class for the probe, the
    rest for validation."""
    import random

    src, rng = DATA / "val", random.Random(seed)
    probe, val = out / "split" / "probe", out / "split" / "val"
    if probe.is_dir() and val.is_dir():
        return probe, val
    for d in sorted(p for p in src.iterdir() if p.is_dir()):
        files = sorted(d.glob("*.png"))
        rng.shuffle(files)
        for root, part in ((probe, files[:per_class]), (val, files[per_class:])):
            (root / d.name).mkdir(parents=True, exist_ok=True)
            for f in part:
                (root / d.name / f.name).symlink_to(f.resolve())
    for root in (probe, val):
        if (src / "labels.txt").is_file():
            (root / "labels.txt").write_text((src / "labels.txt").read_text())
    return probe, val


def run(model: str, out: Path, recipe: Path, target: str, probe: Path, val: Path) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "edgeincep", "run", "--model", model, "--target", target,
           "--val", str(val), "--probe", str(probe), "--train", str(DATA / "train"),
           "--recipe", str(recipe), "--out", str(out / model)]
    t0 = time.perf_counter()
    with open(out / f"{model}.log", "w") as log:
        rc = subprocess.call(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    return {"rc": rc, "seconds": round(time.perf_counter() - t0, 1)}


def rows(report: dict) -> list[dict]:
    """One row per INT8 artifact that climbed the ladder."""
    out = []
    for a in report["validation"]["artifacts"]:
        ladder = a.get("escalation")
        if not ladder or "probe" not in ladder:  # not scored: a [ptq] ladder ships as built
            continue
        cands = [c for r in ladder["rungs"] for c in r.get("candidates", [])]
        shipped = next((c for c in cands if c.get("shipped")), None)
        ptq = next((c for c in cands if c.get("rung") == "ptq"), None)
        d = a["drift"]
        out.append({
            "target": a["target"],
            "ptq_probe_agreement": ptq and ptq["top1_agreement"], "ptq_probe_drop": ptq and ptq["top1_drop_points"],
            "met_by": ladder["met_by"], "shipped": ladder["shipped"],
            "shipped_probe_agreement": shipped and shipped["top1_agreement"],
            "latency_vs_ptq": shipped and shipped.get("latency_vs_ptq"),
            "ladder_seconds": ladder["seconds"],
            "rungs": {r["rung"]: r["status"] for r in ladder["rungs"]},
            "validation_agreement": d.get("top1_agreement"), "validation_drop": d.get("top1_drop_points"),
            "passed": not a["gate"]["violations"] if isinstance(a.get("gate"), dict) else None,
        })
    return out


def summarize(out: Path, models_wanted: list[str]) -> dict:
    models = {}
    for model in models_wanted:
        path = out / model / "report.json"
        if path.is_file():
            report = json.loads(path.read_text())
            models[model] = {"images": report["validation"]["images"], "artifacts": rows(report)}
    return {"schema": "edgeincep.escalation-bench/1", "recipe": "benchmarks/strict.yaml", "models": models}


def markdown(summary: dict) -> str:
    def pct(x):
        return "—" if x is None else f"{100 * x:.2f}%"

    def pts(x):
        return "—" if x is None else f"{x:+.2f}"

    lines = [("| model | target | plain INT8 (probe: agree / drop pt) | met by | shipped | shipped (probe) "
             "| latency vs plain INT8 | ladder s | validation agree / drop | gate |"), "|" + "---|" * 10]
    for model, m in summary["models"].items():
        for r in m["artifacts"]:
            lat = "—" if r["latency_vs_ptq"] is None else f"{r['latency_vs_ptq']:.2f}x"
            lines.append(f"| {model} | {r['target']} | {pct(r['ptq_probe_agreement'])} / {pts(r['ptq_probe_drop'])} "
                         f"| {r['met_by'] or 'none'} | {r['shipped']} | {pct(r['shipped_probe_agreement'])} | {lat} "
                         f"| {r['ladder_seconds']:.0f} | {pct(r['validation_agreement'])} / "
                         f"{pts(r['validation_drop'])} | { {True: 'pass', False: 'FAIL'}.get(r['passed'], '—')} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "out" / "escalation")
    ap.add_argument("--models", nargs="*", default=list(MODELS), choices=MODELS)
    ap.add_argument("--target", default="all")
    ap.add_argument("--recipe", type=Path, default=ROOT / "benchmarks" / "strict.yaml")
    ap.add_argument("--summarize", action="store_true", help="only re-read the runs already in --out")
    ap.add_argument("--train-split-probe", action="store_true",
                    help="probe on make data's training-split folder and validate on the whole test split")
    args = ap.parse_args()
    runs = {}
    if not args.summarize:
        probe, val = ((DATA / "probe", DATA / "val") if args.train_split_probe else held_out_split(args.out))
        for model in args.models:
            print(f"{model}: edgeincep run --target {args.target} --recipe {args.recipe}", flush=True)
            runs[model] = run(model, args.out, args.recipe, args.target, probe, val)
            if runs[model]["rc"] not in (0, 10):
                sys.exit(f"{model}: edgeincep run failed (exit {runs[model]['rc']}); see {args.out / model}.log")
    args.out.mkdir(parents=True, exist_ok=True)
    summary = summarize(args.out, args.models) | {"runs": runs}
    (args.out / "escalation.json").write_text(json.dumps(summary, indent=2))
    table = markdown(summary)
    (args.out / "escalation.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
