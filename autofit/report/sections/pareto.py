"""3. The Pareto front: its figure and its table."""

from __future__ import annotations

from ..data import SHORT, ReportData, truthy
from ..figures.collector import Figures
from ..figures.pareto import pareto_figure
from ..render import fragment, render


def pareto_section(data: ReportData, figures: Figures) -> str:
    figure = figures.html(lambda: pareto_figure(data), "pareto")
    unplotted = data.frame[data.frame["plot_memory_gib"].isna() | data.frame["plot_tokens_per_s"].isna()]
    counts = ", ".join(f"{n} {s}" for s, n in unplotted["state"].value_counts().items()) if len(unplotted) else ""
    rec_number = data.rec_number
    rows = [{"number": int(r["number"]), "recommended": r["number"] == rec_number,
             "knobs": [r[k] for k in data.varying], "estimated": truthy(r.get("estimated")),
             "peak": r["peak_memory_gib"], "tokens": r["tokens_per_s"]} for _, r in data.front.iterrows()]
    return render("pareto.html.j2", figure=fragment(figure), unplotted=counts, rows=rows, varying=data.varying,
                  short=SHORT, mark=data.estimated_rows(data.front))
