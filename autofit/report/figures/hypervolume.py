"""Optuna's hypervolume history of the front."""

from __future__ import annotations

import optuna
import plotly.graph_objects as go

from ..data import ReportData, complete_trials, estimated_mark
from ..markup import note


def hypervolume_figure(data: ReportData) -> go.Figure | str:
    trials = complete_trials(data)
    if not trials or data.budget <= 0:
        return note("The hypervolume needs at least one configuration that fits.")
    mark = estimated_mark(trials)
    fig = optuna.visualization.plot_hypervolume_history(data.study, reference_point=[0.0, data.budget])
    fig.update_layout(title=f"Hypervolume of the front{mark}", height=380, xaxis_title="trial",
                      yaxis_title=f"tokens/s × GiB{mark}", showlegend=False)
    return fig
