"""6. History: hypervolume and best tokens/s over trials, a timeline of probes by state."""

from __future__ import annotations

from ..data import ReportData
from ..figures.collector import Figures
from ..figures.history import history_figure
from ..figures.hypervolume import hypervolume_figure
from ..figures.timeline import timeline_figure
from ..render import fragment, render


def history_section(data: ReportData, figures: Figures) -> str:
    hypervolume = figures.html(lambda: hypervolume_figure(data), "hypervolume")
    history = figures.html(lambda: history_figure(data), "history")
    timeline = figures.html(lambda: timeline_figure(data), "timeline")
    return render("history.html.j2", hypervolume=fragment(hypervolume), history=fragment(history),
                  timeline=fragment(timeline))
