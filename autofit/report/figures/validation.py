"""Peak memory: the trace's prediction against the real run's measurement."""

from __future__ import annotations

import plotly.graph_objects as go

from ..data import ReportData, validation_rows
from ..style import STATE_COLORS
from .common import budget_line


def validation_figure(data: ReportData) -> go.Figure:
    rows = validation_rows(data)
    fig = go.Figure()
    top = float(max(rows["predicted_peak_gib"].max(), rows["peak_allocated_gib"].max())) * 1.08
    fig.add_trace(go.Scatter(x=[0, top], y=[0, top], mode="lines", name="predicted = measured",
                             line={"color": "#888", "dash": "dot"}, hoverinfo="skip"))
    fig.add_trace(go.Scatter(x=[0, top], y=[0, top / 1.1], mode="lines", name="±10%",
                             line={"color": "#ccc", "width": 1}, hoverinfo="skip"))
    fig.add_trace(go.Scatter(x=[0, top / 1.1], y=[0, top], mode="lines", showlegend=False,
                             line={"color": "#ccc", "width": 1}, hoverinfo="skip"))
    for state, group in rows.groupby("state", sort=False):
        fig.add_trace(go.Scatter(x=group["predicted_peak_gib"], y=group["peak_allocated_gib"], mode="markers",
                                 name=str(state), marker={"color": STATE_COLORS.get(str(state), "#999"), "size": 9},
                                 text=group["config_text"], hoverinfo="text"))
    budget_line(fig, data.budget, axis="y", annotation_position="top left")
    fig.update_layout(title="Peak memory: the trace's prediction against the real run", height=440,
                      xaxis_title="predicted peak (GiB, estimated by the trace probe)",
                      yaxis_title="measured peak allocated (GiB)", legend={"orientation": "h", "y": -0.2})
    fig.update_xaxes(range=[0, top])
    fig.update_yaxes(range=[0, top])
    return fig
