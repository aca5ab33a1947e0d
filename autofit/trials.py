"""The study record: what autofit writes on an Optuna study and its trials, defined once.

Every trial carries its outcome (`TrialAttr.STATE`, one of `Outcome`) beside Optuna's own state, because
Optuna's COMPLETE/PRUNED/FAIL cannot tell an out-of-memory result from a predicted or an inferred one, nor a
crash from a timeout. The values are stored as plain strings (trials.csv's `state` column), so a study
written by an earlier autofit reads the same. Modules read and write the record through the names and
functions here; none spells a state or attribute name by hand.
"""

from __future__ import annotations

from enum import Enum
from typing import TYPE_CHECKING, Any, Final, Protocol

if TYPE_CHECKING:
    import optuna
    from optuna.trial import FrozenTrial, TrialState


class Outcome(str, Enum):
    """A trial's outcome, as written to trials.csv (`state`). A probe returns ok, oom, failed or timeout (a
    screened real probe also oom-predicted); the rest are decided around the probes. A str: it equals, hashes
    and prints as its stored value (enum.StrEnum needs Python 3.11)."""

    OK = "ok"  # fits the budget; memory and tokens/s recorded
    OOM = "oom"  # out of memory (measured, or the trace's estimate above the budget)
    OOM_PREDICTED = "oom-predicted"  # a real probe not run: the trace predicts it far above the budget
    OOM_INFERRED = "oom-inferred"  # not probed: at least as large, in every knob, as one that ran out of memory
    INVALID = "invalid"  # breaks a rule of data/rules.yaml; decided before any probe
    FAILED = "failed"  # the probe crashed or raised
    TIMEOUT = "timeout"  # the probe ran past its timeout and was killed
    LOST = "lost"  # its worker died (kill -9, reboot); the configuration is retried once
    INTERRUPTED = "interrupted"  # Ctrl-C during the trial; the configuration may be proposed again

    def __str__(self) -> str:  # "ok", not "Outcome.OK", in messages and files
        return str(self.value)

    def __format__(self, spec: str) -> str:
        return format(str(self.value), spec)


# probed: count toward --trials, never probed again
EVALUATED: Final = frozenset({Outcome.OK, Outcome.OOM, Outcome.FAILED, Outcome.TIMEOUT})
# the configuration is settled: never proposed again (lost and interrupted ones may be)
HELD: Final = EVALUATED | {Outcome.INVALID, Outcome.OOM_PREDICTED, Outcome.OOM_INFERRED}
# does not fit the budget (measured, predicted by the trace, or inferred from a larger one)
OOM_STATES: Final = frozenset({Outcome.OOM, Outcome.OOM_PREDICTED, Outcome.OOM_INFERRED})
# ended without an outcome of its own; the configuration may be probed again
RETRIABLE: Final = frozenset({Outcome.LOST, Outcome.INTERRUPTED})


class TrialAttr:
    """Names of the user attributes autofit sets on a trial."""

    STATE: Final = "autofit_state"  # an Outcome; set last, so a reader that sees it sees the figures
    CONFIG: Final = "config"  # TrainingConfig.to_dict()
    CONFIG_KEY: Final = "config_key"  # TrainingConfig.key(): identifies the configuration across trials
    PROBE: Final = "probe"  # the probe's name (a label)
    ESTIMATED: Final = "estimated"  # True for the trace probe's figures, False for measured ones
    DURATION_S: Final = "duration_s"
    PEAK_MEMORY_GIB: Final = "peak_memory_gib"
    TOKENS_PER_S: Final = "tokens_per_s"
    BREAKDOWN_GIB: Final = "breakdown_gib"  # peak memory by part (weights, optimizer, activations...)
    ERROR: Final = "error"  # why it failed, ran out of memory or is invalid
    DETAILS: Final = "details"  # what the probe adds (e.g. runtime_reserve_bytes, measured_steps_s)
    # real probes: what was measured, and what the trace predicted for the same configuration
    PEAK_ALLOCATED_GIB: Final = "peak_allocated_gib"
    PEAK_RESERVED_GIB: Final = "peak_reserved_gib"
    PREDICTED_PEAK_GIB: Final = "predicted_peak_gib"
    PREDICTION_ERROR_PCT: Final = "prediction_error_pct"
    # several workers on one study (storage.py)
    WORKER: Final = "worker"  # host:pid of the worker running it
    HEARTBEAT_AT: Final = "heartbeat_at"  # time.time() of its worker's last heartbeat
    RETRY_OF: Final = "retry_of"  # an enqueued retry of this lost trial's number
    INFERRED_FROM: Final = "inferred_from"  # an oom-inferred trial: the number of the trial it follows from
    FROM_FILE: Final = "from_file"  # the user's own trainer file, enqueued first (its path)


