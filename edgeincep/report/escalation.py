"""The escalation ladder of each artifact as rows a report prints: every rung, tried or not, and why."""
from __future__ import annotations


def _f(v, fmt: str) -> str:
    return "" if v is None else fmt.format(v)


def ladder_rows(entry: dict) -> list[dict]:
    """One row per candidate a rung tried, or one per rung that tried nothing (with its reason)."""
    rows = []
    for rung in (entry.get("escalation") or {}).get("rungs", []):
        base = {"rung": rung["rung"], "title": rung["title"], "status": rung["status"]}
        cands = rung.get("candidates") or []
        if not cands:
            rows.append(base | {"what": rung.get("reason", ""), "agreement": "", "drop": "", "latency": "",
                                "vs_ptq": "", "mb": "", "seconds": _f(rung.get("seconds"), "{:.0f}")})
        for c in cands:
            chosen = c["label"] == rung.get("chosen")
            rows.append(base | {
                "status": rung["status"] if chosen else "",
                "what": c["label"] + (" (shipped)" if c.get("shipped") else ""),
                "agreement": _f(c.get("top1_agreement"), "{:.2%}"),
                "drop": _f(None if c.get("top1_drop_points") is None else 0.0 - c["top1_drop_points"], "{:+.2f}"),
                "latency": _f(c.get("latency_vs_fp32"), "{:.2f}x"), "vs_ptq": _f(c.get("latency_vs_ptq"), "{:.2f}x"),
                "mb": _f((c.get("size_bytes") or 0) / 1e6 if c.get("size_bytes") else None, "{:.2f}"),
                "seconds": _f(c.get("seconds"), "{:.0f}")})
    return rows


def ladder_summary(entry: dict) -> str:
    """One line: which rung met the budget on the probe (or none), the probe, and the time spent."""
    esc = entry.get("escalation") or {}
    if not esc.get("rungs"):
        return ""
    probe = esc.get("probe") or {}
    met = esc.get("met_by")
    what = f"met the budget at **{met}**" if met else ("not scored" if "probe" not in esc
                                                       else "**no rung met the budget** on the probe, so the "
                                                       f"closest candidate ships ({esc.get('shipped')})")
    where = (f"; probe: {probe.get('images')} images from {probe.get('source')}"
             + ("" if probe.get("resolves_budget", True) else " (too few to resolve this budget)")
             if probe else "")
    spent = f"; ladder {esc['seconds']:.0f} s" if "seconds" in esc else ""
    return f"{entry['target']}:{entry['precision']} {what}{where}{spent}"


COLUMNS = [("rung", "rung"), ("status", "status"), ("what", "candidate"), ("agreement", "agreement (probe)"),
           ("drop", "Δ top-1 pt (probe)"), ("latency", "latency vs FP32"), ("vs_ptq", "vs plain INT8"),
           ("mb", "MB"), ("seconds", "s")]


def alone_rows(entry: dict) -> tuple[list[dict], str]:
    """The fallback rung's layers kept in float one at a time (module, what each recovers on the probe), and
    what they were measured against, or why none was."""
    for rung in (entry.get("escalation") or {}).get("rungs", []):
        for c in rung.get("candidates") or []:
            alone = c.get("alone")
            if rung["rung"] == "fallback" and alone:
                rows = [{"module": r.get("module") or r["node"], "node": r["node"],
                         "agreement": _f(r["top1_agreement"], "{:.2%}"),
                         "gain": _f(100 * r["agreement_gain"], "{:+.2f} pt"),
                         "drop": _f(None if r.get("top1_drop_points") is None else 0.0 - r["top1_drop_points"],
                                    "{:+.2f}"),
                         "sqnr_gain": _f(r.get("sqnr_gain_db"), "{:+.1f} dB")} for r in alone["layers"]]
                said = f"against {alone['from']}" if "from" in alone else alone.get("reason", "")
                return rows, said + (f" ({alone['stopped']})" if alone.get("stopped") else "")
    return [], ""


ALONE_COLUMNS = [("module", "module (only this layer float)"), ("agreement", "agreement (probe)"),
                 ("gain", "agreement gained"), ("drop", "Δ top-1 pt (probe)"), ("sqnr_gain", "logit SQNR gained")]
