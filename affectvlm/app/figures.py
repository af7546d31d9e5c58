"""Plotly figures of results: class probabilities, per-frame probabilities of a sequence, training metrics."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from affectvlm.app.runview import finite
from affectvlm.runfolder import MetricRecord


def probability_figure(probs: dict[str, float], *, height: int = 320):
    """Horizontal bar chart of class probabilities, top class highlighted."""
    import plotly.graph_objects as go

    names = list(probs)
    vals = [probs[n] for n in names]
    top = int(np.nanargmax(vals)) if vals else -1
    colors = ["#e4572e" if i == top else "#4c78a8" for i in range(len(names))]
    fig = go.Figure(go.Bar(x=vals, y=names, orientation="h", marker_color=colors,
                           text=[f"{v:.1%}" for v in vals], textposition="auto"))
    fig.update_layout(height=height, margin=dict(l=10, r=10, t=10, b=10), xaxis=dict(range=[0, 1], tickformat=".0%"),
                      yaxis=dict(autorange="reversed"))
    return fig


def sequence_figure(frame_rows: Sequence[dict[str, Any]], classes: Sequence[str], *, n_total: int | None = None,
                    current: int | None = None, height: int = 380):
    """Per-frame probability lines (x = frame number); fills in as rows arrive."""
    import plotly.graph_objects as go

    xs = [r.get("frame") for r in frame_rows]
    fig = go.Figure()
    for c in classes:
        fig.add_trace(go.Scatter(x=xs, y=[r.get(c) for r in frame_rows], mode="lines+markers", name=c,
                                 marker=dict(size=4)))
    layout: dict[str, Any] = dict(height=height, margin=dict(l=10, r=10, t=30, b=40), yaxis=dict(range=[0, 1], title="p"),
                                  xaxis=dict(title="frame"), uirevision="seq",
                                  # legend under the axis: above it, it covered the "n / N frames scored" title
                                  legend=dict(orientation="h", x=0, y=-0.22, yanchor="top"))
    if n_total:
        failed = sum(1 for r in frame_rows if r.get("error"))
        text = f"{len(frame_rows) - failed} / {n_total} frames scored" + (f", {failed} failed" if failed else "")
        layout["title"] = dict(text=text, font=dict(size=13))
    fig.update_layout(**layout)
    if current is not None:
        fig.add_vline(x=current, line_dash="dot", line_color="grey")
    return fig


_NOT_SERIES = ("step", "epoch", "epochs", "time", "timestamp", "rank", "world_size")


def metric_series(records: Sequence[MetricRecord]) -> dict[str, tuple[list[float], list[float]]]:
    """``name -> (x, y)`` for every numeric field of the records; x is the step, else the epoch, else the
    index. Fields of records of another ``kind`` than ``train`` are prefixed with it (``epoch loss``)."""
    out: dict[str, tuple[list[float], list[float]]] = {}
    for i, rec in enumerate(records):
        x = next((float(v) for v in (rec.step, rec.epoch) if v is not None), float(i))
        prefix = f"{rec.kind} " if rec.kind and rec.kind != "train" else ""
        for k, val in rec.to_json().items():
            y = finite(val)
            if k in _NOT_SERIES or y is None:
                continue
            name = k if k.startswith(("val_", "best_", "test_")) else prefix + k
            xs, ys = out.setdefault(name, ([], []))
            xs.append(x)
            ys.append(y)
    return out


_GROUPS = {
    "loss": lambda n: "loss" in n or n.split()[-1] in ("alpha", "margin", "mc", "mt", "clip", "ce"),
    "accuracy": lambda n: any(t in n for t in ("acc", "f1")),
    "learning rate": lambda n: n.split()[-1] == "lr" or n.endswith("_lr") or n.split()[-1].startswith("lr_"),
    "samples/s": lambda n: "samples_per" in n or "samples/s" in n or "throughput" in n,
}


def metrics_figures(records: Sequence[MetricRecord], *, height: int = 260) -> dict[str, Any]:
    """Plotly line charts grouped as loss terms, accuracy, learning rate and samples/s."""
    import plotly.graph_objects as go

    series = metric_series(records)
    figs: dict[str, Any] = {}
    for group, match in _GROUPS.items():
        names = [n for n in series if match(n) and not n.startswith("per_class")]
        if group == "accuracy":
            names = [n for n in names if not _GROUPS["loss"](n)]
        if not names:
            continue
        fig = go.Figure()
        for n in names:
            xs, ys = series[n]
            fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines+markers" if len(xs) < 40 else "lines", name=n))
        fig.update_layout(title=dict(text=group, font=dict(size=13)), height=height,
                          margin=dict(l=10, r=10, t=35, b=10), legend=dict(orientation="h", y=-0.25))
        if group == "learning rate":
            fig.update_yaxes(exponentformat="e")
        figs[group] = fig
    return figs
