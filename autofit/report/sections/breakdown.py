"""4. Memory breakdown and time breakdown of the Pareto configurations."""

from __future__ import annotations

from ..data import ReportData
from ..figures.breakdown import breakdown_figure
from ..figures.collector import Figures
from ..figures.step_time import time_figure
from ..render import fragment, render


def breakdown_section(data: ReportData, figures: Figures) -> str:
    return render("breakdown.html.j2", figure=fragment(figures.html(lambda: breakdown_figure(data), "breakdown")))


def time_section(data: ReportData, figures: Figures) -> str:
    return render("time.html.j2", figure=fragment(figures.html(lambda: time_figure(data), "time")))
