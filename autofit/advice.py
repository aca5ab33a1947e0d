"""After a search: the concessions and the sequence-length curves, computed once with the trace probe and stored in
the study (so `autofit report` and any worker rebuild the same outputs), and what best-config.yaml, seq-len.csv
and the CLI say about the requirements and why the recommendation was chosen."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import optuna
import pandas as pd

from .concessions import Concession, TraceCache, concessions_that_fit, find_concessions
from .errors import AutofitError
from .knobs import TrainingConfig
from .requirements import Requirements, concedable_defaults
from .results import Recommendation, pareto_frame, recommend
from .trials import Outcome, StudyAttr, TrialAttr, outcome_of
from .seq_len_curve import CSV_COLUMNS, confirm_boundary, seq_len_curves



def enqueue_from_file(plan, study: optuna.Study, trainer) -> str:
    """`search --from FILE`: the file's configuration as the search's starting point, enqueued as the study's
    next trial (Optuna's enqueue_trial with the searched knobs' values), so the user's own configuration is
    probed like any other (measured with a real probe) and appears in trials.csv. Only when it is a valid
    candidate of the pinned space; a resumed study that already holds it is left alone. Returns a line saying
    what was done."""
    from .rules import violated_rule

    config = TrainingConfig.from_dict(trainer.knobs)
    index = plan.candidates.index_of_config(config)
    if index is None:
        outside = [f"{k} {getattr(config, k)}" for k, values in plan.candidates.choices.items()
                   if getattr(config, k) not in values]
        outside += [f"{k} {getattr(config, k)}" for k, v in plan.candidates.fixed.items() if getattr(config, k) != v]
        broken = violated_rule(config, plan.model.facts)
        why = (f"it breaks a rule ({broken})" if broken else
               "outside the searched space: " + (", ".join(outside) or "not among the valid candidates"))
        return f"Your file's configuration is not probed: {why}."
    key = config.key()
    for trial in study.get_trials(deepcopy=False):
        if trial.user_attrs.get(TrialAttr.CONFIG_KEY) == key or trial.user_attrs.get(TrialAttr.FROM_FILE):
            return f"Your file's configuration is already in the study (trial {trial.number})."
    study.enqueue_trial(plan.candidates.params(index), user_attrs={TrialAttr.FROM_FILE: str(trainer.path)})
    return "Your file's configuration is enqueued as the search's first trial (its starting point)."


def fits_without_deepspeed(plan) -> bool:
    """Whether a configuration of the plan without ZeRO fits (the cheapest ones by the memory orders, traced)."""
    cache = TraceCache(plan.model, plan.context)
    minimal = [plan.candidates.configs[i] for i in plan.candidates.minimal()]
    return any(cache.fits(c) for c in minimal if c.zero_stage == 0)


def plan_with_requirements(make_plan, req: Requirements, check, space_values: dict[str, tuple]) -> Any:
    """The search plan pinned to the requirements. A default requirement is conceded (requirements.
    DEFAULT_CONCESSIONS, in order) when nothing meeting it fits on one GPU without DeepSpeed: DeepSpeed with CPU
    offload for a LoRA adapter is a dependency and a launch path a practitioner would not take over QLoRA, unless
    they asked for bf16 weights (--quantization none), which is never conceded. When nothing fits at all, fail
    naming single concessions that would fit. `make_plan(pins)` builds a plan; `check(plan)` raises when its
    cheapest configurations do not fit."""
    plan = make_plan(req.pins())
    error = None
    try:
        check(plan)
        if plan.gpus > 1 or fits_without_deepspeed(plan):
            return plan
    except AutofitError as exc:
        error = exc
    for knob, value in concedable_defaults(req):
        req.conceded = {knob: value}
        conceded = make_plan(req.pins())
        try:
            check(conceded)
            return conceded
        except AutofitError as exc:  # say what even the conceded default needs: the smallest there is
            req.conceded = {}
            if error is not None:
                error = AutofitError(f"{exc} (with the default {knob} {req.values[knob]} conceded to {value})")
    if error is None:
        return plan  # only DeepSpeed makes it fit, and no default may be conceded: search with it
    cache = TraceCache(plan.model, plan.context)
    minimal = [plan.candidates.configs[i] for i in plan.candidates.minimal()]
    fitting = concessions_that_fit(cache, minimal, req, space_values)
    if not fitting:
        raise error
    options = "; ".join(c.text for c in fitting)
    raise AutofitError(f"nothing that meets the requirements ({', '.join(req.describe()[:3])}) fits "
                       f"{plan.budget.gpu_mem_text} (usable {plan.budget.usable_gib:.2f} GiB); it fits if you give up "
                       f"one of them: {options}. Pass the one you accept (e.g. --quantization, --seq-len, --lora-rank)")


def compute_advice(plan, study: optuna.Study, req: Requirements, space_values: dict[str, tuple]) -> None:
    """Trace the concessions and the sequence-length curves for the study's recommendation; store them."""
    study.set_user_attr(StudyAttr.REQUIREMENTS, req.to_attrs())
    rec = recommend(study)
    cache = TraceCache(plan.model, plan.context)
    if rec is None:  # what fits by giving up one requirement, from the cheapest configurations
        minimal = [plan.candidates.configs[i] for i in plan.candidates.minimal()]
        found = concessions_that_fit(cache, minimal, req, space_values)
        study.set_user_attr(StudyAttr.CONCESSIONS, [c.to_dict() for c in found])
        study.set_user_attr(StudyAttr.SEQ_LEN_CURVE, [])
        return
    base = TrainingConfig.from_dict(rec.config)
    own = cache.run(base)  # the recommendation's own trace: deltas compare estimate with estimate
    own_peak, own_tokens_per_s = own.figures()
    found = find_concessions(cache, base, req, space_values, (own_peak, own_tokens_per_s))
    study.set_user_attr(StudyAttr.CONCESSIONS, [c.to_dict() for c in found])
    front = pareto_frame(study)
    front = front.sort_values("tokens_per_s", ascending=False)
    # each front trial's configuration as stored (a frame column holding a missing value would turn ints to floats)
    stored_configs = {t.number: t.user_attrs.get(TrialAttr.CONFIG) or {} for t in study.get_trials(deepcopy=False)}
    others = [(int(row["number"]), dict(stored_configs[int(row["number"])])) for _, row in front.iterrows()]
    curves = seq_len_curves(cache, (rec.trial.number, rec.config), others, plan.model.max_positions)
    if not plan.probe.estimated:  # a real probe (cpu/cuda): confirm the recommendation's boundary by measuring it
        recommended = next(c for c in curves if c.recommended)
        confirm_boundary(recommended, base, plan.probe, cache, plan.model.max_positions)
    study.set_user_attr(StudyAttr.SEQ_LEN_CURVE, [{**c.row(), "points": c.points} for c in curves])
    stored = study.user_attrs.get(StudyAttr.FROM_FILE)
    theirs = None
    if stored:  # the user's own file as it is, against the recommendation (both traced: like with like)
        from .rules import violated_rule

        config = TrainingConfig.from_dict(stored["knobs"])
        if violated_rule(config, plan.model.facts) is None:
            theirs = cache.run(config)
    if theirs is not None and theirs.peak_memory_gib is not None and theirs.tokens_per_s is not None:
        study.set_user_attr(StudyAttr.FROM_FILE_TRACE, {
            "fits": theirs.state == Outcome.OK, "peak_memory_gib": round(theirs.peak_memory_gib, 3),
            "tokens_per_s": round(theirs.tokens_per_s, 1),
            "recommended_tokens_per_s": round(own_tokens_per_s, 1)})


