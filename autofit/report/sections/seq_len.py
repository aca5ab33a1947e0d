"""How long a sequence each strategy takes before it runs out of memory (stored curves, autofit/advice.py)."""

from __future__ import annotations

from typing import Any

from ...advice import stored_curves, stored_requirements
from ..data import ReportData
from ..figures.collector import Figures
from ..figures.seq_len import seq_len_figure
from ..render import fragment, render


def how_known(curve: dict[str, Any]) -> str:
    confirmed = curve.get("confirmed") or "estimated"
    if confirmed == "estimated":
        return "estimated (trace)"
    word = "measured: the real probe agrees" if confirmed == "measured" else \
        f"measured: moved from the trace's {curve.get('trace_longest_seq_len')}"
    return f"{word} ({curve.get('measured_probes')})"


def seq_len_section(data: ReportData, figures: Figures) -> str:
    if stored_requirements(data.attrs) is None:
        return ""
    return render("seq-len.html.j2", figure=fragment(figures.html(lambda: seq_len_figure(data), "seq-len")),
                  curves=stored_curves(data.attrs), how_known=how_known)
