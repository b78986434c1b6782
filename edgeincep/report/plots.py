"""Report figures as inline PNG (base64), so the HTML report is one self-contained file."""
from __future__ import annotations

import base64
import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def per_class_change(class_names: list[str], changes: dict[str, list[float | None]]) -> str:
    """Grouped bars: each artifact's per-class top-1 change vs FP32, in points."""
    fig, ax = plt.subplots(figsize=(9, 3.6))
    n = max(1, len(changes))
    width = 0.8 / n
    for i, (name, vals) in enumerate(changes.items()):
        xs = [j + i * width - 0.4 + width / 2 for j in range(len(vals))]
        ax.bar(xs, [v or 0.0 for v in vals], width=width, label=name)
    ax.axhline(0, color="black", lw=0.8)
    ax.set_xticks(range(len(class_names)))
    ax.set_xticklabels(class_names, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("top-1 change (points)")
    ax.set_title("Per-class accuracy change vs FP32")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return _png(fig)


def confidence_histograms(hists: dict[str, list[int]]) -> str:
    fig, ax = plt.subplots(figsize=(9, 3.2))
    for name, counts in hists.items():
        bins = len(counts)
        centers = [(i + 0.5) / bins for i in range(bins)]
        ax.step(centers, counts, where="mid", label=name)
    ax.set_yscale("log")
    ax.set_xlabel("top-1 softmax confidence")
    ax.set_ylabel("images")
    ax.set_title("Confidence distribution")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return _png(fig)


def size_bars(sizes: dict[str, float]) -> str:
    return named_bars(sizes, "file size (MB)", "Artifact size", "{:.2f} MB")


def _artifact_bars(rows: list[dict], values: list[float]):
    """One horizontal bar per artifact, float blue and INT8 orange, first artifact on top."""
    fig, ax = plt.subplots(figsize=(8, 0.7 + 0.5 * len(rows)))
    ax.barh([r["name"] for r in rows], values,
            color=["#dd8452" if r["precision"] == "int8" else "#4c72b0" for r in rows])
    ax.invert_yaxis()
    return fig, ax


def latency_bars(rows: list[dict]) -> str:
    """Batch-1 latency per artifact: p50 bar, p90 and p99 ticks, and the compute floor in red."""
    fig, ax = _artifact_bars(rows, [r["latency"]["p50_ms"] for r in rows])
    for i, r in enumerate(rows):
        lat = r["latency"]
        ax.plot([lat["p50_ms"], lat["p99_ms"]], [i, i], color="black", lw=1)
        ax.plot([lat["p90_ms"]], [i], marker="|", color="black", ms=10)
        ax.plot([lat["p99_ms"]], [i], marker="|", color="black", ms=14)
        label = f" {lat['p50_ms']:.1f} ms"
        if r.get("floor_ms"):
            ax.plot([r["floor_ms"]] * 2, [i - 0.4, i + 0.4], color="#c62828", lw=2)
            label += f" ({r['x_floor']:.1f}x floor)"
        ax.text(lat["p99_ms"], i, label, va="center", fontsize=8)
    ax.set_xlabel("batch-1 latency, ms (bar: p50; ticks: p90, p99; red: compute floor)")
    ax.set_xlim(0, max(r["latency"]["p99_ms"] for r in rows) * 1.45)
    ax.set_title("Latency (blue: float, orange: INT8)")
    return _png(fig)


def throughput_bars(rows: list[dict]) -> str:
    ips = [r["throughput"]["images_per_s"] for r in rows]
    fig, ax = _artifact_bars(rows, ips)
    for i, v in enumerate(ips):
        ax.text(v, i, f" {v:.1f}/s", va="center", fontsize=8)
    ax.set_xlabel(f"images per second at batch {rows[0]['throughput']['batch']}")
    ax.set_xlim(0, max(ips) * 1.25)
    ax.set_title("Throughput")
    return _png(fig)


def named_bars(values: dict[str, float], xlabel: str, title: str, fmt: str = "{:.2f}") -> str:
    """One labelled horizontal bar per name, first on top."""
    fig, ax = plt.subplots(figsize=(6, 0.7 + 0.45 * len(values)))
    names = list(values)
    ax.barh(names, [values[n] for n in names], color="#4c72b0")
    for i, n in enumerate(names):
        ax.text(values[n], i, " " + fmt.format(values[n]), va="center", fontsize=8)
    ax.set_xlabel(xlabel)
    ax.invert_yaxis()
    ax.set_title(title)
    return _png(fig)


def pareto_scatter(title: str, points: list[tuple[str, float, float, bool]]) -> str:
    """(label, latency ratio to FP32, top-1 agreement %, on the front) per trial: the front in orange, joined."""
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for name, x, y, on_front in points:
        ax.scatter([x], [y], color="#dd8452" if on_front else "#4c72b0", s=40 if on_front else 22, zorder=3)
        ax.annotate(name, (x, y), fontsize=7, xytext=(4, 3), textcoords="offset points")
    front = sorted((x, y) for _, x, y, f in points if f)
    if len(front) > 1:
        ax.plot(*zip(*front, strict=True), color="#dd8452", lw=1, zorder=2)
    ax.set_xlabel("batch-1 latency / FP32 (lower is better)")
    ax.set_ylabel("top-1 agreement with FP32 (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    return _png(fig)


def layer_heat_map(modules: list[str], columns: dict[str, list[float | None]], title: str) -> str:
    """Rows are modules, columns artifacts; each cell the layer's own SQNR in dB (red: the layer hurts)."""
    import numpy as np

    names = list(columns)
    data = np.array([[np.nan if v is None else min(v, 60.0) for v in columns[n]] for n in names], dtype=float).T
    fig, ax = plt.subplots(figsize=(2.2 + 1.3 * len(names), 1.0 + 0.22 * len(modules)))
    im = ax.imshow(np.ma.masked_invalid(data), cmap="RdYlGn", vmin=0, vmax=60, aspect="auto")
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, rotation=30, ha="right", fontsize=8)
    ax.set_yticks(range(len(modules)))
    ax.set_yticklabels(modules, fontsize=7)
    for (i, j), v in np.ndenumerate(data):
        if not np.isnan(v):
            ax.text(j, i, f"{v:.0f}", ha="center", va="center", fontsize=6)
    fig.colorbar(im, ax=ax, label="own SQNR dB (60+ shown as 60)")
    ax.set_title(title, fontsize=9)
    return _png(fig)
