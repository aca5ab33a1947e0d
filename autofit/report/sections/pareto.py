"""3. The Pareto front: its figure and its table."""

from __future__ import annotations

import pandas as pd

from ..data import SHORT, ReportData, truthy
from ..figures.collector import Figures
from ..figures.pareto import pareto_figure
from ..markup import esc, note


def pareto_section(data: ReportData, figures: Figures) -> str:
    unplotted = data.frame[data.frame["plot_memory_gib"].isna() | data.frame["plot_tokens_per_s"].isna()]
    notes = ""
    if len(unplotted):
        counts = ", ".join(f"{n} {s}" for s, n in unplotted["state"].value_counts().items())
        notes = note(f"Not plotted (no peak memory or tokens/s to place them at): {esc(counts)}; they are in "
                      "the trial table.")
    table = ""
    if len(data.front):
        rec_number = data.rec.trial.number if data.rec else None
        rows = []
        for _, r in data.front.iterrows():
            star = "★" if r["number"] == rec_number else ""
            knobs = "".join(f"<td>{esc(r[k])}</td>" for k in data.varying)
            rows.append(f"<tr><td>{star} {int(r['number'])}</td>{knobs}"
                        f"<td{estimated_class(r)}>{r['peak_memory_gib']:.3f}</td><td{estimated_class(r)}>{r['tokens_per_s']:,.0f}</td></tr>")
        mark = data.estimated_rows(data.front)
        heads = "".join(f"<th title='{esc(k)}'>{esc(SHORT.get(k, k))}</th>" for k in data.varying)
        table = (f"<h3>The front: each configuration is the fastest found at its memory</h3><div class='tablewrap' "
                 f"style='max-height:none'><table><thead><tr><th>trial</th>{heads}<th>peak GiB{mark}</th>"
                 f"<th>tokens/s{mark}</th></tr></thead><tbody>{''.join(rows)}</tbody></table></div>")
    return (f"<section id='pareto'><h2>Pareto front</h2><p class='muted'>Every probed configuration: the front joins "
            f"those no other fitting configuration beats on both speed and memory. Configurations that do not fit are "
            f"grey crosses at their measured or predicted peak. Hover a point for its configuration.</p>"
            f"{figures.html(lambda: pareto_figure(data), 'pareto')}{notes}{table}</section>")


def estimated_class(row: pd.Series) -> str:
    return ' class="e" title="estimated"' if truthy(row.get("estimated")) else ""
