"""Small HTML fragments shared by the sections: escaping, badges, state chips, notes, number formats."""

from __future__ import annotations

import html
from typing import Any

from .style import STATE_COLORS


EST_TITLE = ("from the trace probe: the real model's training step on fake tensors, with a performance model of "
             "the card for tokens/s. Not a measurement")


def esc(value: Any) -> str:
    return html.escape(str(value))


def badge(estimated: bool) -> str:
    if estimated:
        return f'<span class="badge est" title="{esc(EST_TITLE)}">estimated</span>'
    return '<span class="badge meas" title="measured by a real training run">measured</span>'


def state_chip(state: str) -> str:
    color = STATE_COLORS.get(state, "#666")
    text_color = "#333" if state in ("oom-predicted", "oom-inferred", "lost") else "#fff"
    return f'<span class="badge state" style="background:{color};color:{text_color}">{esc(state)}</span>'


def note(text: str, error: bool = False) -> str:
    return f'<div class="note{" error" if error else ""}">{text}</div>'


def fmt_count(n: float | None) -> str:
    if n is None:
        return "?"
    for size, unit in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K")):
        if abs(n) >= size:
            return f"{n / size:.2f} {unit}"
    return f"{n:.0f}"


def fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    if minutes:
        return f"{minutes} min {secs:02d} s"
    return f"{secs} s"


def si(value: float) -> str:
    """1590 -> 1.59k, 2235449 -> 2.24M."""
    for size, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= size:
            return f"{value / size:.3g}{unit}"
    return f"{value:.3g}"
