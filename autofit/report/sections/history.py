"""6. History: hypervolume and best tokens/s over trials, a timeline of probes by state."""

from __future__ import annotations

from ..data import ReportData
from ..figures.collector import Figures
from ..figures.history import history_figure
from ..figures.hypervolume import hypervolume_figure
from ..figures.timeline import timeline_figure


def history_section(data: ReportData, figures: Figures) -> str:
    return ("<section id='history'><h2>History</h2><p class='muted'>How the search got there: the area the front "
            "dominates (0 tokens/s to the usable budget) and the best throughput over trials, then when each probe "
            "ran and how it ended.</p>"
            f"<div class='grid2'>{figures.html(lambda: hypervolume_figure(data), 'hypervolume')}"
            f"{figures.html(lambda: history_figure(data), 'history')}</div>"
            f"{figures.html(lambda: timeline_figure(data), 'timeline')}</section>")
