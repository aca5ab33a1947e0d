"""Optuna's timeline of the probes, regrouped by autofit's outcome states."""

from __future__ import annotations

from typing import Any

import optuna
import plotly.graph_objects as go

from ...trials import TrialAttr
from ..data import ReportData
from ..markup import note
from ..style import STATE_COLORS


def timeline_figure(data: ReportData) -> go.Figure | str:
    finished = [t for t in data.trials if t.datetime_start is not None]
    if not finished:
        return note("No trial has started yet.")
    base = optuna.visualization.plot_timeline(data.study)
    # Optuna groups the bars by its own trial state; regroup them by autofit's (ok, oom, oom-inferred, ...)
    bars: dict[int, tuple[Any, Any]] = {}
    for trace in base.data:
        for x, start, number in zip(trace.x or (), trace.base or (), trace.y or (), strict=False):
            bars[int(number)] = (x, start)
    states: dict[str, list[int]] = {}
    for t in finished:
        if t.number not in bars:
            continue
        state = t.user_attrs.get(TrialAttr.STATE) or t.state.name.lower()
        states.setdefault(str(state), []).append(t.number)
    text = {int(r["number"]): r["config_text"] for _, r in data.frame.iterrows()}
    fig = go.Figure(layout=base.layout)
    for state, numbers in states.items():
        fig.add_trace(go.Bar(
            x=[bars[n][0] for n in numbers], base=[bars[n][1] for n in numbers], y=numbers, orientation="h",
            name=state, marker_color=STATE_COLORS.get(state, "#999"), width=0.8,
            hovertext=[text.get(n, f"trial {n}: {state}") + f"<br>{float(bars[n][0]) / 1000:.2f} s" for n in numbers],
            hoverinfo="text"))
    fig.update_layout(title="Timeline of the probes, by outcome", height=max(320, min(640, 140 + 4 * len(finished))),
                      xaxis_title="time (worker's local clock)", yaxis_title="trial", barmode="overlay",
                      legend={"orientation": "h", "y": -0.18}, showlegend=True)
    fig.update_yaxes(autorange="reversed")
    return fig
