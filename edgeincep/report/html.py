"""The self-contained HTML report of a pipeline run (inline CSS and PNG plots, no network)."""
from __future__ import annotations

import html
import json
from pathlib import Path

from edgeincep.fsutil import write_text_atomic
from edgeincep.report import plots
from edgeincep.report.escalation import ALONE_COLUMNS, COLUMNS, alone_rows, ladder_rows, ladder_summary
from edgeincep.report.summary import DEVICE_COLUMNS, device_rows, with_interval

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1100px;color:#222}
h1{margin-bottom:.2rem} .sub{color:#666;margin-top:0}
table{border-collapse:collapse;margin:1rem 0;font-size:.92rem} th,td{padding:.35rem .7rem;border-bottom:1px solid #ddd}
th{background:#f4f4f4;text-align:left} td.n{text-align:right;font-variant-numeric:tabular-nums}
.pass{color:#1a7f37;font-weight:600} .fail{color:#c62828;font-weight:600}
.badge{display:inline-block;padding:.2rem .6rem;border-radius:1rem;font-weight:600}
.badge.pass{background:#e6f4ea} .badge.fail{background:#fdecea}
img{max-width:100%;margin:.5rem 0} code{background:#f4f4f4;padding:0 .3rem;border-radius:3px}
details{margin:.5rem 0}
"""


def _pct(v) -> str:
    return "—" if v is None else f"{100 * v:.2f}%"


def _ms(entry: dict) -> str:
    lat = entry.get("latency")
    return "—" if not lat else f"{lat['p50_ms']:.2f}"


def _mb(v) -> str:
    return "—" if v is None else f"{v:,.0f}"


def _e(s) -> str:
    return html.escape(str(s))


def render(report: dict, base: Path | None = None) -> str:
    """The page; `base`: the folder it is written to (the run's output folder, beside the artifacts)."""
    val = report["validation"]
    ref = val["reference"]
    arts = val["artifacts"]
    names = val["class_names"]
    passed = report.get("passed", True)
    rows = [(f"<tr><td>{_e(ref['target'])}:fp32 (reference)</td><td>{_e(ref['executed_precision'])}</td>"
            f"<td class=n>{_pct(ref.get('top1'))}</td><td class=n>{_pct(ref.get('top5'))}</td>"
            f"<td class=n></td><td class=n></td><td class=n></td><td class=n></td><td class=n></td>"
            f"<td class=n>{(ref['size_bytes'] or 0) / 1e6:.2f}</td><td class=n>{_ms(ref)}</td><td></td></tr>")]
    for a in arts:
        d = a["drift"]
        gate = a.get("gate", {})
        ok = not gate.get("violations")
        change, agree, p = with_interval(d)
        rows.append(
            f"<tr><td>{_e(a['target'])}:{_e(a['precision'])} <small>({_e(a['fmt'])})</small></td>"
            f"<td>{_e(a['executed_precision'])}</td><td class=n>{_pct(a.get('top1'))}</td>"
            f"<td class=n>{_pct(a.get('top5'))}</td>"
            f"<td class=n>{_e(change)}</td><td class=n>{_e(agree)}</td><td class=n>{_e(p)}</td>"
            f"<td class=n>{d['logit_cosine']:.4f}</td>"
            f"<td class=n>{d['sqnr_db']:.1f}</td><td class=n>{(a['size_bytes'] or 0) / 1e6:.2f}</td>"
            f"<td class=n>{_ms(a)}</td>"
            f"<td class={'pass' if ok else 'fail'}>{'pass' if ok else _e('; '.join(gate['violations']))}</td></tr>")
    figs = []
    if arts and "per_class_change_points" in arts[0]["drift"]:
        figs.append(plots.per_class_change(names, {f"{a['target']}:{a['precision']}": a["drift"]["per_class_change_points"]
                                                   for a in arts}))
    figs.append(plots.confidence_histograms({"fp32": ref["confidence_hist"],
                                             **{f"{a['target']}:{a['precision']}": a["confidence_hist"] for a in arts}}))
    figs.append(plots.size_bars({"fp32": (ref["size_bytes"] or 0) / 1e6,
                                 **{f"{a['target']}:{a['precision']}": (a["size_bytes"] or 0) / 1e6 for a in arts}}))
    ladders = []
    for a in arts:
        rungs = ladder_rows(a)
        if len(rungs) > 1:  # past plain INT8: every rung, tried or not, with what it bought and cost
            body = "".join("<tr>" + "".join(f"<td>{_e(r[k])}</td>" for k, _ in COLUMNS) + "</tr>" for r in rungs)
            steps = next((c.get("steps") for rung in a["escalation"]["rungs"] if rung["rung"] == "fallback"
                          for c in rung.get("candidates", []) if c.get("steps")), None)
            ladders.append(f"<p>{_e(ladder_summary(a)).replace('**', '')}</p><table><tr>"
                           + "".join(f"<th>{_e(t)}</th>" for _, t in COLUMNS) + f"</tr>{body}</table>"
                           + _alone_table(a)
                           + (f"<details><summary>fallback steps</summary>{_fallback_steps(steps)}</details>"
                              if steps else "")
                           + "".join(f"<p class=sub>{_e(n)}</p>" for n in (a['escalation'].get('probe') or {}).get('notes', [])))
    flips = []
    for a in arts:
        items = "".join(f"<li><code>{_e(f['image'])}</code>: {_e(f['fp32'])} → {_e(f['other'])}"
                        f"{' (label ' + _e(f['label']) + ')' if 'label' in f else ''}</li>" for f in a["drift"]["flipped"])
        shown = len(a["drift"]["flipped"])
        more = f" (first {shown} listed)" if shown < a["drift"]["n_flipped"] else ""
        flips.append(f"<details><summary>{_e(a['target'])}:{_e(a['precision'])}: {a['drift']['n_flipped']} "
                     f"flipped predictions{more}</summary><ul>{items}</ul></details>")
    imgs = val["images"]
    cal = report.get("calibration") or {}
    stage_mem = {k: v.get("peak_rss_mb") for k, v in (report.get("stages") or {}).items()}
    stages = "".join(f"<tr><td>{_e(k)}</td><td class=n>{v:.1f}</td><td class=n>{_mb(stage_mem.get(k))}</td></tr>"
                     for k, v in report["stage_seconds"].items())
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>edgeincep: {_e(report['model'])}</title>
<style>{CSS}</style></head><body>
<h1>{_e(report['model'])} <span class="badge {'pass' if passed else 'fail'}">{'PASS' if passed else 'FAIL'}</span></h1>
<p class=sub>weights <code>{_e(report['weights'])}</code>
· validated on {imgs['count']} images from <code>{_e(imgs['root'])}</code>
{f"({imgs['skipped']} unreadable skipped)" if imgs['skipped'] else ''} · calibrated on {cal.get('count', '—')} images from
<code>{_e(cal.get('root', '—'))}</code> · input {val['preprocess']['input_size']} px</p>
<h2>Accuracy and drift</h2>
<table><tr><th>artifact</th><th>executed</th><th>top-1</th><th>top-5</th><th>Δ top-1 (pt) [95% CI]</th>
<th>agreement [95% CI]</th><th>McNemar p</th><th>logit cos</th>
<th>SQNR dB</th><th>MB</th><th>ms (b=1, p50)</th><th>gate</th></tr>{''.join(rows)}</table>
{''.join(f'<img src="{f}">' for f in figs)}
{_device_checks(arts, base)}{_bundles(arts)}{_emulated(arts)}{_attribution(val.get("attribution"))}
<h2>Escalation ladder</h2>{''.join(ladders) or '<p>Plain INT8 met the budget on the probe: no rung past it was needed.</p>'}
<h2>Flipped predictions</h2>{''.join(flips) or '<p>None.</p>'}
<h2>Pipeline stages</h2><table><tr><th>stage</th><th>seconds</th><th>peak MB (with child processes)</th></tr>{stages}</table>
<p class=sub>edgeincep report schema {_e(report['schema'])}. With 10 classes top-5 is nearly saturated.</p>
</body></html>"""


def _emulated(arts: list[dict]) -> str:
    """What each Raspberry Pi / Coral bundle computed as arm64 code (qemu), against the host."""
    rows = device_rows(arts)
    if not rows:
        return ""
    body = "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in r) + "</tr>" for r in rows)
    return ("<h2>On the device (arm64, emulated)</h2><p class=sub>The bundle's own <code>run.py</code> with its pinned "
            "aarch64 wheels, run by qemu-user as a Raspberry Pi 4 and 5 on validation images; output steps are the "
            "largest difference of an output code from the host's.</p><table><tr>"
            + "".join(f"<th>{_e(h)}</th>" for h in DEVICE_COLUMNS) + f"</tr>{body}</table>")


def _bundles(arts: list[dict]) -> str:
    """Where each device bundle went, or why none was written."""
    rows = []
    for a in arts:
        b = a.get("bundle")
        if not b:
            continue
        if "skipped" in b:
            rows.append(f"<tr><td>{_e(a['target'])}:{_e(a['precision'])}</td><td colspan=3 class=fail>"
                        f"{_e(b['skipped'])}</td></tr>")
            continue
        rows.append(f"<tr><td>{_e(a['target'])}:{_e(a['precision'])}</td><td><code>{_e(b['archive'])}</code></td>"
                    f"<td class=n>{len(b['files'])}</td><td class=n>{b['archive_bytes'] / 1e6:.2f}</td></tr>")
    if not rows:
        return ""
    return ("<h2>Device bundles</h2><table><tr><th>artifact</th><th>bundle (.tar.gz; the folder beside it)</th>"
            f"<th>files</th><th>MB</th></tr>{''.join(rows)}</table>")


def _device_checks(arts: list[dict], base: Path | None = None) -> str:
    """The Edge TPU compatibility report (and compiler log facts) of each artifact that has one."""
    parts = []
    for a in arts:
        tpu = (a.get("meta") or {}).get("edgetpu")
        if not tpu:
            continue
        # The record may hold a path relative to where the run started; the file lies beside the artifact.
        report = {"ops": []}
        name = Path(tpu["report"]).name
        for where in (Path(tpu["report"]), Path(a.get("path", "")).parent / name, *([base / name] if base else [])):
            try:
                report = json.loads(where.read_text())
                break
            except (OSError, ValueError):
                continue
        ops = "".join(f"<tr><td>{_e(o['op'])}</td><td class=n>{o['version']}</td><td class=n>{o['count']}</td>"
                      f"<td class={'pass' if o['status'] == 'ok' else 'fail'}>{_e(o['status'])}</td></tr>"
                      for o in report.get("ops", []))
        comp = tpu.get("compiler") or {}
        if comp.get("ran"):
            compiled = (f"edgetpu_compiler {_e(comp.get('compiler_version', ''))}: {_e(comp.get('on_tpu', '?'))} ops on "
                        f"the Edge TPU, {_e(comp.get('on_cpu', '?'))} on the CPU; parameters on-chip "
                        f"{_e(comp.get('on_chip_memory', '?'))}, off-chip {_e(comp.get('off_chip_memory', '?'))}")
        else:
            compiled = f"not compiled: {_e(comp.get('reason', 'compiler not run'))}"
        problems = "".join(f"<li>{_e(p)}</li>" for p in report.get("tensor_problems", []) + report.get("warnings", []))
        parts.append(f"<p><b>{_e(a['target'])}:{_e(a['precision'])}</b> — "
                     f"<span class={'pass' if tpu['compatible'] else 'fail'}>{_e(tpu['summary'])}</span><br>{compiled}</p>"
                     + (f"<table><tr><th>op</th><th>version</th><th>count</th><th>Edge TPU</th></tr>{ops}</table>"
                        if ops else "")
                     + (f"<ul>{problems}</ul>" if problems else ""))
    return "<h2>Edge TPU compatibility</h2>" + "".join(parts) if parts else ""


def _attribution(record: dict | None) -> str:
    """The heat map of `edgeincep attribute` for the run's INT8 artifacts, with where each backend hurts most."""
    if not record or not record.get("artifacts"):
        return ""
    from edgeincep.attribution.layers import worst_modules

    names = list(record["artifacts"])
    modules = worst_modules(record, 8)
    heat = plots.layer_heat_map(modules, {n: [record["artifacts"][n].get(m, {}).get("own_sqnr_db") for m in modules]
                                          for n in names},
                                "Own SQNR of each layer's INT8 noise (the worst layers of each artifact)")
    worst = "".join(
        f"<li>{_e(n)}: " + ", ".join(f"{_e(m)} ({v['own_sqnr_db']:.1f} dB)" for m, v in sorted(
            col.items(), key=lambda kv: kv[1]["own_sqnr_db"])[:3]) + "</li>" for n, col in record["artifacts"].items())
    skipped = "".join(f"<li>{_e(n)}: {_e(w)}</li>" for n, w in record.get("skipped", {}).items())
    return (f"<h2>Where INT8 loses accuracy, by PyTorch module</h2><p class=sub>{record['images']} calibration "
            "images; own SQNR = the noise each layer adds itself, lower is worse; Model Explorer node data beside "
            f"the report in attribution/</p><ul>{worst}</ul>{f'<ul>{skipped}</ul>' if skipped else ''}"
            f'<img src="{heat}">')


def write_html(report: dict, path: Path) -> Path:
    return write_text_atomic(path, render(report, Path(path).parent))


def _alone_table(entry: dict) -> str:
    rows, against = alone_rows(entry)
    if not rows:
        return f"<p class=sub>Layers in float one at a time: {_e(against)}</p>" if against else ""
    body = "".join("<tr>" + "".join(f"<td title='{_e(r['node'])}'>{_e(r[k])}</td>" for k, _ in ALONE_COLUMNS)
                   + "</tr>" for r in rows)
    return (f"<p class=sub>What each of the most sensitive layers costs: it alone kept in float, {_e(against)}</p>"
            "<table><tr>" + "".join(f"<th>{_e(t)}</th>" for _, t in ALONE_COLUMNS) + f"</tr>{body}</table>")


def _fallback_steps(steps: list[dict]) -> str:
    """Each float-set size tried, with what it bought (drift) and what it cost (size, latency)."""
    if not steps:
        return ""

    def _neg(v):
        return None if v is None else -v

    def cell(v, fmt):
        return "" if v is None else fmt.format(v)

    rows = "".join(
        f"<tr><td class=n>{s['float_nodes']}</td><td class=n>{cell(_neg(s.get('top1_drop_points')), '{:+.2f}')}</td>"
        f"<td class=n>{cell(s.get('top1_agreement'), '{:.2%}')}</td><td class=n>{cell(s.get('sqnr_db'), '{:.1f}')}</td>"
        f"<td class=n>{cell((s.get('size_bytes') or 0) / 1e6 if s.get('size_bytes') else None, '{:.2f}')}</td>"
        f"<td class=n>{cell(s.get('latency_vs_fp32'), '{:.2f}x')}</td></tr>" if "float_nodes" in s
        else f"<tr><td colspan=6>{_e(s.get('stopped', ''))}</td></tr>" for s in steps)
    return ("<table><tr><th>float layers</th><th>Δ top-1 (pt)</th><th>agreement</th><th>SQNR dB</th><th>MB</th>"
            f"<th>latency vs FP32 (b=1)</th></tr>{rows}</table>")