# keys of ProbeResult.details read back from a trial
class DetailKey:
    RUNTIME_RESERVE_BYTES: Final = "runtime_reserve_bytes"  # cuda probes: device memory outside the allocator
    MEASURED_STEPS_S: Final = "measured_steps_s"  # real probes: each measured step's seconds
    PREDICTED_BREAKDOWN_GIB: Final = "predicted_breakdown_gib"  # screened probes: the trace's breakdown
    PREDICTED_TOKENS_PER_S: Final = "predicted_tokens_per_s"
    TIME_BREAKDOWN_S: Final = "time_breakdown_s"  # trace probe: the step's estimated seconds by part


# what a real probe adds beside its figures (ProbeResult fields of these names), in trials.csv's column order
MEASURED_ATTRS = (TrialAttr.PREDICTED_PEAK_GIB, TrialAttr.PEAK_ALLOCATED_GIB, TrialAttr.PEAK_RESERVED_GIB,
                  TrialAttr.PREDICTION_ERROR_PCT)


class StudyAttr:
    """Names of the user attributes autofit sets on a study (SearchPlan.study_attrs, the advice)."""

    MODEL: Final = "model"  # the model's name (a preset or a Hugging Face reference)
    MODEL_REF: Final = "model_ref"
    TEMPLATE: Final = "template"  # LLaMA-Factory's chat template for the model
    MODEL_CONFIG: Final = "model_config"
    MODEL_PARAMS: Final = "model_params"
    GPU_MEM: Final = "gpu_mem"  # --gpu-mem as the user wrote it
    GPU_MEM_GIB: Final = "gpu_mem_gib"
    USABLE_BUDGET_GIB: Final = "usable_budget_gib"
    RESERVE_GIB: Final = "reserve_gib"
    RESERVE_SOURCE: Final = "reserve_source"
    HEADROOM: Final = "headroom"
    GPU: Final = "gpu"  # the card the throughput figures are for (data/gpus.yaml key)
    GPU_NAME: Final = "gpu_name"
    GPU_SOURCE: Final = "gpu_source"
    GPUS: Final = "gpus"
    PROBE: Final = "probe"
    ESTIMATED: Final = "estimated"
    SPACE: Final = "space"
    PINS: Final = "pins"
    GLOBAL_BATCH: Final = "global_batch"
    SEARCHED_KNOBS: Final = "searched_knobs"
    CANDIDATES: Final = "candidates"
    REQUIREMENTS: Final = "requirements"  # Requirements.to_attrs()
    CONCESSIONS: Final = "concessions"  # what could not be met, and what meets it
    SEQ_LEN_CURVE: Final = "seq_len_curve"  # peak memory against seq_len for the recommended settings
    FROM_FILE: Final = "from_file"  # the user's trainer file (--from)
    FROM_FILE_TRACE: Final = "from_file_trace"  # the trace of that file's configuration as written
    # a resumed study must hold the same search: these must equal the new plan's
    MUST_MATCH_ON_RESUME: Final = (MODEL_CONFIG, GPU_MEM_GIB, USABLE_BUDGET_GIB, PROBE, PINS, GLOBAL_BATCH, GPUS)


