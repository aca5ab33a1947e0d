"""Where the step time goes, by part, for each Pareto configuration (the trace probe's performance model)."""

from __future__ import annotations

import plotly.graph_objects as go

from ...trials import DetailKey, TrialAttr
from ..data import ReportData, num
from ..markup import note
from ..style import TIME_COLORS


def time_figure(data: ReportData) -> go.Figure | str:
    """Estimated milliseconds per 1,000 tokens, by part, for each Pareto configuration."""
    if data.front.empty:
        return note("No configuration fits the budget, so there is no front to break down.")
    labels, per_k, texts = [], [], []
    rec_number = data.rec_number
    for _, row in data.front.iterrows():
        trial = data.by_number[int(row["number"])]
        parts = (trial.user_attrs.get(TrialAttr.DETAILS) or {}).get(DetailKey.TIME_BREAKDOWN_S) or {}
        tokens = (num(row.get("per_device_train_batch_size")) or 0) * (num(row.get("seq_len")) or 0) * \
                 (num(row.get("gradient_accumulation_steps")) or 0)
        if not parts or not tokens:
            continue
        labels.append(f"#{int(row['number'])}{' ★' if row['number'] == rec_number else ''}")
        per_k.append({k: 1000.0 * 1000.0 * v / tokens for k, v in parts.items()})
        texts.append(row["config_text"])
    if not labels:
        return note("The probes of the front configurations recorded no time breakdown (only the trace probe "
                     "estimates one).")
    fig = go.Figure()
    for part in [p for p in TIME_COLORS if any(b.get(p) for b in per_k)]:
        fig.add_trace(go.Bar(name=part.replace("_", "/"), x=labels, y=[b.get(part, 0.0) for b in per_k],
                             marker_color=TIME_COLORS[part], customdata=texts,
                             hovertemplate=f"{part}: %{{y:.2f}} ms per 1k tokens<br>%{{customdata}}<extra></extra>"))
    fig.update_layout(barmode="stack", height=440, title="Where the step time goes, Pareto configurations (estimated)",
                      xaxis_title="Pareto configuration (trial; ★ recommended), by increasing peak memory",
                      yaxis_title="ms per 1,000 tokens per GPU (estimated)", legend={"orientation": "h", "y": -0.22},
                      xaxis={"type": "category"})
    return fig
