"""The terminal summary of a validation record: one table, FP32 first."""
from __future__ import annotations

from rich.table import Table

from edgeincep.console import out
from edgeincep.report.escalation import ALONE_COLUMNS, COLUMNS, alone_rows, ladder_rows, ladder_summary


def _pct(v) -> str:
    return "—" if v is None else f"{100 * v:.2f}%"


def _ms(entry: dict) -> str:
    lat = entry.get("latency")
    return "—" if not lat else f"{lat['p50_ms']:.2f}"


def print_validation(record: dict) -> None:
    imgs = record["images"]
    t = Table(title=f"validation on {imgs['count']} images from {imgs['root']}"
                    + (f" ({imgs['skipped']} skipped)" if imgs["skipped"] else ""))
    for col in ("artifact", "precision", "top-1", "top-5", "Δ top-1 (pt) [95%]", "agree [95%]", "McNemar p", "cos",
                "SQNR dB", "MB"):
        t.add_column(col, justify="left" if col in ("artifact", "precision") else "right", no_wrap=col == "artifact")
    ref = record["reference"]
    t.add_row(ref["target"] + ":fp32 (reference)", ref["executed_precision"], _pct(ref.get("top1")),
              _pct(ref.get("top5")), "", "", "", "", "", f"{(ref['size_bytes'] or 0) / 1e6:.1f}")
    for a in record["artifacts"]:
        d = a["drift"]
        t.add_row(f"{a['target']}:{a['precision']}", a["executed_precision"], _pct(a.get("top1")), _pct(a.get("top5")),
                  *with_interval(d), f"{d['logit_cosine']:.4f}", f"{d['sqnr_db']:.1f}",
                  f"{(a['size_bytes'] or 0) / 1e6:.1f}")
    out.print(t)


def with_interval(d: dict) -> tuple[str, str, str]:
    """Δ top-1, agreement and McNemar's p as shown: each measured value with its 95% paired-bootstrap interval."""
    drop = d.get("top1_drop_points")
    conf = d.get("confidence") or {}
    ci = conf.get("intervals", {}).get("0.95", {})
    change = "—" if drop is None else f"{-drop + 0.0:+.2f}"
    if drop is not None and "top1_change_points" in ci:
        lo, hi = ci["top1_change_points"]
        change += f" [{lo + 0.0:+.2f}, {hi + 0.0:+.2f}]"
    agree = _pct(d["top1_agreement"])
    if "agreement" in ci:
        lo, hi = ci["agreement"]
        agree += f" [{100 * lo:.2f}, {100 * hi:.2f}]"
    p = (conf.get("mcnemar") or {}).get("p_value")
    return change, agree, "—" if p is None else f"{p:.2g}"


DEVICE_COLUMNS = ("bundle", "board", "images", "agrees with host INT8", "agrees with FP32 (host INT8)",
                  "identical outputs", "max output steps", "top-1 (host INT8)")


def device_rows(artifacts: list[dict]) -> list[list[str]]:
    """One row of text cells per emulated board run of a bundle (or why there was none)."""
    rows = []
    for a in artifacts:
        emu = (a.get("bundle") or {}).get("emulated")
        if not emu:
            continue
        name = f"{a['target']}:{a['precision']}"
        if "boards" not in emu:
            rows.append([name, "—", "—", emu.get("skipped") or f"failed: {emu.get('error')}", "", "", "", ""])
            continue
        for board, e in emu["boards"].items():
            rows.append([name, e.get("title", board), str(emu["images"]), _pct(e["top1_agreement_host_int8"]),
                         f"{_pct(e['top1_agreement_fp32'])} ({_pct(e['host_top1_agreement_fp32'])})",
                         _pct(e["identical_logits"]), str(e.get("max_output_steps", "—")),
                         f"{_pct(e.get('top1'))} ({_pct(e.get('host_top1'))})"])
    return rows


def markdown(report: dict) -> str:
    """A short Markdown summary of a run, for CI logs and pull requests."""
    val = report["validation"]
    ref = val["reference"]
    lines = [f"## edgeincep: {report['model']} — {'PASS' if report.get('passed', True) else 'FAIL'}", "",
             (f"Validated on {val['images']['count']} images ({val['images']['root']}); calibrated on "
             f"{(report.get('calibration') or {}).get('count', '—')} images; input {val['preprocess']['input_size']} px."),
             "", ("| artifact | top-1 | Δ top-1 (pt) [95% CI] | agreement [95% CI] | McNemar p | SQNR dB | MB "
                  "| ms (b=1) | gate |"), "|---|---|---|---|---|---|---|---|---|",
             f"| fp32 (reference) | {_pct(ref.get('top1'))} | | | | | {(ref['size_bytes'] or 0) / 1e6:.2f} | {_ms(ref)} | |"]
    for a in val["artifacts"]:
        d = a["drift"]
        gate = a.get("gate", {}).get("violations")
        change, agree, p = with_interval(d)
        lines.append(f"| {a['target']}:{a['precision']} | {_pct(a.get('top1'))} | {change} | {agree} | {p} | "
                     f"{d['sqnr_db']:.1f} | {(a['size_bytes'] or 0) / 1e6:.2f} | {_ms(a)} | "
                     f"{'; '.join(gate) if gate else 'pass'} |")
    for a in val["artifacts"]:
        b = a.get("bundle")
        if b:
            lines += ["", f"Bundle ({a['target']}:{a['precision']}): "
                          + (b["skipped"] if "skipped" in b else f"{b['archive']} ({len(b['files'])} files)")]
    emulated = device_rows(val["artifacts"])
    if emulated:
        lines += ["", "On the device (the bundle's run.py as arm64 code under qemu-user):", ""]
        lines += ["| " + " | ".join(r) + " |" for r in [list(DEVICE_COLUMNS), ["---"] * len(DEVICE_COLUMNS), *emulated]]
    for a in val["artifacts"]:
        rows = ladder_rows(a)
        if len(rows) > 1:  # a ladder climbed past plain INT8: every rung, tried or not
            lines += ["", f"Escalation: {ladder_summary(a)}", "",
                      "| " + " | ".join(t for _, t in COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
            lines += ["| " + " | ".join(str(r[k]).replace("|", "/") for k, _ in COLUMNS) + " |" for r in rows]
            alone, against = alone_rows(a)
            if alone:
                lines += ["", f"Each most sensitive layer alone in float ({against}):", "",
                          "| " + " | ".join(t for _, t in ALONE_COLUMNS) + " |", "|" + "---|" * len(ALONE_COLUMNS)]
                lines += ["| " + " | ".join(str(r[k]) for k, _ in ALONE_COLUMNS) + " |" for r in alone]
    for a in val["artifacts"]:
        tpu = (a.get("meta") or {}).get("edgetpu")
        if tpu:
            lines += ["", f"Edge TPU ({a['target']}:{a['precision']}): {tpu['summary']}"]
    return "\n".join(lines) + "\n"
