"""8. When real probes ran: predicted against measured peak memory."""

from __future__ import annotations

import pandas as pd

from ..data import ReportData, validation_rows
from ..figures.collector import Figures
from ..figures.prediction_error import prediction_error_figure
from ..figures.validation import validation_figure
from ..markup import note


def validation_section(data: ReportData, figures: Figures) -> str:
    rows = validation_rows(data)
    if rows.empty:
        if data.all_estimated:
            return ("<section id='validation'><h2>Predicted against measured</h2>" + note(
                "No real probe ran in this search: every number above is an estimate of the trace probe. Run with "
                "<code>--probe cuda</code> (or <code>cpu</code>) to measure, with the trace's prediction kept "
                "beside each measurement.") + "</section>")
        return ("<section id='validation'><h2>Predicted against measured</h2>"
                + note("The real probes recorded no trace prediction to compare with.") + "</section>")
    errors = rows["prediction_error_pct"].dropna().astype(float) if "prediction_error_pct" in rows else \
        pd.Series([], dtype=float)
    summary = ""
    if len(errors):
        summary = (f"<p>{len(rows)} measured trials; prediction error median {errors.median():+.1f}%, "
                   f"worst {errors.abs().max():.1f}% (negative: the trace predicted less than the run used).</p>")
    return ("<section id='validation'><h2>Predicted against measured</h2><p class='muted'>Each real probe kept the "
            "trace probe's prediction for its configuration: how far the estimate was from "
            "torch.cuda.max_memory_allocated.</p>" + summary
            + f"<div class='grid2'>{figures.html(lambda: validation_figure(data), 'validation')}"
            f"{figures.html(lambda: prediction_error_figure(data), 'prediction error')}</div></section>")