class ProbeOutcome(Protocol):
    """What record_result reads of a probe's result (probes/_base.ProbeResult, which imports this module: a
    protocol keeps the import one-way). The measured figures (TrialAttr.PEAK_ALLOCATED_GIB...) are read by name."""

    state: Outcome
    probe: str
    estimated: bool
    duration_s: float
    peak_memory_gib: float | None
    tokens_per_s: float | None
    breakdown_gib: dict[str, float]
    error: str | None
    details: dict[str, Any]


def outcome_of(trial: FrozenTrial) -> Outcome | None:
    """The trial's outcome; None while it runs (or was asked and never told) or for a value this version
    does not know."""
    value = trial.user_attrs.get(TrialAttr.STATE)
    try:
        return None if value is None else Outcome(value)
    except ValueError:
        return None


def is_evaluated(trial: FrozenTrial) -> bool:
    """Probed: counts toward --trials."""
    return outcome_of(trial) in EVALUATED


def set_outcome(trial: optuna.Trial, outcome: Outcome) -> None:
    """Record `outcome` on a trial being run (its figures, if any, first)."""
    trial.set_user_attr(TrialAttr.STATE, outcome.value)


def mark_outcome(study: optuna.Study, trial: FrozenTrial, outcome: Outcome, state: TrialState) -> bool:
    """Record `outcome` on a trial this process does not run (a lost worker's, an orphaned claim) and end it
    in Optuna's `state`. False when another worker ended it first. Uses Optuna's storage API: a FrozenTrial
    cannot be told."""
    storage = study._storage
    storage.set_trial_user_attr(trial._trial_id, TrialAttr.STATE, outcome.value)
    return storage.set_trial_state_values(trial._trial_id, state)


def record_result(trial: optuna.Trial, result: ProbeOutcome, budget_gib: float) -> None:
    """Write a probe's result on its trial: figures first, the outcome last (a reader that sees the outcome
    sees the figures). The memory constraint (peak - budget) is what Optuna's feasibility reads."""
    trial.set_user_attr(TrialAttr.PROBE, result.probe)
    trial.set_user_attr(TrialAttr.ESTIMATED, result.estimated)
    trial.set_user_attr(TrialAttr.DURATION_S, result.duration_s)
    if result.peak_memory_gib is not None:
        trial.set_user_attr(TrialAttr.PEAK_MEMORY_GIB, result.peak_memory_gib)
        trial.set_constraint("memory", result.peak_memory_gib - budget_gib)
    if result.tokens_per_s is not None:
        trial.set_user_attr(TrialAttr.TOKENS_PER_S, result.tokens_per_s)
    if result.breakdown_gib:
        trial.set_user_attr(TrialAttr.BREAKDOWN_GIB, result.breakdown_gib)
    if result.error:
        trial.set_user_attr(TrialAttr.ERROR, result.error[-2000:])
    if result.details:
        trial.set_user_attr(TrialAttr.DETAILS, result.details)
    for key in MEASURED_ATTRS:
        value = getattr(result, key)
        if value is not None:
            trial.set_user_attr(key, value)
    set_outcome(trial, result.state)


def tell(study: optuna.Study, trial: optuna.Trial, outcome: Outcome, values: list[float] | None = None) -> None:
    """End the trial in Optuna: ok -> COMPLETE with `values` (tokens/s, peak GiB); out of memory -> PRUNED
    (the sampler learns from it); anything else, and ok without both figures, -> FAIL (as Optuna would)."""
    from optuna.trial import TrialState

    if outcome == Outcome.OK and values is not None:
        study.tell(trial, values)
    elif outcome in (Outcome.OOM, Outcome.OOM_PREDICTED):
        study.tell(trial, state=TrialState.PRUNED)
    else:
        study.tell(trial, state=TrialState.FAIL)
