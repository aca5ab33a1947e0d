"""Peak memory against one knob (batch size, sequence length), by quantization."""

from __future__ import annotations

import math

import plotly.graph_objects as go

from ...trials import Outcome
from ..data import ReportData
from ..markup import note
from ..style import QUANT_COLORS
from .common import budget_line, knob_positions


def memory_figure(data: ReportData, knob: str, title: str, axis_title: str) -> go.Figure | str:
    frame = data.frame.dropna(subset=["plot_memory_gib"])
    frame = frame[frame[knob].notna()]
    if frame.empty:
        return note("No trial has a peak memory yet.")
    positions = knob_positions(list(frame[knob]))
    index = {str(v): i for i, v in enumerate(positions)}
    quants = [q for q in ("none", "int8", "nf4") if q in set(frame["quantization"])] + \
        sorted(set(frame["quantization"].dropna().map(str)) - {"none", "int8", "nf4"})
    mark = data.estimated_rows(frame)
    fig = go.Figure()
    width = 0.6
    for qi, quant in enumerate(quants):
        group = frame[frame["quantization"].map(str) == quant]
        offset = (qi - (len(quants) - 1) / 2) * (width / max(1, len(quants)))
        for fits in (True, False):
            part = group[(group["state"] == Outcome.OK.value) == fits]
            jitter = [((int(n) * 7919) % 17 / 16 - 0.5) * width / max(1, len(quants)) * 0.6 for n in part["number"]]
            fig.add_trace(go.Scatter(
                x=[index[str(v)] + offset + j for v, j in zip(part[knob], jitter, strict=False)],
                y=part["plot_memory_gib"],
                mode="markers", name=f"quantization={quant}", legendgroup=quant,
                showlegend=fits or not (group["state"] == Outcome.OK.value).any(),
                marker={"color": QUANT_COLORS.get(quant, "#888"), "size": 8, "symbol": "circle" if fits else "x",
                        "opacity": 0.9 if fits else 0.45},
                text=part["config_text"], hoverinfo="text"))
    if (frame["state"] != Outcome.OK.value).any():
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", name="× does not fit",
                                 marker={"color": "#999", "symbol": "x", "size": 8}, hoverinfo="skip"))
    values = frame["plot_memory_gib"].astype(float)
    log = bool(values.min() > 0 and values.max() / values.min() > 20)
    if log:
        budget_line(fig, data.budget, axis="y", log=True)
    else:
        budget_line(fig, data.budget, axis="y", annotation_position="top left")
    fig.update_xaxes(tickvals=list(range(len(positions))), ticktext=[str(v) for v in positions],
                     range=[-0.6, len(positions) - 0.4])
    if log:
        decades = math.log10(values.max()) - math.log10(values.min())
        fig.update_yaxes(type="log", dtick=1 if decades >= 1 else "D2")
    fig.update_layout(title=f"Peak memory by {title}{mark}",
                      xaxis_title=axis_title, yaxis_title=f"peak memory, GiB{' (log)' if log else ''}{mark}",
                      height=420, legend={"orientation": "h", "y": -0.25})
    return fig
