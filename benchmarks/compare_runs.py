"""Compare two `edgeincep run` output folders file by file: what a change that must keep behaviour did to them.

    python benchmarks/compare_runs.py BEFORE_DIR AFTER_DIR [--same OLD=NEW ...] [--ignore-key KEY ...] [--json OUT]

Model files, bundle payloads and every other binary are compared by sha256. Text files are compared after the
output folder's own path is replaced by <OUT> (the two runs write to different folders), and each --same
OLD=NEW pair (e.g. two source checkouts) by one name. JSON files are compared as data, without what is
measured afresh on every run (wall times, latencies, peak memory, archive sizes, the stage meter) and without
the keys named by --ignore-key (paths with `/`, `*` for any key), so a number that changed is reported with
both values. README files are compared without their host-latency table. Left out: .tar.gz archives (their
members are the bundle folders, compared file by file), the run lock, and the HTML and Markdown reports,
which are rendered from report.json (render the old report.json with the new code to compare the renderers).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
from pathlib import Path

MEASURED = {"stage_seconds", "stages", "latency", "reference_latency", "p50_ms", "p90_ms", "mean_ms", "std_ms",
            "archive_bytes", "latency_vs_fp32", "seconds", "convert_seconds", "calibration_seconds",
            "quantize_seconds", "quantizer_peak_rss_mb"}
LEFT_OUT = (".tar.gz", ".edgeincep.lock", "report.html", "report.md")


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _strip(value, ignore: list[list[str]], here: tuple = ()):
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            path = (*here, str(k))
            if k in MEASURED or any(_match(p, path) for p in ignore):
                continue
            out[k] = _strip(v, ignore, path)
        return out
    if isinstance(value, list):
        return [_strip(v, ignore, here) for v in value]
    return value


def _match(pattern: list[str], path: tuple) -> bool:
    return len(pattern) == len(path) and all(p in ("*", q) for p, q in zip(pattern, path, strict=True))


def _diff(a, b, here: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b), key=str):
            where = f"{here}.{k}" if here else str(k)
            if k not in a or k not in b:
                out.append(f"{where}: only in {'after' if k in b else 'before'}")
            else:
                out += _diff(a[k], b[k], where)
        return out
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b, strict=True)) for d in _diff(x, y, f"{here}[{i}]")]
    return [] if a == b else [f"{here}: {json.dumps(a)[:120]} -> {json.dumps(b)[:120]}"]


def _readme(text: str) -> str:
    return re.sub(r"## Host latency.*?(?=\n## |\Z)", "", text, flags=re.S)


def compare(before: Path, after: Path, ignore: list[list[str]], same: list[tuple[str, str]] = ()) -> dict:
    files_a = {p.relative_to(before).as_posix() for p in before.rglob("*") if p.is_file()}
    files_b = {p.relative_to(after).as_posix() for p in after.rglob("*") if p.is_file()}
    result = {"identical": [], "equal_after_normalising": [], "different": {}, "only_before": sorted(files_a - files_b),
              "only_after": sorted(files_b - files_a), "left_out": []}
    for rel in sorted(files_a & files_b):
        fa, fb = before / rel, after / rel
        if rel.endswith(LEFT_OUT):
            result["left_out"].append(rel)
            continue
        if sha(fa) == sha(fb):
            result["identical"].append(rel)
            continue
        try:
            ta = fa.read_text(encoding="utf-8").replace(str(before), "<OUT>")
            tb = fb.read_text(encoding="utf-8").replace(str(after), "<OUT>")
            for i, (old, new) in enumerate(same):
                ta, tb = ta.replace(old, f"<SAME{i}>"), tb.replace(new, f"<SAME{i}>")
        except UnicodeDecodeError:
            result["different"][rel] = ["binary content differs"]
            continue
        if rel.endswith(".json"):
            diffs = _diff(_strip(json.loads(ta), ignore), _strip(json.loads(tb), ignore))
        elif Path(rel).name == "README.md":
            diffs = [] if _readme(ta) == _readme(tb) else ["text differs (host-latency table aside)"]
        else:
            diffs = [] if ta == tb else ["text differs"]
        if diffs:
            result["different"][rel] = diffs
        else:
            result["equal_after_normalising"].append(rel)
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("before", type=Path)
    ap.add_argument("after", type=Path)
    ap.add_argument("--same", action="append", default=[], help="OLD=NEW: a path that differs by design")
    ap.add_argument("--ignore-key", action="append", default=[], help="JSON key path with /; * matches any key")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    res = compare(args.before.resolve(), args.after.resolve(), [k.split("/") for k in args.ignore_key],
                  [tuple(pair.split("=", 1)) for pair in args.same])
    if args.json:
        args.json.write_text(json.dumps(res, indent=1))
    print(f"{len(res['identical'])} identical by sha256, {len(res['equal_after_normalising'])} equal after "
          f"normalising paths and measured timings, {len(res['different'])} different, "
          f"{len(res['only_before'])} only before, {len(res['only_after'])} only after, "
          f"{len(res['left_out'])} left out")
    for rel, diffs in res["different"].items():
        print(f"DIFFERENT {rel}")
        for d in diffs[:15]:
            print(f"    {d}")
    for rel in res["only_before"]:
        print(f"ONLY BEFORE {rel}")
    for rel in res["only_after"]:
        print(f"ONLY AFTER {rel}")
    return 1 if res["different"] or res["only_before"] or res["only_after"] else 0


if __name__ == "__main__":
    sys.exit(main())
