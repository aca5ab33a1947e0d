"""autofit/trials.py: the study record. Stored values must stay what earlier versions wrote (studies are
resumed and reported across versions), and recording a result through a real storage stores plain values."""

import json

import optuna
from optuna.trial import TrialState

from autofit.probes import ProbeResult
from autofit.trials import (EVALUATED, HELD, OOM_STATES, RETRIABLE, Outcome, TrialAttr, is_evaluated, mark_outcome,
                            outcome_of, record_result, tell)

# what studies written by earlier autofit versions hold: renaming any of these breaks resume and `autofit report`
STORED_OUTCOMES = {"ok", "oom", "oom-predicted", "oom-inferred", "invalid", "failed", "timeout", "lost", "interrupted"}


def test_outcome_values_are_the_stored_spelling():
    assert {o.value for o in Outcome} == STORED_OUTCOMES
    assert TrialAttr.STATE == "autofit_state" and TrialAttr.CONFIG_KEY == "config_key"
    assert str(Outcome.OOM_INFERRED) == f"{Outcome.OOM_INFERRED}" == "oom-inferred"
    assert json.dumps([Outcome.OK]) == '["ok"]'
    assert Outcome("lost") is Outcome.LOST and "ok" in EVALUATED


def test_groups_partition_the_outcomes():
    assert EVALUATED < HELD and not HELD & RETRIABLE and HELD | RETRIABLE == set(Outcome)
    assert OOM_STATES <= HELD and Outcome.OOM_PREDICTED not in EVALUATED


def test_probe_result_converts_a_plain_state():
    result = ProbeResult(state="oom", probe="mine", estimated=True)  # type: ignore[arg-type]  # a third-party probe
    assert result.state is Outcome.OOM


def test_record_and_tell_through_a_real_storage(tmp_path):
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    study = optuna.create_study(storage=storage, directions=["maximize", "minimize"])
    trial = study.ask()
    record_result(trial, ProbeResult(state=Outcome.OK, probe="trace", estimated=True, peak_memory_gib=3.0,
                                     tokens_per_s=100.0, error=None), budget_gib=4.0)
    tell(study, trial, Outcome.OK, [100.0, 3.0])
    oom = study.ask()
    record_result(oom, ProbeResult(state=Outcome.OOM, probe="trace", estimated=True, peak_memory_gib=5.0),
                  budget_gib=4.0)
    tell(study, oom, Outcome.OOM)
    running = study.ask()
    frozen = next(t for t in study.get_trials(deepcopy=False) if t.number == running.number)
    assert mark_outcome(study, frozen, Outcome.LOST, TrialState.FAIL)

    reloaded = optuna.load_study(study_name=study.study_name, storage=storage).get_trials()
    assert [t.user_attrs[TrialAttr.STATE] for t in reloaded] == ["ok", "oom", "lost"]
    assert [type(t.user_attrs[TrialAttr.STATE]) for t in reloaded] == [str, str, str]
    assert [t.state for t in reloaded] == [TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL]
    assert [outcome_of(t) for t in reloaded] == [Outcome.OK, Outcome.OOM, Outcome.LOST]
    assert [is_evaluated(t) for t in reloaded] == [True, True, False]
    assert reloaded[1].constraints == {"memory": 1.0}


def test_outcome_of_an_unfinished_or_unknown_trial_is_none(tmp_path):
    study = optuna.create_study(directions=["maximize", "minimize"])
    trial = study.ask()
    assert outcome_of(study.get_trials()[0]) is None
    trial.set_user_attr(TrialAttr.STATE, "from-a-future-version")
    assert outcome_of(study.get_trials()[0]) is None


def test_readme_lists_every_outcome():
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    listed = readme.split("`state` (", 1)[1].split(")", 1)[0]
    assert {s.strip() for s in listed.split(",")} == {o.value for o in Outcome}
