"""The report's ladder tables say what a time budget cut short, and name each layer kept float alone by module."""
from __future__ import annotations

from edgeincep.report.escalation import alone_rows, ladder_rows
from edgeincep.report.html import _alone_table, _fallback_steps


def _entry(alone: dict, steps: list[dict], status: str = "stopped") -> dict:
    cand = {"label": "1 most sensitive layer(s) in float", "top1_agreement": 0.997, "top1_drop_points": 0.1,
            "latency_vs_fp32": 0.7, "size_bytes": 2_000_000, "seconds": 12.0, "steps": steps, "alone": alone}
    return {"target": "onnxruntime", "precision": "int8", "escalation": {"rungs": [
        {"rung": "ptq", "title": "INT8 as configured", "status": "missed",
         "candidates": [{"label": "as configured", "top1_agreement": 0.995, "top1_drop_points": 0.2}],
         "chosen": "as configured"},
        {"rung": "fallback", "title": "sensitive layers kept in float", "status": status, "candidates": [cand],
         "chosen": cand["label"], "reason": "stopped at the time budget (600 s)"},
        {"rung": "qat", "title": "quantization-aware fine-tuning", "status": "not tried",
         "reason": "the time budget is spent (612 s of 600 s)"}]}}


ALONE = {"layers": [{"node": "/repeat_1/repeat_1.3/branch1/branch1.0/conv/Conv", "module": "repeat_1.3.branch1.0.conv",
                     "top1_agreement": 0.997, "agreement_gain": 0.002, "top1_drop_points": 0.1, "sqnr_gain_db": 1.5}],
         "from": "as configured", "stopped": "the time budget was spent after 1 of 4"}


def test_a_search_stopped_by_the_time_budget_shows_where_it_stopped():
    steps = [{"float_nodes": 0, "top1_agreement": 0.995}, {"float_nodes": 1, "top1_agreement": 0.997},
             {"stopped": "the time budget is spent"}]
    html = _fallback_steps(steps)
    assert html.count("<tr>") == 4 and "the time budget is spent" in html
    rows = ladder_rows(_entry(ALONE, steps))
    assert [(r["rung"], r["status"]) for r in rows] == [("ptq", "missed"), ("fallback", "stopped"), ("qat", "not tried")]
    assert "time budget is spent" in rows[2]["what"]


def test_layers_kept_float_alone_are_listed_by_module_with_what_they_were_measured_against():
    rows, against = alone_rows(_entry(ALONE, []))
    assert [r["module"] for r in rows] == ["repeat_1.3.branch1.0.conv"]
    assert rows[0]["gain"] == "+0.20 pt" and rows[0]["sqnr_gain"] == "+1.5 dB"
    assert against == "against as configured (the time budget was spent after 1 of 4)"
    table = _alone_table(_entry(ALONE, []))
    assert "repeat_1.3.branch1.0.conv" in table and "/repeat_1/repeat_1.3/branch1/branch1.0/conv/Conv" in table
    # a backend that cannot keep one layer float alone says why instead of showing an empty table
    none = _alone_table(_entry({"layers": [], "reason": "a float layer ends the Edge TPU's one integer subgraph"}, []))
    assert "<table>" not in none and "Edge TPU" in none