# The stored advice, read from a study's user attributes (`study.user_attrs` queries the storage each time: a
# caller reads it once and passes the mapping).
def stored_requirements(attrs: Mapping[str, Any]) -> Requirements | None:
    return Requirements.from_attrs(attrs.get(StudyAttr.REQUIREMENTS))


def stored_concessions(attrs: Mapping[str, Any]) -> list[dict[str, Any]]:
    return list(attrs.get(StudyAttr.CONCESSIONS) or [])


def stored_curves(attrs: Mapping[str, Any]) -> list[dict[str, Any]]:
    return list(attrs.get(StudyAttr.SEQ_LEN_CURVE) or [])


def seq_len_csv(study: optuna.Study) -> str | None:
    curves = stored_curves(study.user_attrs)
    if not curves:
        return None
    return pd.DataFrame([{k: c.get(k) for k in CSV_COLUMNS} for c in curves], columns=CSV_COLUMNS).to_csv(index=False)


def advice_document(study: optuna.Study, rec: Recommendation) -> dict[str, Any]:
    """The keys best-config.yaml gains: requirements (with sources), why this configuration, concessions."""
    attrs = study.user_attrs
    req = stored_requirements(attrs)
    doc: dict[str, Any] = {}
    if req is not None:
        doc["requirements"] = {
            **{k: {"value": v, "source": req.sources[k], **({"conceded_to": req.conceded[k]} if k in req.conceded
                                                             else {})} for k, v in req.values.items()},
            "global_batch": {"value": req.global_batch, "source": req.global_batch_source},
        }
        if req.notes:
            doc["requirements"]["notes"] = list(req.notes)
    if rec.reason:
        doc["why"] = rec.reason
    concessions = stored_concessions(attrs)
    if req is not None:
        doc["concessions"] = [c["text"] for c in concessions]
    curves = stored_curves(attrs)
    if curves:
        doc["longest_seq_len"] = {c["strategy"]: c["longest_seq_len"] for c in curves}
    return doc


