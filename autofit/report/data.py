"""The data step: everything the report reads from the study (trials frame, front, recommendation, knobs that
vary, timing), with no drawing. Figures and sections take a ReportData."""

from __future__ import annotations

import html
import json
import math
from dataclasses import dataclass, field
from typing import Any

import optuna
import pandas as pd

from ..knobs import KNOBS, report_labels
from ..results import Recommendation, pareto_frame, recommend, trials_frame
from ..trials import DetailKey, StudyAttr, TrialAttr

SHORT = report_labels()  # knob -> column label (data/knobs.yaml `label:`)


@dataclass
class ReportData:
    study: optuna.Study
    attrs: dict[str, Any]
    trials: list[optuna.trial.FrozenTrial]
    frame: pd.DataFrame  # results.trials_frame, plus columns: plot_memory_gib, plot_tokens_per_s, config_text
    front: pd.DataFrame
    rec: Recommendation | None
    budget: float
    varying: list[str]  # knobs with more than one value among the trials
    constant: dict[str, Any]  # knobs with one value in every trial
    by_number: dict[int, optuna.trial.FrozenTrial] = field(default_factory=dict)

    @property
    def rec_number(self) -> int | None:
        """The recommended trial's number, or None."""
        return self.rec.trial.number if self.rec else None

    @property
    def state_counts(self) -> list[tuple[str, int]]:
        """(state, trials) over every trial, most common first: the header's and the trials table's summary."""
        return [(str(s), int(n)) for s, n in self.frame["state"].value_counts().items()] if len(self.frame) else []

    @property
    def all_estimated(self) -> bool:
        values = [v for v in self.frame["estimated"] if v is not None and not isnan(v)]
        return all(map(bool, values)) if values else self.study_estimated

    @property
    def study_estimated(self) -> bool:
        return bool(self.attrs.get(StudyAttr.ESTIMATED))

    def estimated_rows(self, rows: pd.DataFrame) -> str:
        """'' when no row is estimated, ' (estimated)' when all are, ' (partly estimated)' otherwise."""
        est = rows["estimated"].map(truthy) if len(rows) else pd.Series([], dtype=bool)
        if not len(est):
            return " (estimated)" if self.study_estimated else ""
        if est.all():
            return " (estimated)"
        return " (partly estimated)" if est.any() else ""


def load_data(study: optuna.Study) -> ReportData:
    attrs = dict(study.user_attrs)
    trials = study.get_trials(deepcopy=False)
    by_number = {t.number: t for t in trials}
    frame = trials_frame(study)
    budget = float(attrs.get(StudyAttr.USABLE_BUDGET_GIB) or 0.0)

    def memory(row) -> float | None:
        for key in ("peak_memory_gib", "predicted_peak_gib", "peak_allocated_gib"):
            value = num(row.get(key))
            if value is not None:
                return value
        return None

    def tokens(row) -> float | None:
        value = num(row.get("tokens_per_s"))
        if value is not None:
            return value
        details = by_number[row["number"]].user_attrs.get(TrialAttr.DETAILS) or {}
        value = details.get(DetailKey.PREDICTED_TOKENS_PER_S)
        return float(value) if value is not None else None

    if len(frame):
        frame["plot_memory_gib"] = [memory(r) for _, r in frame.iterrows()]
        frame["plot_tokens_per_s"] = [tokens(r) for _, r in frame.iterrows()]
    else:
        frame["plot_memory_gib"] = pd.Series(dtype=float)
        frame["plot_tokens_per_s"] = pd.Series(dtype=float)
    varying, constant = [], {}
    for knob in KNOBS:
        values = frame[knob].dropna().map(str).unique() if len(frame) else []
        if len(values) > 1:
            varying.append(knob)
        elif len(values) == 1:
            constant[knob] = frame[knob].dropna().iloc[0]
    frame["config_text"] = [config_text(r) for _, r in frame.iterrows()] if len(frame) else []
    front = pareto_frame(study, frame)
    return ReportData(study=study, attrs=attrs, trials=trials, frame=frame, front=front,
                 rec=recommend(study), budget=budget, varying=varying, constant=constant, by_number=by_number)


def isnan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)


def truthy(value: Any) -> bool:
    """bool() that reads a missing value (None, NaN) as False."""
    return value is not None and not isnan(value) and bool(value)


def num(value: Any) -> float | None:
    """The value as a float (numbers and numeric text), or None when missing, NaN or not a number."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number


def config_text(row: pd.Series) -> str:
    """Hover text: the trial, its outcome and its full configuration (escaped: plotly renders hover as HTML)."""
    lines = [f"<b>trial {int(row['number'])}</b>: {html.escape(str(row['state']))}"]
    mem, tps = num(row.get("plot_memory_gib")), num(row.get("plot_tokens_per_s"))
    est = " (estimated)" if truthy(row.get("estimated")) else ""
    if mem is not None:
        lines.append(f"peak {mem:.3f} GiB{est}")
    if tps is not None:
        lines.append(f"{tps:,.0f} tokens/s{est}")
    for knob in KNOBS:
        if knob in row and row[knob] is not None and not isnan(row[knob]):
            lines.append(f"{html.escape(knob)} = {html.escape(str(row[knob]))}")
    if isinstance(row.get("error"), str) and row["error"]:
        text = row["error"]
        lines.append("<i>" + html.escape(text[:120] + ("..." if len(text) > 120 else "")) + "</i>")
    return "<br>".join(lines)


def study_timing(data: ReportData) -> dict[str, Any]:
    starts = [t.datetime_start for t in data.trials if t.datetime_start is not None]
    ends = [t.datetime_complete for t in data.trials if t.datetime_complete is not None]
    probe_s = sum(float(t.user_attrs.get(TrialAttr.DURATION_S) or 0.0) for t in data.trials)
    first = min(starts) if starts else None
    last = max(ends) if ends else None
    return {"first": first, "last": last, "span_s": (last - first).total_seconds() if first and last else None,
            "probe_s": probe_s}




def estimated_mark(trials: list[optuna.trial.FrozenTrial]) -> str:
    """' (estimated)' for a figure drawn from `trials` when every one of them is an estimate, else ''."""
    return " (estimated)" if all(t.user_attrs.get(TrialAttr.ESTIMATED) for t in trials) else ""


def complete_trials(data: ReportData) -> list[optuna.trial.FrozenTrial]:
    return [t for t in data.trials if t.state == optuna.trial.TrialState.COMPLETE and t.values]


def searched_params(data: ReportData, trials: list[optuna.trial.FrozenTrial]) -> list[str]:
    """Parameters that take at least two values among `trials`."""
    values: dict[str, set] = {}
    for t in trials:
        for k, v in t.params.items():
            values.setdefault(k, set()).add(json.dumps(v))
    return [k for k in KNOBS if len(values.get(k, ())) > 1]


def validation_rows(data: ReportData) -> pd.DataFrame:
    frame = data.frame
    if "predicted_peak_gib" not in frame or "peak_allocated_gib" not in frame:
        return frame.iloc[0:0]
    return frame.dropna(subset=["predicted_peak_gib", "peak_allocated_gib"])
