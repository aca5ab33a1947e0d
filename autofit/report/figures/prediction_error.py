"""The trace's prediction error per measured trial."""

from __future__ import annotations

import plotly.graph_objects as go

from ..data import ReportData, num, validation_rows
from ..style import STATE_COLORS


def prediction_error_figure(data: ReportData) -> go.Figure:
    rows = validation_rows(data).copy()
    errors = [(num(e) if num(e) is not None else 100.0 * (p - m) / m if m else None)
              for e, p, m in zip(rows.get("prediction_error_pct", [None] * len(rows)), rows["predicted_peak_gib"],
                                 rows["peak_allocated_gib"], strict=False)]
    rows["err"] = errors
    rows = rows.dropna(subset=["err"])
    fig = go.Figure(go.Bar(x=[f"#{int(n)}" for n in rows["number"]], y=rows["err"],
                           marker_color=[STATE_COLORS.get(str(s), "#999") for s in rows["state"]],
                           text=[f"{e:+.1f}%" for e in rows["err"]], textposition="outside",
                           hovertext=rows["config_text"], hoverinfo="text"))
    fig.add_hline(0, line_color="#444", line_width=1)
    fig.update_layout(title="Prediction error per trial: (predicted − measured) / measured", height=440,
                      xaxis_title="trial", yaxis_title="prediction error (%)", xaxis={"type": "category"})
    return fig
