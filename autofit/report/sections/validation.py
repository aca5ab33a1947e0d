"""8. When real probes ran: predicted against measured peak memory."""

from __future__ import annotations

import pandas as pd

from ..data import ReportData, validation_rows
from ..figures.collector import Figures
from ..figures.prediction_error import prediction_error_figure
from ..figures.validation import validation_figure
from ..render import fragment, render


def validation_section(data: ReportData, figures: Figures) -> str:
    rows = validation_rows(data)
    if rows.empty:
        return render("validation.html.j2", measured=0, all_estimated=data.all_estimated)
    errors = rows["prediction_error_pct"].dropna().astype(float) if "prediction_error_pct" in rows else \
        pd.Series([], dtype=float)
    validation = figures.html(lambda: validation_figure(data), "validation")
    prediction_error = figures.html(lambda: prediction_error_figure(data), "prediction error")
    return render("validation.html.j2", measured=len(rows), all_estimated=data.all_estimated,
                  median_error=errors.median() if len(errors) else None,
                  worst_error=errors.abs().max() if len(errors) else None,
                  validation=fragment(validation), prediction_error=fragment(prediction_error))
