"""Best throughput over trials (Optuna's optimization history plus a best-so-far line)."""

from __future__ import annotations

import math

import optuna
import plotly.graph_objects as go

from ..data import ReportData, complete_trials, estimated_mark
from ..markup import note


def history_figure(data: ReportData) -> go.Figure | str:
    trials = sorted(complete_trials(data), key=lambda t: t.number)
    if not trials:
        return note("No configuration fits yet: no best throughput to follow.")
    mark = estimated_mark(trials)
    fig = optuna.visualization.plot_optimization_history(data.study, target=lambda t: t.values[0],
                                                         target_name=f"tokens/s{mark}")
    # Optuna draws the best-so-far line only without a target; add it
    best, numbers, values = -math.inf, [], []
    for t in trials:
        best = max(best, t.values[0])
        numbers.append(t.number)
        values.append(best)
    fig.add_trace(go.Scatter(x=numbers, y=values, mode="lines", name="best so far", line={"shape": "hv",
                                                                                          "color": "#e45756"}))
    for trace in fig.data:
        if trace.name == "Objective Value":
            trace.name = "configuration that fits"
    fig.update_layout(title=f"Best throughput over trials{mark}", height=380, xaxis_title="trial",
                      yaxis_title=f"tokens/s{mark}", legend={"orientation": "h", "y": -0.25})
    return fig
