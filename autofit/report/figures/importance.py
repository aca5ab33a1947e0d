"""Optuna's parameter importances for one objective (tokens/s or peak memory)."""

from __future__ import annotations

import optuna
import plotly.graph_objects as go

from ..data import ReportData, complete_trials, estimated_mark, searched_params
from ..markup import note


def importance_figure(data: ReportData, objective: int) -> go.Figure | str:
    trials = complete_trials(data)
    params = searched_params(data, trials)
    what = "tokens/s" if objective == 0 else "peak memory"
    if len(trials) < 3 or not params:
        return note(f"Importances for {what} need at least three configurations that fit, differing in a knob "
                     f"(this study has {len(trials)}).")
    mark = estimated_mark(trials)
    name = "tokens/s" if objective == 0 else "peak memory (GiB)"
    fig = optuna.visualization.plot_param_importances(data.study, params=params,
                                                      target=lambda t: t.values[objective],
                                                      target_name=f"{name}{mark}")
    fig.update_layout(title=f"Importance for {what}{mark}", height=380,
                      xaxis_title=f"importance for {name} (fraction, sums to 1)",
                      yaxis_title="knob", showlegend=False)
    return fig
