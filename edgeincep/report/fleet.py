"""How a `fleet validate` record is shown: console tables, and a self-contained HTML page with plots."""
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
from edgeincep.report.html import CSS, _e, _pct


def _num(v, fmt: str = ".1f") -> str:
    return "—" if v is None else format(v, fmt)


@contextlib.contextmanager
def fleet_progress() -> Iterator[Callable[[str, str, dict], None]]:
    """An on_event callback for Fleet: an overall bar over the images and one live line per board."""
    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   console=err, transient=False)
    tasks: dict[str, int] = {}
    counts: dict[str, int] = {}
    lock = threading.Lock()

    def on_event(kind: str, board: str, d: dict) -> None:
        with lock:
            if kind == "start":
                tasks[""] = bar.add_task("[bold]all boards", total=d["images"])
                for name in d["boards"]:
                    counts[name] = 0
                    tasks[name] = bar.add_task(f"  {escape(name)}: waiting", total=None)
                bar.start()
            elif kind in ("board-excluded", "board-dropped"):
                err.print(f"[yellow]{escape(board)} excluded[/]: {escape(str(d.get('reason')))}")
            elif kind == "shard-start" and board in tasks:
                bar.update(tasks[board], description=f"  {escape(board)}: shard {d['shard']} ({d['images']} images), "
                                                     f"{counts[board]} done")
            elif kind == "shard-done" and board in tasks:
                counts[board] += d["images"]
                bar.update(tasks[board], description=f"  {escape(board)}: {counts[board]} images")
                bar.advance(tasks[""], d["images"])
            elif kind == "shard-failed" and board in tasks:
                bar.update(tasks[board], description=f"  [red]{escape(board)}: dropped during shard {d['shard']}: "
                                                     f"{escape(d['why'])[:80]}[/]")

    try:
        yield on_event
    finally:
        bar.stop()


HEADERS = ["board", "state", "images", "top-1", "top-5", "= host INT8", "= FP32", "identical", "beyond tol.",
           "img/s", "overhead/shard s", "runtime"]


def board_rows(record: dict) -> list[list[str]]:
    rows = []
    for b in record["boards"]:
        state = b["state"] if not b.get("reason") else f"{b['state']}: {b['reason']}"
        rows.append([b["name"], state, str(b.get("images", 0)), _pct(b.get("top1")), _pct(b.get("top5")),
                     _pct(b.get("agreement_host_int8")), _pct(b.get("agreement_fp32")), _pct(b.get("identical_logits")),
                     "—" if "beyond_tolerance" not in b else str(b["beyond_tolerance"]), _num(b.get("images_per_s")),
                     _num(b.get("overhead_per_shard_s"), ".2f"), b.get("backend") or "—"])
    m = record["merged"]
    rows.append(["all boards", f"{record['images']['classified']}/{record['images']['count']} classified",
                 str(m["images"]), _pct(m["top1"]), _pct(m["top5"]), _pct(m["agreement_host_int8"]),
                 _pct(m["agreement_fp32"]), _pct(m["identical_logits"]), str(m["beyond_tolerance"]),
                 _num(record.get("fleet_images_per_s")), "", record["host"]["backend"] + " on the host"])
    return rows


def print_fleet(record: dict) -> None:
    bundle = record["bundle"]
    table = Table(title=f"fleet validate {escape(bundle['name'])}: {record['images']['count']} images in "
                        f"{record['images']['shards']} shards, host top-1 {_pct(record['merged'].get('host_top1'))}")
    for h in HEADERS:
        table.add_column(h, justify="left" if h in ("board", "state", "runtime") else "right",
                         overflow="fold")
    for row in board_rows(record):
        table.add_row(*map(escape, row))
    out.print(table)
    flips = [(b["name"], d) for b in record["boards"] for d in b.get("disagreement_list", [])]
    if flips:
        t = Table(title="images where a board's top-1 is not the host's")
        for h in ("board", "image", "host", "board's"):
            t.add_column(h, overflow="fold")
        for name, d in flips[:20]:
            t.add_row(escape(name), escape(d["image"]), escape(d["host"]), escape(d["device"]))
        out.print(t)
    for s in record["lost_shards"]:
        why = "; ".join(s["attempts"]) or "no board was left to take it"
        out.print(f"[bold red]lost[/] shard {s['shard']} ({s['images']} images): {escape(why)}")


def render(record: dict) -> str:
    rows = "".join("<tr>" + "".join(f"<td{' class=n' if 1 < i < 11 else ''}>{_e(c)}</td>" for i, c in enumerate(r))
                   + "</tr>" for r in board_rows(record))
    worked = [b for b in record["boards"] if b.get("images")]
    figs = []
    if worked:
        figs.append(plots.named_bars({b["name"]: b["images_per_s"] or 0.0 for b in worked}, "images per second",
                                     "Throughput per board", "{:.1f}"))
        figs.append(plots.named_bars({b["name"]: 100 * (b["agreement_host_int8"] or 0.0) for b in worked},
                                     "top-1 agreement with the host's INT8 (%)", "Agreement per board", "{:.2f}%"))
    flips = "".join(f"<tr><td>{_e(b['name'])}</td><td>{_e(d['image'])}</td><td>{_e(d['host'])}</td>"
                    f"<td>{_e(d['device'])}</td></tr>" for b in record["boards"] for d in b.get("disagreement_list", []))
    failures = "".join(f"<li>{_e(b['name'])}: {_e(f)}</li>" for b in record["boards"] for f in b.get("failures", []))
    lost = "".join(f"<li>shard {s['shard']} ({s['images']} images): "
                   f"{_e('; '.join(s['attempts']) or 'no board was left to take it')}</li>" for s in record["lost_shards"])
    bundle = record["bundle"]
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>edgeincep fleet validate</title>
<style>{CSS}</style></head><body>
<h1>Fleet validation: {_e(bundle['name'])}</h1>
<p class=sub>{record['images']['count']} images ({'labelled' if record['images']['labelled'] else 'unlabelled'}) in
{record['images']['shards']} shards · bundle for {_e(bundle['device'])} · manifest sha256 {_e(bundle['manifest_sha256'][:12])}
· host INT8 on {_e(record['host']['backend'])}{' · FP32 from the ONNX' if record['host']['fp32'] else ''}
· {record['wall_s']:.0f} s</p>
<table><tr>{''.join(f'<th>{_e(h)}</th>' for h in HEADERS)}</tr>{rows}</table>
{''.join(f'<img src="{f}">' for f in figs)}
<h2>Where a board disagrees with the host</h2>
{f'<table><tr><th>board</th><th>image</th><th>host</th><th>board</th></tr>{flips}</table>' if flips else
 '<p>Nowhere: every board gave the host top-1 on every image it classified.</p>'}
<h2>Failures</h2>
{f'<ul>{failures}</ul>' if failures else '<p>None.</p>'}
{f'<h2>Lost shards</h2><ul>{lost}</ul>' if lost else ''}
<p class=sub>schema {_e(record['schema'])}</p>
</body></html>"""


def write_html(record: dict, path: Path) -> Path:
    return write_text_atomic(path, render(record))
