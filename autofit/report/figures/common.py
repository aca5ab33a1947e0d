"""Helpers shared by several figures."""

from __future__ import annotations

import math
from typing import Any

import plotly.graph_objects as go


def budget_line(fig: go.Figure, budget: float, axis: str = "x", log: bool = False, **kwargs) -> None:
    if budget <= 0:
        return
    add = fig.add_vline if axis == "x" else fig.add_hline
    text = f"usable budget {budget:.2f} GiB"
    if not log:
        add(budget, line_dash="dash", line_color="#d62728", line_width=1.5, annotation_text=text,
            annotation_font_color="#d62728", **kwargs)
        return
    # on a log axis a shape takes the value but an annotation takes its log10
    add(budget, line_dash="dash", line_color="#d62728", line_width=1.5)
    fig.add_annotation(text=text, font_color="#d62728", showarrow=False, xref="paper", x=0, xanchor="left",
                       y=math.log10(budget), yref=axis, yanchor="bottom")


def knob_positions(values: list[Any]) -> list[Any]:
    try:
        return sorted(set(values), key=float)
    except (TypeError, ValueError):
        return sorted(set(values), key=str)
