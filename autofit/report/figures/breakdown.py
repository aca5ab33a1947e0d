"""Peak memory by kind (weights, gradients, ...) for each Pareto configuration."""

from __future__ import annotations

import plotly.graph_objects as go

from ...memory_categories import CATEGORIES
from ...trials import DetailKey, TrialAttr
from ..data import ReportData
from ..markup import note
from ..style import CATEGORY_COLORS
from .common import budget_line


def breakdown_figure(data: ReportData) -> go.Figure | str:
    if data.front.empty:
        return note("No configuration fits the budget, so there is no front to break down.")
    labels, breakdowns, texts, any_est = [], [], [], []
    rec_number = data.rec_number
    for _, row in data.front.iterrows():
        trial = data.by_number[int(row["number"])]
        breakdown = trial.user_attrs.get(TrialAttr.BREAKDOWN_GIB) or {}
        estimated = bool(trial.user_attrs.get(TrialAttr.ESTIMATED))
        if not breakdown:
            breakdown = (trial.user_attrs.get(TrialAttr.DETAILS) or {}).get(DetailKey.PREDICTED_BREAKDOWN_GIB) or {}
            estimated = True
        if not breakdown:
            continue
        labels.append(f"#{int(row['number'])}{' ★' if row['number'] == rec_number else ''}")
        breakdowns.append(breakdown)
        texts.append(row["config_text"])
        any_est.append(estimated)
    if not labels:
        return note("The probes of the front configurations recorded no memory breakdown.")
    mark = " (estimated)" if all(any_est) else (" (partly estimated)" if any(any_est) else "")
    categories = [c for c in CATEGORIES if any(b.get(c) for b in breakdowns)]
    categories += sorted({k for b in breakdowns for k in b} - set(CATEGORIES))
    fig = go.Figure()
    for cat in categories:
        fig.add_trace(go.Bar(name=cat, x=labels, y=[b.get(cat, 0.0) for b in breakdowns],
                             marker_color=CATEGORY_COLORS.get(cat, "#bbb"),
                             hovertemplate=f"{cat}: %{{y:.3f}} GiB<br>%{{customdata}}<extra></extra>",
                             customdata=texts))
    budget_line(fig, data.budget, axis="y", annotation_position="top left")
    fig.update_layout(barmode="stack", height=460, title=f"Peak memory by kind, Pareto configurations{mark}",
                      xaxis_title="Pareto configuration (trial; ★ recommended), by increasing peak memory",
                      yaxis_title=f"GiB at the peak{mark}", legend={"orientation": "h", "y": -0.22},
                      xaxis={"type": "category"})
    return fig
