"""Reading a stored study back: the trial table, the Pareto front and the recommended configuration.
Everything here works from the storage alone, so any worker or `autofit report` can rebuild outputs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import optuna
import pandas as pd

from .knobs import KNOBS, moving_parts
from .requirements import Requirements
from .runtime import runtime_constants
from .trials import MEASURED_ATTRS, DetailKey, Outcome, StudyAttr, TrialAttr, outcome_of
from .units import GIB

MEASURED_COLUMNS = [*MEASURED_ATTRS]
# trials.csv columns that are the trial attribute of the same name
ATTR_COLUMNS = [TrialAttr.PEAK_MEMORY_GIB, TrialAttr.TOKENS_PER_S, TrialAttr.PROBE, TrialAttr.ESTIMATED,
                TrialAttr.DURATION_S, *MEASURED_COLUMNS]
TRIAL_COLUMNS = ["number", "state", *KNOBS, *ATTR_COLUMNS, "runtime_reserve_gib", TrialAttr.ERROR]


def trials_frame(study: optuna.Study) -> pd.DataFrame:
    """One row per finished trial: number, autofit state, every knob, peak memory, tokens/s, probe, duration."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        state = outcome_of(t)
        if state is None:
            continue  # running, or asked but never told
        config = t.user_attrs.get(TrialAttr.CONFIG)
        if not config:  # an orphan of a claim, reaped as lost: it never held a configuration, so nothing to list
            continue
        # cuda probes: device memory outside PyTorch's allocator (context, workspaces), measured in the child
        reserve = t.user_attrs.get(TrialAttr.DETAILS, {}).get(DetailKey.RUNTIME_RESERVE_BYTES)
        rows.append({"number": t.number, "state": state.value, **{k: config.get(k) for k in KNOBS},
                     **{k: t.user_attrs.get(k) for k in ATTR_COLUMNS},
                     "runtime_reserve_gib": None if reserve is None else reserve / GIB,
                     "error": t.user_attrs.get(TrialAttr.ERROR)})
    return pd.DataFrame(rows, columns=TRIAL_COLUMNS)


def pareto_frame(study: optuna.Study, frame: pd.DataFrame | None = None) -> pd.DataFrame:
    """The Pareto front (Optuna's best_trials: non-dominated feasible trials), by ascending peak memory: rows of
    `frame` (the study's trials_frame, with any columns a caller added; built when not given)."""
    numbers = {t.number for t in study.best_trials}
    frame = trials_frame(study) if frame is None else frame
    front = frame[frame["number"].isin(numbers) & (frame["state"] == Outcome.OK.value)]
    return front.sort_values(["peak_memory_gib", "tokens_per_s"], ascending=[True, False]).reset_index(drop=True)


@dataclass
class Recommendation:
    trial: optuna.trial.FrozenTrial
    config: dict[str, Any]
    peak_memory_gib: float
    tokens_per_s: float
    breakdown_gib: dict[str, float]
    estimated: bool
    probe: str
    # why this one: "the fastest", or "simplest within X% of the fastest (trial N, ...)"
    reason: str = ""
    fastest_trial: int | None = None  # the fastest trial meeting the requirements, when another was chosen
    tolerance: float = 0.0  # the share of the fastest's tokens/s counted as equally fast


def _tolerance(fastest: optuna.trial.FrozenTrial) -> float:
    """The noise of the fastest trial's tokens/s: the stated share for estimates, and for measured probes the
    larger of that and its own step-time spread."""
    share = float(runtime_constants()["simplest_within"])
    steps = (fastest.user_attrs.get(TrialAttr.DETAILS) or {}).get(DetailKey.MEASURED_STEPS_S)
    if not fastest.user_attrs.get(TrialAttr.ESTIMATED) and steps and len(steps) > 1:
        ordered = sorted(steps)
        median = ordered[len(ordered) // 2]
        if median > 0:
            share = max(share, (ordered[-1] - ordered[0]) / median)
    return share


def _parts_text(config: dict[str, Any]) -> str:
    parts = moving_parts(config)
    return ", ".join(f"{k}={config[k]}" for k in parts) or "none"


def feasible_trials(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """Completed trials that fit the budget."""
    return [t for t in study.get_trials(deepcopy=False)
            if t.state == optuna.trial.TrialState.COMPLETE and outcome_of(t) == Outcome.OK
            and all(v <= 0 for v in t.constraints.values())]


def recommend(study: optuna.Study) -> Recommendation | None:
    """The simplest of the fastest configurations that meet the requirements: among feasible trials meeting the
    stored requirements (conceded defaults included), those within the noise of the fastest, the one with the
    fewest moving parts (knobs.yaml); ties go to higher tokens/s, then lower peak memory. A study without stored
    requirements (older autofit) takes the fastest feasible trial."""
    req = Requirements.from_attrs(study.user_attrs.get(StudyAttr.REQUIREMENTS))
    gpus = study.user_attrs.get(StudyAttr.GPUS, 1)
    feasible = feasible_trials(study)
    if req is not None:
        pinned = Requirements(values=req.pins(), sources=req.sources, global_batch=req.global_batch)
        feasible = [t for t in feasible if pinned.meets(t.user_attrs[TrialAttr.CONFIG], gpus)]
    if not feasible:
        return None
    fastest = max(feasible, key=lambda t: (t.values[0], -t.values[1]))
    best, reason, tolerance = fastest, "the fastest configuration that meets the requirements", 0.0
    if req is not None:
        tolerance = _tolerance(fastest)
        close = [t for t in feasible if t.values[0] >= fastest.values[0] * (1 - tolerance)]
        best = min(close, key=lambda t: (sum(moving_parts(t.user_attrs[TrialAttr.CONFIG]).values()), -t.values[0],
                                         t.values[1]))
        if best.number != fastest.number:
            gap = 1 - best.values[0] / fastest.values[0]
            gap_text = f"{gap:.1%}" if gap >= 0.001 else "less than 0.1%"
            reason = (f"the simplest within {tolerance:.0%} of the fastest (the estimate's noise): trial "
                      f"{fastest.number} is {gap_text} faster but adds "
                      f"{_parts_text(fastest.user_attrs[TrialAttr.CONFIG])}; "
                      f"this one adds {_parts_text(best.user_attrs[TrialAttr.CONFIG])}")
        else:
            reason += (f", and nothing within {tolerance:.0%} of it is simpler "
                       f"(moving parts: {_parts_text(best.user_attrs[TrialAttr.CONFIG])})")
    return Recommendation(trial=best, config=best.user_attrs[TrialAttr.CONFIG], peak_memory_gib=best.values[1],
                          tokens_per_s=best.values[0],
                          breakdown_gib=best.user_attrs.get(TrialAttr.BREAKDOWN_GIB, {}),
                          estimated=bool(best.user_attrs.get(TrialAttr.ESTIMATED)),
                          probe=best.user_attrs.get(TrialAttr.PROBE, ""),
                          reason=reason, fastest_trial=None if best.number == fastest.number else fastest.number,
                          tolerance=tolerance)
