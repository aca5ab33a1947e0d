"""The search: an Optuna study over the candidates, one probe per trial, every outcome stored."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any, Literal
from collections.abc import Callable

import optuna
from optuna.trial import TrialState

from .budget import Budget
from .candidates import CandidateSet, build_candidates, drop_unsupported_attention
from .errors import AutofitError
from .gpus import GpuSpec
from .knobs import TrainingConfig
from .models import ModelSpec
from .probes import Probe, ProbeContext, ProbeResult, TraceProbe
from .rules import violated_rule
from .sampler import AutofitSampler
from .space import SearchSpace
from .storage import Heartbeat, make_storage, reap_lost_trials, study_lock, worker_id
from .trials import Outcome, StudyAttr, TrialAttr, is_evaluated, mark_outcome, record_result, set_outcome, tell
from .units import GIB
from .validation import mask_url

DIRECTIONS: list[Literal["maximize", "minimize"]] = ["maximize", "minimize"]  # tokens/s, peak GPU memory (GiB)


@dataclass
class SearchPlan:
    """Everything a search needs, validated."""

    model: ModelSpec
    space: SearchSpace  # pins applied
    pins: dict[str, Any]
    budget: Budget
    gpu: GpuSpec
    gpu_source: str  # named | detected | default for the budget
    probe: Probe
    trials: int
    storage: str
    study_name: str
    timeout_s: float | None = None
    seed: int | None = None
    gpus: int = 1
    global_batch: int | None = None
    candidates: CandidateSet = field(init=False)
    notes: list[str] = field(init=False, default_factory=list)  # what was left out of the space, and why

    def __post_init__(self):
        if self.trials < 1:
            raise AutofitError("--trials must be at least 1")
        if self.gpus < 1:
            raise AutofitError("--gpus must be at least 1")
        if self.global_batch is not None and self.global_batch < 1:
            raise AutofitError("--global-batch must be at least 1")
        can = self.probe.capabilities
        # what the probe cannot tell apart is held (the user's --set pins win): device-only knobs at the space's
        # default, unmeasurable ones at the value it can measure
        held = {k: self.space.defaults[k] for k in sorted(can.unvaried_knobs()) if k in self.space.defaults}
        held.update(can.fixed_knobs)
        held = {k: v for k, v in held.items() if k not in self.pins}
        if held:
            self.space = self.space.pinned(held)
        if can.max_params is not None and self.model.params > can.max_params:
            raise AutofitError(f"--probe {self.probe.name} runs real training steps on the {can.device.upper()} and "
                               f"is meant for small models (up to {can.max_params / 1e9:g}B parameters); "
                               f"{self.model.name} has {self.model.params / 1e9:.1f}B parameters: use --probe trace "
                               f"(or cuda on a GPU)")
        self.space, left_out = drop_unsupported_attention(self.space, self.pins, self.model)
        if left_out:
            self.notes.append(left_out)
        self.candidates = build_candidates(self.space, self.model.facts, gpus=self.gpus,
                                           global_batch=self.global_batch,
                                           ga_pinned="gradient_accumulation_steps" in self.pins)

    @property
    def context(self) -> ProbeContext:
        return ProbeContext(usable_budget_bytes=self.budget.usable_bytes, gpu=self.gpu, gpus=self.gpus)

    def study_attrs(self) -> dict[str, Any]:
        """What a stored study must remember to rebuild its outputs (and to refuse a mismatched resume)."""
        a = StudyAttr
        return {
            a.MODEL: self.model.name, a.MODEL_REF: self.model.hf_ref, a.TEMPLATE: self.model.llamafactory_template,
            a.MODEL_CONFIG: self.model.config,
            a.MODEL_PARAMS: self.model.params, a.GPU_MEM: self.budget.gpu_mem_text,
            a.GPU_MEM_GIB: self.budget.gpu_mem_gib, a.USABLE_BUDGET_GIB: self.budget.usable_gib,
            a.RESERVE_GIB: self.budget.reserve_bytes / GIB, a.RESERVE_SOURCE: self.budget.reserve_source,
            a.HEADROOM: self.budget.headroom, a.GPU: self.gpu.key, a.GPU_NAME: self.gpu.name,
            a.GPU_SOURCE: self.gpu_source, a.GPUS: self.gpus, a.PROBE: self.probe.name,
            a.ESTIMATED: self.probe.estimated, a.SPACE: self.space.source, a.PINS: self.pins,
            a.GLOBAL_BATCH: self.global_batch, a.SEARCHED_KNOBS: self.candidates.searched,
            a.CANDIDATES: len(self.candidates),
        }


def check_budget_reachable(plan: SearchPlan) -> None:
    """Refuse a budget below the cheapest valid configurations of the space, saying what they need.
    Uses the trace probe, so nothing runs on a GPU for it."""
    tracer = TraceProbe()
    smallest: tuple[float, TrainingConfig] | None = None
    for index in plan.candidates.minimal():
        config = plan.candidates.configs[index]
        result = tracer.run(plan.model, config, plan.context)
        if result.state == Outcome.OK:
            return
        peak, _ = result.figures()
        if smallest is None or peak < smallest[0]:
            smallest = (peak, config)
    if smallest is None:
        raise AutofitError(f"--gpu-mem {plan.budget.gpu_mem_text}: the space has no valid configuration to trace")
    need, config = smallest
    knobs = ", ".join(f"{k}={v}" for k, v in config.to_dict().items())
    raise AutofitError(
        f"--gpu-mem {plan.budget.gpu_mem_text} (usable {plan.budget.usable_gib:.2f} GiB) is below the smallest "
        f"valid configuration of the space, which needs {need:.2f} GiB (estimated): {knobs}")


def open_study(plan: SearchPlan, sampler: optuna.samplers.BaseSampler | None = None) -> optuna.Study:
    """Create or resume the study (with autofit's sampler unless another is given); refuse one that holds a
    different search."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = sampler or AutofitSampler(plan.candidates, seed=plan.seed)
    # under the lock: workers starting together create the schema once and agree on the study's settings
    with study_lock(plan.storage, plan.study_name):
        storage = make_storage(plan.storage)
        study = optuna.create_study(storage=storage, study_name=plan.study_name, directions=DIRECTIONS,
                                    sampler=sampler, load_if_exists=True)
        attrs = plan.study_attrs()
        stored = study.user_attrs
        if stored:
            for key in StudyAttr.MUST_MATCH_ON_RESUME:
                if json.dumps(stored.get(key), sort_keys=True) != json.dumps(attrs[key], sort_keys=True):
                    raise AutofitError(f"study {plan.study_name!r} in {mask_url(plan.storage)} holds a different"
                                       f" search ({key} differs); use another --out, --storage or --study-name")
        else:
            for key, value in attrs.items():
                study.set_user_attr(key, value)
    return study


def evaluated_count(study: optuna.Study) -> int:
    """Configurations the study has evaluated (they count toward --trials)."""
    return sum(1 for t in study.get_trials(deepcopy=False) if is_evaluated(t))


def _claim(plan: SearchPlan, study: optuna.Study) -> tuple[optuna.Trial, TrainingConfig] | str:
    """Under the study lock: decide whether to stop or wait, else create a trial holding the next
    configuration. Returns (trial, config), or "trials" / "exhausted" / "wait"."""
    reap_lost_trials(study, claim_lock_held=True)  # a claim whose claimer died before recording itself
    before_claim = getattr(study.sampler, "before_claim", None)
    if before_claim is not None:  # the sampler may record what it can infer without a probe (e.g. oom-inferred)
        before_claim(study)
    trials = study.get_trials(deepcopy=False)
    evaluated = sum(1 for t in trials if is_evaluated(t))
    running = sum(1 for t in trials if t.state == TrialState.RUNNING)
    waiting = sum(1 for t in trials if t.state == TrialState.WAITING)
    if evaluated >= plan.trials:
        return "trials"
    if evaluated + running >= plan.trials:
        return "wait"  # the trials in flight on other workers will finish the study
    remaining = getattr(study.sampler, "remaining", None)  # AutofitSampler knows when the space is spent
    if not waiting and remaining is not None and remaining(study) == 0:
        return "wait" if running else "exhausted"
    trial = study.ask()
    params = {k: trial.suggest_categorical(k, list(v)) for k, v in plan.candidates.choices.items()}
    index = plan.candidates.index_of_params(params)
    config = (plan.candidates.configs[index] if index is not None
              else TrainingConfig.from_dict({**plan.candidates.fixed, **params}))
    trial.set_user_attr(TrialAttr.CONFIG, config.to_dict())
    trial.set_user_attr(TrialAttr.CONFIG_KEY, config.key())
    trial.set_user_attr(TrialAttr.WORKER, worker_id())
    trial.set_user_attr(TrialAttr.HEARTBEAT_AT, time.time())
    return trial, config


def _release_orphans(plan: SearchPlan, study: optuna.Study) -> None:
    """After Ctrl-C inside a claim: a RUNNING trial without a worker was being claimed under the lock, which
    nobody else holds now, so it is ours; mark it interrupted instead of leaving it RUNNING."""
    with study_lock(plan.storage, plan.study_name):
        for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if TrialAttr.WORKER not in trial.user_attrs:
                mark_outcome(study, trial, Outcome.INTERRUPTED, TrialState.FAIL)


def run_search(plan: SearchPlan, study: optuna.Study,
               on_trial: Callable[[optuna.trial.FrozenTrial], None] | None = None,
               on_start: Callable[[int, TrainingConfig], None] | None = None,
               poll_s: float = 0.5) -> str:
    """Probe configurations until the study holds `plan.trials` evaluated ones (counting other workers'),
    the space is exhausted or the time is up. Returns why it stopped: "trials", "exhausted" or "timeout".
    Safe to run in several processes or on several machines against one storage."""
    started = time.monotonic()
    while True:
        if plan.timeout_s is not None and time.monotonic() - started >= plan.timeout_s:
            return "timeout"
        reap_lost_trials(study)
        try:
            with study_lock(plan.storage, plan.study_name):
                claim = _claim(plan, study)
        except KeyboardInterrupt:
            _release_orphans(plan, study)
            raise
        if claim == "wait":
            time.sleep(poll_s)
            continue
        if isinstance(claim, str):
            return claim
        trial, config = claim
        if on_start is not None:
            on_start(trial.number, config)
        rule = violated_rule(config, plan.model.facts)
        if rule is not None:  # cannot come from AutofitSampler, but a space or sampler change must not probe it
            trial.set_user_attr(TrialAttr.ERROR, f"{rule.name}: {rule.message}")
            set_outcome(trial, Outcome.INVALID)
            study.tell(trial, state=TrialState.FAIL)
        else:
            try:
                with Heartbeat(study, trial._trial_id):
                    result = plan.probe.run(plan.model, config, plan.context)
            except KeyboardInterrupt:
                set_outcome(trial, Outcome.INTERRUPTED)
                study.tell(trial, state=TrialState.FAIL)
                raise
            except Exception as exc:  # a probe bug must not take the search down
                result = ProbeResult(state=Outcome.FAILED, probe=plan.probe.name, estimated=plan.probe.estimated,
                                     error=f"{type(exc).__name__}: {exc}")
            record_result(trial, result, plan.budget.usable_gib)
            values = (None if result.tokens_per_s is None or result.peak_memory_gib is None
                      else [result.tokens_per_s, result.peak_memory_gib])
            tell(study, trial, result.state, values)
        if on_trial is not None:
            on_trial(next(t for t in study.get_trials(deepcopy=False) if t.number == trial.number))
