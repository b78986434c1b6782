"""The terminal summary of a validation record: one table, FP32 first."""
from __future__ import annotations

from rich.table import Table

from ..console import out


def _pct(v) -> str:
    return "—" if v is None else f"{100 * v:.2f}%"


def print_validation(record: dict) -> None:
    imgs = record["images"]
    t = Table(title=f"validation on {imgs['count']} images from {imgs['root']}"
                    + (f" ({imgs['skipped']} skipped)" if imgs["skipped"] else ""))
    for col in ("artifact", "precision", "top-1", "top-5", "Δ top-1 (pt)", "agree", "cos", "SQNR dB", "MB"):
        t.add_column(col, justify="left" if col in ("artifact", "precision") else "right", no_wrap=col == "artifact")
    ref = record["reference"]
    t.add_row(ref["target"] + ":fp32 (reference)", ref["executed_precision"], _pct(ref.get("top1")),
              _pct(ref.get("top5")), "", "", "", "", f"{(ref['size_bytes'] or 0) / 1e6:.1f}")
    for a in record["artifacts"]:
        d = a["drift"]
        t.add_row(f"{a['target']}:{a['precision']}", a["executed_precision"], _pct(a.get("top1")), _pct(a.get("top5")),
                  "—" if "top1_drop_points" not in d else f"{-d['top1_drop_points'] + 0.0:+.2f}",
                  _pct(d["top1_agreement"]), f"{d['logit_cosine']:.4f}", f"{d['sqnr_db']:.1f}",
                  f"{(a['size_bytes'] or 0) / 1e6:.1f}")
    out.print(t)