def summary_lines(study: optuna.Study, rec: Recommendation | None) -> list[str]:
    """Lines for the CLI summary: requirements, why, concessions, the sequence-length curve (plain text)."""
    lines = []
    attrs = study.user_attrs
    req = stored_requirements(attrs)
    if req is not None:
        lines.append("Requirements: " + "; ".join(req.describe()))
    if rec is not None and rec.reason:
        lines.append(f"Why this one: {rec.reason}.")
    concessions = [Concession(**{k: v for k, v in c.items() if k != "text"}) for c in stored_concessions(attrs)]
    if concessions:
        lines.append("Concessions (each gives up one requirement; against the recommendation):")
        lines += [f"  - {c.text}" for c in concessions]
    own_trial = next((t for t in study.get_trials(deepcopy=False) if t.user_attrs.get(TrialAttr.FROM_FILE)), None)
    outcome = None if own_trial is None else outcome_of(own_trial)
    if own_trial is not None and outcome is not None:
        attrs = own_trial.user_attrs
        measured = ("estimated" if attrs.get(TrialAttr.ESTIMATED)
                    else f"measured by the {attrs.get(TrialAttr.PROBE)} probe")
        peak, tps = attrs.get(TrialAttr.PEAK_MEMORY_GIB), attrs.get(TrialAttr.TOKENS_PER_S)
        figures = f", peak {peak:.2f} GiB, {tps or 0:,.0f} tokens/s" if peak is not None else ""
        lines.append(f"Your file's configuration was probed as trial {own_trial.number}: {outcome}{figures} "
                     f"({measured}; in trials.csv)")
    theirs = study.user_attrs.get(StudyAttr.FROM_FILE_TRACE)
    if theirs:
        recommended_tps, file_tps = theirs["recommended_tokens_per_s"], theirs["tokens_per_s"]
        gain = 100.0 * (recommended_tps / file_tps - 1) if file_tps else 0
        lines.append(f"Your file as it is: peak {theirs['peak_memory_gib']:.2f} GiB, "
                     + ("fits" if theirs["fits"] else "does not fit")
                     + f", {file_tps:,.0f} tokens/s;"
                     + f" the recommendation: {gain:+.0f}% tokens/s (estimated)")
    for curve in stored_curves(attrs):
        mark = " (recommended)" if curve["recommended"] else ""
        longest = curve["longest_seq_len"]
        cap = " (the model's limit)" if curve.get("capped_at") else ""
        lines.append(f"Longest seq_len that fits, {curve['strategy']}{mark}: "
                     + (f"{longest}{cap}" if longest else "none") + _confirmation(curve))
    return lines


def _confirmation(curve: dict[str, Any]) -> str:
    """How a curve's boundary is known: estimated by the trace, or measured by a real probe (and moved if the
    real run disagreed with the trace)."""
    confirmed = curve.get("confirmed") or "estimated"
    if confirmed == "estimated":
        return " (estimated)"
    peak = curve.get("measured_peak_gib")
    measured = f"measured {peak:.2f} GiB there" if peak is not None else "not measured there"
    if confirmed == "measured":
        return f" (confirmed by a real probe: {measured}; runs: {curve.get('measured_probes')})"
    return (f" (moved from the trace's {curve.get('trace_longest_seq_len')} by a real probe: {measured}; "
            f"runs: {curve.get('measured_probes')})")
