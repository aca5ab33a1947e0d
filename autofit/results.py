"""Reading a stored study back: the trial table, the Pareto front and the recommended configuration.
Everything here works from the storage alone, so any worker or `autofit report` can rebuild outputs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import optuna
import pandas as pd

from .knobs import KNOBS
from .sampler import STATE_ATTR
from .units import GIB

MEASURED_COLUMNS = ["predicted_peak_gib", "peak_allocated_gib", "peak_reserved_gib", "prediction_error_pct"]
TRIAL_COLUMNS = ["number", "state", *KNOBS, "peak_memory_gib", "tokens_per_s", "probe", "estimated",
                 "duration_s", *MEASURED_COLUMNS, "runtime_reserve_gib", "error"]


def trials_frame(study: optuna.Study) -> pd.DataFrame:
    """One row per finished trial: number, autofit state, every knob, peak memory, tokens/s, probe, duration."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        state = t.user_attrs.get(STATE_ATTR)
        if state is None:
            continue  # running, or asked but never told
        config = t.user_attrs.get("config", {})
        # cuda probes: device memory outside PyTorch's allocator (context, workspaces), measured in the child
        reserve = t.user_attrs.get("details", {}).get("runtime_reserve_bytes")
        rows.append({"number": t.number, "state": state, **{k: config.get(k) for k in KNOBS},
                     "peak_memory_gib": t.user_attrs.get("peak_memory_gib"),
                     "tokens_per_s": t.user_attrs.get("tokens_per_s"), "probe": t.user_attrs.get("probe"),
                     "estimated": t.user_attrs.get("estimated"), "duration_s": t.user_attrs.get("duration_s"),
                     **{k: t.user_attrs.get(k) for k in MEASURED_COLUMNS},
                     "runtime_reserve_gib": None if reserve is None else reserve / GIB, "error": t.user_attrs.get("error")})
    return pd.DataFrame(rows, columns=TRIAL_COLUMNS)


def pareto_frame(study: optuna.Study) -> pd.DataFrame:
    """The Pareto front (Optuna's best_trials: non-dominated feasible trials), by ascending peak memory."""
    numbers = {t.number for t in study.best_trials}
    frame = trials_frame(study)
    front = frame[frame["number"].isin(numbers) & (frame["state"] == "ok")]
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


def recommend(study: optuna.Study) -> Recommendation | None:
    """The feasible trial with the highest tokens/s; ties go to the lower peak memory."""
    feasible = [t for t in study.get_trials(deepcopy=False)
                if t.state == optuna.trial.TrialState.COMPLETE and t.user_attrs.get(STATE_ATTR) == "ok"
                and all(v <= 0 for v in t.constraints.values())]
    if not feasible:
        return None
    best = max(feasible, key=lambda t: (t.values[0], -t.values[1]))
    return Recommendation(trial=best, config=best.user_attrs["config"], peak_memory_gib=best.values[1],
                          tokens_per_s=best.values[0], breakdown_gib=best.user_attrs.get("breakdown_gib", {}),
                          estimated=bool(best.user_attrs.get("estimated")), probe=best.user_attrs.get("probe", ""))


def state_counts(study: optuna.Study) -> dict[str, int]:
    frame = trials_frame(study)
    return {str(k): int(v) for k, v in frame["state"].value_counts().items()}
