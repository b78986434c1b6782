"""How a benchmark record is shown: a console table, and a self-contained HTML page with plots."""
from __future__ import annotations

from pathlib import Path

from edgeincep.console import out
from edgeincep.fsutil import write_text_atomic
from edgeincep.report import plots
from edgeincep.report.html import CSS, _e


def _mb(v) -> str:
    return "—" if v is None else f"{v:.1f}"


def table_rows(record: dict) -> list[list[str]]:
    rows = []
    for r in record["results"]:
        lat, thr, mem = r["latency"], r["throughput"], r.get("memory_mb") or {}
        serving = r.get("serving")
        name = r["name"] + (" (peer default)" if r.get("meta", {}).get("peer") else "")
        rows.append([name, r["executed_precision"], f"{lat['p50_ms']:.2f}", f"{lat['p90_ms']:.2f}",
                     f"{lat['p99_ms']:.2f}", f"{thr['images_per_s']:.1f}",
                     "—" if serving is None else f"{serving['images_per_s']:.1f} ({serving['streams']} streams)",
                     "—" if r.get("floor_ms") is None else f"{r['x_floor']:.1f}x",
                     "—" if r.get("load_s") is None else f"{r['load_s']:.2f}", _mb(mem.get("peak")),
                     f"{(r['size_bytes'] or 0) / 1e6:.2f}"])
    return rows


HEADERS = ["artifact", "executed", "p50 ms", "p90 ms", "p99 ms", "img/s (batch)", "img/s (throughput mode)", "x floor", "load s",
           "peak RSS MB", "size MB"]


def print_table(record: dict) -> None:
    from rich.table import Table

    m = record["machine"]
    table = Table(title=f"edgeincep bench: {m['cpu']['model']}, {m['threads']} threads, batch-1 latency and "
                        f"batch-{record['settings']['batch']} throughput")
    for h in HEADERS:
        table.add_column(h, justify="left" if h in ("artifact", "executed") else "right")
    for row in table_rows(record):
        table.add_row(*row)
    out.print(table)
    for r in record["ratios"]:
        out.print(f"{r['target']}: INT8/FP32 latency {r['latency_ratio']:.2f}x, throughput "
                  f"{r['throughput_ratio']:.2f}x")
    for line in peer_lines(record):
        out.print(line)


def peer_lines(record: dict) -> list[str]:
    lines = []
    for r in record.get("peer_ratios", []):
        serving = f", throughput mode {r['serving_ratio']:.2f}x" if "serving_ratio" in r else ""
        lines.append(f"{r['target']}: ours / {r['peer_name']}: latency "
                     f"{r['latency_ratio']:.2f}x, batch throughput {r['throughput_ratio']:.2f}x{serving}")
    return lines


def render(record: dict) -> str:
    m = record["machine"]
    rows = "".join("<tr>" + "".join(f"<td{' class=n' if i > 1 else ''}>{_e(c)}</td>" for i, c in enumerate(row))
                   + "</tr>" for row in table_rows(record))
    ratios = "".join(f"<li>{_e(r['target'])}: INT8/FP32 latency <b>{r['latency_ratio']:.2f}x</b>, throughput "
                     f"{r['throughput_ratio']:.2f}x</li>" for r in record["ratios"])
    ratios += "".join(f"<li>{_e(line)}</li>" for line in peer_lines(record))
    peak = record["peak"]
    libs = ", ".join(f"{k} {v}" for k, v in m["libraries"].items() if v != "absent")
    figs = [plots.latency_bars(record["results"]), plots.throughput_bars(record["results"])]
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>edgeincep bench</title>
<style>{CSS}</style></head><body>
<h1>Benchmark</h1>
<p class=sub>{_e(m['cpu']['model'])} ({_e(m['cpu']['machine'])}, ISA {_e(' '.join(m['cpu']['isa']))}) ·
{m['threads']} threads · {record['settings']['runs']} interleaved rounds at batch 1,
{record['settings']['batch_runs']} at batch {record['settings']['batch']}</p>
<table><tr>{''.join(f'<th>{_e(h)}</th>' for h in HEADERS)}</tr>{rows}</table>
<ul>{ratios}</ul>
{''.join(f'<img src="{f}">' for f in figs)}
<h2>Compute floor</h2>
<p>Floor = the model's multiply-accumulates ÷ this machine's measured peak: {peak['fp32_gmacs_per_s']:.0f} GMAC/s
float32, {peak['int8_gmacs_per_s']:.0f} GMAC/s int8 ({_e(peak['how'])}). "x floor" is p50 latency ÷ floor.</p>
<p class=sub>{_e(libs)} · schema {_e(record['schema'])}</p>
</body></html>"""


def write_html(record: dict, path: Path) -> Path:
    return write_text_atomic(path, render(record))
