"""Peak memory against sequence length for each strategy (the study's stored curves, estimated)."""

from __future__ import annotations

import plotly.graph_objects as go

from ...advice import stored_curves
from ..data import ReportData
from ..markup import note
from .common import budget_line


def seq_len_figure(data: ReportData) -> go.Figure | str:
    curves = stored_curves(data.attrs)
    if not curves:
        return note("No sequence-length curve: no configuration fits the budget.")
    fig = go.Figure()
    for curve in curves:
        points = sorted(curve["points"])
        name = curve["strategy"] + (" (recommended)" if curve["recommended"] else "")
        fig.add_trace(go.Scatter(x=[p[0] for p in points], y=[p[1] for p in points], mode="lines+markers", name=name,
                                 hovertemplate="seq_len %{x}<br>peak %{y:.2f} GiB (estimated)<extra>" + name
                                 + "</extra>"))
    budget_line(fig, data.budget, axis="y")
    fig.update_layout(title="Peak memory against sequence length (estimated, traced)", xaxis_title="seq_len (tokens)",
                      yaxis_title="peak GPU memory (GiB)", height=430)
    return fig
