"""Throughput against peak memory: every trial, the Pareto front, the recommendation and the budget line."""

from __future__ import annotations

import plotly.graph_objects as go

from ...trials import OOM_STATES, Outcome
from ..data import ReportData
from ..markup import note
from ..style import STATE_COLORS
from .common import budget_line


def pareto_figure(data: ReportData) -> go.Figure | str:
    frame = data.frame
    plotted = frame.dropna(subset=["plot_memory_gib", "plot_tokens_per_s"])
    if plotted.empty:
        return note("No trial has a peak memory and a throughput yet: nothing to plot.")
    ok = plotted[plotted["state"] == Outcome.OK.value]
    front_numbers = set(data.front["number"])
    rest = ok[~ok["number"].isin(front_numbers)]
    front = ok[ok["number"].isin(front_numbers)].sort_values("plot_memory_gib")
    bad = plotted[plotted["state"] != Outcome.OK.value]
    mark = data.estimated_rows(plotted)
    fig = go.Figure()
    for state, group in bad.groupby("state", sort=False):
        fig.add_trace(go.Scatter(
            x=group["plot_memory_gib"], y=group["plot_tokens_per_s"], mode="markers",
            name=f"{state} (does not fit)" if state in OOM_STATES else str(state),
            marker={"color": STATE_COLORS.get(str(state), "#999"), "symbol": "x", "size": 8, "opacity": 0.8},
            text=group["config_text"], hoverinfo="text"))
    fig.add_trace(go.Scatter(x=rest["plot_memory_gib"], y=rest["plot_tokens_per_s"], mode="markers", name="fits",
                             marker={"color": "#9ecae1", "size": 8, "line": {"width": 0.5, "color": "#2f7ed8"}},
                             text=rest["config_text"], hoverinfo="text"))
    fig.add_trace(go.Scatter(x=front["plot_memory_gib"], y=front["plot_tokens_per_s"], mode="lines+markers",
                             name="Pareto front", line={"shape": "hv", "color": "#f58518", "width": 2},
                             marker={"size": 9, "color": "#f58518"}, text=front["config_text"], hoverinfo="text"))
    if data.rec is not None:
        row = frame[frame["number"] == data.rec.trial.number]
        fig.add_trace(go.Scatter(x=[data.rec.peak_memory_gib], y=[data.rec.tokens_per_s], mode="markers+text",
                                 name="recommended", text=["recommended"], textposition="top left",
                                 hovertext=list(row["config_text"]), hoverinfo="text",
                                 marker={"symbol": "star", "size": 18, "color": "#e45756",
                                         "line": {"width": 1, "color": "#7a1f1f"}}))
    budget_line(fig, data.budget, annotation_position="top right")
    ok_max = float(ok["plot_memory_gib"].max()) if len(ok) else 0.0
    x_max = max(data.budget * 1.6, ok_max * 1.1)
    beyond = int((bad["plot_memory_gib"] > x_max).sum())
    subtitle = ""
    if beyond and len(ok) and x_max > 0:  # zoom on the budget; without a fitting trial show everything
        fig.update_xaxes(range=[0, x_max])
        visible = plotted[plotted["plot_memory_gib"] <= x_max]["plot_tokens_per_s"]
        if len(visible):
            fig.update_yaxes(range=[0, float(visible.max()) * 1.12])
        subtitle = (f"<br><sup>{beyond} infeasible trial(s) lie right of {x_max:.2f} GiB: "
                    f"double-click the plot to show them</sup>")
    fig.update_layout(title=f"Throughput against peak GPU memory{mark}{subtitle}", height=500,
                      xaxis_title=f"peak GPU memory (GiB){mark}", yaxis_title=f"tokens/s{mark}",
                      legend={"orientation": "h", "y": -0.18})
    fig.update_yaxes(rangemode="tozero")
    return fig
