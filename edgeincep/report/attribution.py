"""The per-layer attribution report: a console table of the worst layers, an HTML page with a heat map."""
from __future__ import annotations

from pathlib import Path

from edgeincep.attribution.layers import worst_modules
from edgeincep.console import out
from edgeincep.fsutil import write_text_atomic
from edgeincep.report import plots
from edgeincep.report.html import CSS, _e


def _cell(record: dict, name: str, module: str, key: str = "own_sqnr_db") -> str:
    v = record["artifacts"][name].get(module)
    if v is None:
        return "—"
    return f"{v[key]:.1f}" if v[key] < 60 else "60+"


def print_table(record: dict, per_artifact: int = 8) -> None:
    from rich.table import Table

    names = list(record["artifacts"])
    t = Table(title=f"layers adding the most INT8 noise (own SQNR dB; lower is worse), {record['images']} images")
    t.add_column("module (PyTorch)")
    for n in names:
        t.add_column(n, justify="right")
    for m in worst_modules(record, per_artifact):
        t.add_row(m, *(_cell(record, n, m) for n in names))
    out.print(t)
    for n, why in record["skipped"].items():
        out.print(f"[yellow]not attributed[/] {n}: {why}")


def render(record: dict) -> str:
    names = list(record["artifacts"])
    modules = worst_modules(record)
    heat = plots.layer_heat_map(modules, {n: [record["artifacts"][n].get(m, {}).get("own_sqnr_db") for m in modules]
                                          for n in names},
                                "Own SQNR of each layer's INT8 noise (the worst layers of each artifact)")
    head = "".join(f"<th>{_e(n)} own / at output</th>" for n in names)
    rows = "".join(f"<tr><td>{_e(la['module'])}</td><td><small>{_e(la['node'])}</small></td>"
                   + "".join(f"<td class=n>{_cell(record, n, la['module'])} / "
                             f"{_cell(record, n, la['module'], 'sqnr_db')}</td>" for n in names) + "</tr>"
                   for la in record["layers"])
    skipped = "".join(f"<li>{_e(n)}: {_e(why)}</li>" for n, why in record["skipped"].items())
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>edgeincep attribution</title>
<style>{CSS}</style></head><body>
<h1>Where INT8 loses accuracy, layer by layer</h1>
<p class=sub>{record['images']} images · each layer named by its PyTorch module · "own" is the SQNR of the noise the
layer adds itself (its output's noise power minus its inputs'), "at output" the SQNR of its output against FP32;
lower is worse; 60+ is a layer that adds no noise of its own that matters (or, at 200, none at all)</p>
<img src="{heat}">
{f'<h2>Not attributed</h2><ul>{skipped}</ul>' if skipped else ''}
<h2>Every layer</h2><table><tr><th>module</th><th>ONNX node</th>{head}</tr>{rows}</table>
</body></html>"""


def write_html(record: dict, path: Path) -> Path:
    return write_text_atomic(path, render(record))
