"""report.html: one self-contained page (plotly's JS inlined, no network) to review a search.

This is the simple report: header, recommendation, Pareto front with the budget line, the recommended
configuration's memory breakdown, and every trial. Built from the stored study alone.
"""

from __future__ import annotations

import html
from datetime import datetime, timezone

import optuna
import plotly.graph_objects as go

from .results import pareto_frame, recommend, state_counts, trials_frame

_CSS = """body{font-family:system-ui,sans-serif;margin:2rem;max-width:1200px;color:#222}
table{border-collapse:collapse;font-size:.85rem}td,th{border:1px solid #ddd;padding:.25rem .5rem;text-align:right}
th{background:#f4f4f4}.est{color:#a15c00;font-weight:600}code,pre{background:#f6f6f6;padding:.2rem}"""


def _pareto_figure(study: optuna.Study, budget_gib: float, estimated: bool) -> go.Figure:
    frame = trials_frame(study)
    front = pareto_frame(study)
    rec = recommend(study)
    mark = " (estimated)" if estimated else ""
    fig = go.Figure()

    def hover(rows):
        return ["<br>".join(f"{k}={r[k]}" for k in frame.columns if k not in ("error",)) for _, r in rows.iterrows()]

    ok = frame[frame["state"] == "ok"]
    bad = frame[(frame["state"] != "ok") & frame["peak_memory_gib"].notna()]
    fig.add_trace(go.Scatter(x=bad["peak_memory_gib"], y=bad["tokens_per_s"].fillna(0), mode="markers",
                             name="out of memory / failed", marker={"color": "#bbbbbb"}, text=hover(bad),
                             hoverinfo="text"))
    fig.add_trace(go.Scatter(x=ok["peak_memory_gib"], y=ok["tokens_per_s"], mode="markers", name="fits",
                             marker={"color": "#4c78a8"}, text=hover(ok), hoverinfo="text"))
    fig.add_trace(go.Scatter(x=front["peak_memory_gib"], y=front["tokens_per_s"], mode="lines+markers",
                             name="Pareto front", line={"shape": "hv", "color": "#f58518"}, text=hover(front),
                             hoverinfo="text"))
    if rec is not None:
        fig.add_trace(go.Scatter(x=[rec.peak_memory_gib], y=[rec.tokens_per_s], mode="markers", name="recommended",
                                 marker={"symbol": "star", "size": 16, "color": "#e45756"}))
    fig.add_vline(x=budget_gib, line_dash="dash", annotation_text=f"usable budget {budget_gib:.2f} GiB")
    fig.update_layout(title=f"Throughput against peak GPU memory{mark}", xaxis_title=f"peak GPU memory (GiB){mark}",
                      yaxis_title=f"tokens/s{mark}", height=480)
    return fig


def _breakdown_figure(breakdown: dict[str, float], estimated: bool) -> go.Figure:
    mark = " (estimated)" if estimated else ""
    fig = go.Figure([go.Bar(name=k, x=["recommended"], y=[v]) for k, v in breakdown.items()])
    fig.update_layout(barmode="stack", title=f"Memory breakdown at the peak{mark}", yaxis_title="GiB", height=400)
    return fig


def render_report(study: optuna.Study) -> str:
    attrs = study.user_attrs
    estimated = bool(attrs.get("estimated"))
    est = '<span class="est">estimated</span>' if estimated else "measured"
    rec = recommend(study)
    counts = ", ".join(f"{k}: {v}" for k, v in state_counts(study).items())
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>autofit: {html.escape(attrs['model'])} on "
             f"{html.escape(attrs['gpu_mem'])}</title><style>{_CSS}</style></head><body>",
             f"<h1>autofit search: {html.escape(attrs['model'])} on {html.escape(attrs['gpu_mem'])}</h1>",
             f"<p>{attrs['model_params']:,} parameters; usable budget {attrs['usable_budget_gib']:.2f} GiB "
             f"(reserve {attrs['reserve_gib']:.2f} GiB {attrs['reserve_source']}, headroom {attrs['headroom']:.0%}); "
             f"throughput for {html.escape(attrs['gpu_name'])} ({attrs['gpu_source']}); probe "
             f"<b>{html.escape(attrs['probe'])}</b>: numbers are {est}. Trials: {counts}. "
             f"Built {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC.</p>"]
    figures = [_pareto_figure(study, attrs["usable_budget_gib"], estimated)]
    if rec is not None:
        knobs = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in rec.config.items())
        parts.append(f"<h2>Recommended configuration</h2><p>peak {rec.peak_memory_gib:.2f} GiB of "
                     f"{attrs['usable_budget_gib']:.2f} GiB usable, {rec.tokens_per_s:,.0f} tokens/s ({est}), "
                     f"trial {rec.trial.number}.</p><table>{knobs}</table>")
        figures.append(_breakdown_figure(rec.breakdown_gib, estimated))
    else:
        parts.append("<h2>No configuration fits the budget</h2>")
    for i, fig in enumerate(figures):
        parts.append(fig.to_html(full_html=False, include_plotlyjs=(i == 0)))
    table = trials_frame(study).to_html(index=False, na_rep="", float_format=lambda v: f"{v:.3f}")
    parts.append(f"<h2>All trials</h2><p>peak_memory_gib and tokens_per_s are {est}.</p>{table}</body></html>")
    return "\n".join(parts)
