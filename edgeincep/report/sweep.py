"""How a sweep is shown: live progress, a console table, markdown, and a self-contained HTML page with the
Pareto fronts."""
from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from edgeincep.console import err, out
from edgeincep.fsutil import write_text_atomic
from edgeincep.report import plots
from edgeincep.report.html import CSS, _e

HEADERS = ["#", "model", "target", "trial", "variant", "status", "top-1", "agreement", "SQNR dB", "p50 ms", "x FP32",
           "MB", "s", "front"]


@contextlib.contextmanager
def sweep_progress(total: int) -> Iterator[Callable]:
    """An on_event callback for the sweep: an overall bar and one live line per running trial."""
    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   console=err, transient=False)
    overall = bar.add_task("[bold]trials", total=total)
    lines: dict[str, int] = {}
    lock = threading.Lock()

    def on_event(kind: str, spec, details: dict) -> None:
        with lock:
            name = f"{spec.target} {escape(', '.join(f'{k}={v}' for k, v in spec.variant.items()))}"
            if kind == "running":
                where = f" on {details['host']} pid {details['pid']}" if details.get("pid") else ""
                lines[spec.id] = bar.add_task(f"  {name}: running{escape(where)}", total=None)
            elif kind in ("done", "resumed"):
                if spec.id in lines:
                    bar.remove_task(lines.pop(spec.id))
                status = details.get("status")
                text = (f"agreement {details['top1_agreement']:.4f}, {details['p50_ms']:.2f} ms" if status == "ok"
                        else f"[red]failed[/]: {escape(str(details.get('error')))[:120]}")
                err.print(f"  {name}: {'(from the store) ' if kind == 'resumed' else ''}{text}")
                bar.advance(overall)

    bar.start()
    try:
        yield on_event
    finally:
        bar.stop()


def _row(n: int, r: dict, on_front: bool) -> list[str]:
    head = [str(n), r["model"], r["target"], r["id"].rsplit(".", 1)[-1], r.get("label", "")]
    if r["status"] != "ok":
        return [*head, f"failed: {r.get('error')}", "", "", "", "", "", "", "", ""]
    top1 = "—" if r.get("top1") is None else f"{100 * r['top1']:.2f}%"
    return [*head, "ok" + (" (store)" if r.get("resumed") else ""), top1,
            f"{100 * r['top1_agreement']:.2f}%", f"{r['sqnr_db']:.1f}", f"{r['p50_ms']:.2f}",
            f"{r['latency_ratio']:.2f}", f"{r['size_bytes'] / 1e6:.2f}", f"{r.get('seconds', 0):.0f}",
            "★" if on_front else ""]


def rows(record: dict) -> list[list[str]]:
    on_front = {i for ids in record["fronts"].values() for i in ids}
    return [_row(n, r, r["id"] in on_front) for n, r in enumerate(record["trials"], 1)]


def print_sweep(record: dict) -> None:
    c = record["counts"]
    table = Table(title=f"sweep: {c['trials']} trials, {c['ok']} ok, {c['failed']} failed, {c['resumed']} from the "
                        f"store; {record['wall_s']:.0f} s on {record['cluster'].get('nodes') or 'no'} Ray node(s)")
    for h in HEADERS:
        table.add_column(h, overflow="fold",
                         justify="left" if h in ("model", "target", "trial", "variant", "status") else "right")
    for row in rows(record):
        table.add_row(*map(escape, row))
    out.print(table)
    for key, w in record["winners"].items():
        out.print(f"[green]best[/] {escape(key)}: {escape(w['label'])} -> {escape(w['recipe_file'])}")


def markdown(record: dict) -> str:
    lines = ["# edgeincep sweep", "", "| " + " | ".join(HEADERS) + " |", "|" + " --- |" * len(HEADERS)]
    lines += ["| " + " | ".join(c.replace("|", "/") for c in row) + " |" for row in rows(record)]
    lines += ["", *(f"- best {k}: {w['label']} (`{w['recipe_file']}`)" for k, w in record["winners"].items())]
    return "\n".join(lines) + "\n"


def render(record: dict) -> str:
    by_id = {r["id"]: r for r in record["trials"]}
    figs = []
    number = {r["id"]: n for n, r in enumerate(record["trials"], 1)}  # points are labelled with the table's #
    for key, ids in record["fronts"].items():
        group = [r for r in record["trials"] if f"{r['model']}.{r['target']}" == key and r["status"] == "ok"]
        points = [(f"#{number[r['id']]}", r["latency_ratio"], 100 * r["top1_agreement"], r["id"] in ids)
                  for r in group]
        if points:
            figs.append(plots.pareto_scatter(f"{key}: Pareto front", points))
    table = "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in row) + "</tr>" for row in rows(record))
    winners = "".join(f"<li><b>{_e(k)}</b>: {_e(w['label'])} — <code>{_e(w['recipe_file'])}</code> "
                      f"(agreement {100 * by_id[w['id']]['top1_agreement']:.2f}%)</li>"
                      for k, w in record["winners"].items())
    c = record["counts"]
    cl = record["cluster"]
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>edgeincep sweep</title>
<style>{CSS}</style></head><body>
<h1>Recipe sweep</h1>
<p class=sub>{c['trials']} trials ({c['ok']} ok, {c['failed']} failed, {c['resumed']} from the store) ·
{record['wall_s']:.0f} s · Ray: {_e(cl.get('address') or 'not used')}, {cl.get('nodes', 0)} node(s)</p>
<h2>Winners (recipe files for <code>edgeincep run --recipe</code>)</h2><ul>{winners or '<li>none</li>'}</ul>
{''.join(f'<img src="{f}">' for f in figs)}
<table><tr>{''.join(f'<th>{_e(h)}</th>' for h in HEADERS)}</tr>{table}</table>
<p class=sub>schema {_e(record['schema'])} · ★ on the Pareto front (agreement, latency ratio, size)</p>
</body></html>"""


def write_reports(record: dict, out_dir: Path) -> list[Path]:
    return [write_text_atomic(out_dir / "sweep.md", markdown(record)),
            write_text_atomic(out_dir / "sweep.html", render(record))]
