"""The study: OOM trials are pruned and learnt from, what they imply is recorded without a probe,
configurations are never probed twice, and the model-guided search is correct under pins, --global-batch,
resume and several workers."""

import numpy as np
import optuna
import pytest
from optuna.trial import TrialState

from autofit.budget import make_budget
from autofit.candidates import build_candidates
from autofit.gpus import get_gpu
from autofit.models import resolve_model
from autofit.probes import TraceProbe
from autofit.results import pareto_frame, recommend, trials_frame
from autofit.sampler import _GP
from autofit.search import SearchPlan, evaluated_count, open_study, run_search
from autofit.space import SearchSpace
from autofit.trials import Outcome, TrialAttr, outcome_of
from probes_for_tests import AnalyticProbe

MODEL = resolve_model("glm-tiny")
PROBED = [Outcome.OK, Outcome.OOM]  # the trace probe's outcomes; oom-inferred trials are records, not probes


def plan(tmp_path, name, trials, seed, gpu_mem="1.2GB", pins=None, global_batch=None, probe=None):
    # 1.2 GB leaves 0.14 GiB usable after the 1 GiB reserve and 5% headroom: about half of this space
    # runs out of memory there (576 configurations of batch, seq_len, rank, quantization, checkpointing)
    fixed = {"gradient_accumulation_steps": 1, "attn_implementation": "sdpa", "optimizer": "adamw_torch",
             "zero_stage": 0, "offload": "none"}
    fixed.update(pins or {})
    space = SearchSpace.load().pinned(fixed)
    return SearchPlan(model=MODEL, space=space, pins=dict(pins or {}), budget=make_budget(gpu_mem),
                      gpu=get_gpu("h100"), gpu_source="named", probe=probe or TraceProbe(), trials=trials,
                      storage=f"sqlite:///{tmp_path}/{name}.db", study_name=name, seed=seed,
                      global_batch=global_batch)


def probed(frame):
    return frame[frame["state"].isin(PROBED)]


def oom_share(study):
    frame = trials_frame(study)
    return (probed(frame)["state"] == Outcome.OOM).mean(), frame


def assert_never_twice(frame, knobs):
    assert frame[list(knobs)].astype(str).duplicated().sum() == 0


# The sampler's own logic is tested on both landscapes: the analytic probe's (tests/probes_for_tests.py:
# microseconds a probe, in the fast lane) and the real trace's (a second a probe: slow).
PROBES = [pytest.param(AnalyticProbe, id="analytic"), pytest.param(TraceProbe, id="trace", marks=pytest.mark.slow)]


@pytest.mark.parametrize("probe_class", PROBES)
def test_space_is_about_half_oom(tmp_path, probe_class):
    p = plan(tmp_path, "census", 1, 0)
    probe = probe_class()
    states = [probe.run(MODEL, c, p.context).state for c in p.candidates.configs[::25]]  # 24 of 576
    share = states.count(Outcome.OOM) / len(states)
    assert 0.3 < share < 0.8, share


@pytest.mark.parametrize("probe_class", PROBES)
def test_autofit_sampler_learns_from_oom_better_than_random(tmp_path, probe_class):
    ours, random = [], []
    for seed in (0, 1, 2):
        p = plan(tmp_path, f"ours{seed}", 20, seed, probe=probe_class())
        study = open_study(p)
        run_search(p, study)
        share, frame = oom_share(study)
        ours.append(share)
        assert frame["state"].isin([*PROBED, Outcome.OOM_INFERRED]).all()
        assert len(probed(frame)) == 20 and evaluated_count(study) == 20
        assert_never_twice(frame, p.candidates.searched)  # records and probes alike
        p = plan(tmp_path, f"random{seed}", 20, seed, probe=probe_class())
        study = open_study(p, sampler=optuna.samplers.RandomSampler(seed=seed))
        run_search(p, study)
        random.append(oom_share(study)[0])
    assert sum(ours) / 3 < sum(random) / 3 - 0.1, (ours, random)


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    """One 20-trial search with the real trace probe (this module's end-to-end run), shared by the tests that only
    read it."""
    p = plan(tmp_path_factory.mktemp("searched"), "searched", 20, 5)
    study = open_study(p)
    run_search(p, study)
    return p, study


def test_oom_is_pruned_inferred_records_are_not_probes(searched):
    p, study = searched
    cands = p.candidates
    by_number = {t.number: t for t in study.trials}
    inferred = [t for t in study.trials if outcome_of(t) == Outcome.OOM_INFERRED]
    assert inferred, "an out-of-memory probe in this space always implies something"
    for trial in study.trials:
        state = outcome_of(trial)
        if state == Outcome.OOM:
            assert trial.state == TrialState.PRUNED
            assert trial.constraints["memory"] > 0
        elif state == Outcome.OK:
            assert trial.state == TrialState.COMPLETE
            assert trial.constraints["memory"] <= 0
        else:
            assert state == Outcome.OOM_INFERRED and trial.state == TrialState.PRUNED and not trial.constraints
            source = by_number[trial.user_attrs[TrialAttr.INFERRED_FROM]]
            assert outcome_of(source) == Outcome.OOM
            # one step above the configuration that ran out of memory, along one knob
            i = cands.index_of_config(cands.configs[0].from_dict(source.user_attrs[TrialAttr.CONFIG]))
            j = cands._keys[trial.user_attrs[TrialAttr.CONFIG_KEY]]
            assert cands.at_least_as_large_as(i)[j] and j in cands.one_step_larger(i)
            assert source.number < trial.number  # recorded after the probe, before the next claim
    assert evaluated_count(study) == 20
    assert len(inferred) <= sum(outcome_of(t) == Outcome.OOM for t in study.trials)


def test_never_probes_what_an_earlier_oom_implies(searched):
    p, study = searched
    cands, ooms = p.candidates, []
    for trial in sorted(study.trials, key=lambda t: t.number):
        state = outcome_of(trial)
        if state not in PROBED:
            continue
        index = cands._keys[trial.user_attrs[TrialAttr.CONFIG_KEY]]
        assert not any(cands.at_least_as_large_as(o)[index] for o in ooms), trial.user_attrs[TrialAttr.CONFIG]
        if state == Outcome.OOM:
            ooms.append(index)


def test_recommendation_and_front(searched):
    p, study = searched
    frame = trials_frame(study)
    ok = frame[frame["state"] == Outcome.OK]
    rec = recommend(study)
    assert rec.tokens_per_s == ok["tokens_per_s"].max()
    assert rec.peak_memory_gib <= p.budget.usable_gib
    front = pareto_frame(study)
    # nothing feasible dominates a front member
    for _, f in front.iterrows():
        dominated = ok[(ok["tokens_per_s"] >= f["tokens_per_s"]) & (ok["peak_memory_gib"] <= f["peak_memory_gib"])
                       & ((ok["tokens_per_s"] > f["tokens_per_s"]) | (ok["peak_memory_gib"] < f["peak_memory_gib"]))]
        assert dominated.empty
    assert rec.trial.number in set(front["number"])


def test_resume_continues_without_repeating(tmp_path):
    # the analytic probe, like the two tests below: the sampler's bookkeeping is tested, `searched` traces
    p = plan(tmp_path, "resume", 6, 9, probe=AnalyticProbe())
    run_search(p, open_study(p))
    p2 = plan(tmp_path, "resume", 14, 9, probe=AnalyticProbe())
    study = open_study(p2)
    run_search(p2, study)
    frame = trials_frame(study)
    assert len(probed(frame)) == 14
    assert_never_twice(frame, p2.candidates.searched)
    sources = [t.user_attrs[TrialAttr.INFERRED_FROM] for t in study.trials if TrialAttr.INFERRED_FROM in t.user_attrs]
    assert len(sources) == len(set(sources))  # the resumed sampler did not record anything twice


def test_workers_sharing_a_study_never_repeat(tmp_path):
    """Two samplers (two workers) taking turns on one stored study: each sees the other's probes and records."""
    a = plan(tmp_path, "shared", 5, 1, probe=AnalyticProbe())
    study_a = open_study(a)
    b = plan(tmp_path, "shared", 10, 2, probe=AnalyticProbe())
    study_b = open_study(b)
    run_search(a, study_a)
    run_search(b, study_b)
    a.trials = 16
    run_search(a, study_a)
    frame = trials_frame(study_a)
    assert len(probed(frame)) == 16
    assert_never_twice(frame, a.candidates.searched)


def test_pins_and_global_batch(tmp_path):
    # which configurations the search proposes is tested, not their traces (nf4's are the slowest: 16 s here)
    p = plan(tmp_path, "pinned", 12, 4, pins={"quantization": "nf4", "seq_len": 1024}, global_batch=16,
             probe=AnalyticProbe())
    assert "quantization" not in p.candidates.searched and "seq_len" not in p.candidates.searched
    study = open_study(p)
    run_search(p, study)
    frame = trials_frame(study)
    rows = probed(frame)
    assert len(rows) == min(12, len(p.candidates))
    assert (frame["quantization"] == "nf4").all() and (frame["seq_len"] == 1024).all()
    assert (frame["per_device_train_batch_size"] * frame["gradient_accumulation_steps"] == 16).all()
    assert_never_twice(frame, p.candidates.searched)


def test_running_trials_are_excluded_lost_ones_are_not(tmp_path):
    p = plan(tmp_path, "claims", 1, 0)
    study = open_study(p)
    sampler = study.sampler
    config = p.candidates.configs[7]
    trial = study.ask({k: optuna.distributions.CategoricalDistribution(v) for k, v in p.candidates.choices.items()})
    study._storage.set_trial_user_attr(trial._trial_id, TrialAttr.CONFIG_KEY, config.key())
    assert sampler.excluded(study)[7]  # in flight on some worker
    assert not sampler.excluded(study, current=trial.number)[7]
    study._storage.set_trial_user_attr(trial._trial_id, TrialAttr.STATE, Outcome.LOST.value)
    study.tell(trial, state=TrialState.FAIL)
    assert not sampler.excluded(study)[7]  # its worker died: it may be proposed again
    assert sampler.remaining(study) == len(p.candidates)


def test_exhausted_space_stops(tmp_path):
    space = SearchSpace.load().pinned({"gradient_accumulation_steps": 1, "seq_len": 512, "lora_rank": 8,
                                       "optimizer": "adamw_torch", "attn_implementation": "sdpa",
                                       "quantization": "none", "gradient_checkpointing": True})
    p = SearchPlan(model=MODEL, space=space, pins={}, budget=make_budget("24GB"), gpu=get_gpu("h100"),
                   gpu_source="named", probe=TraceProbe(), trials=50, storage=f"sqlite:///{tmp_path}/x.db",
                   study_name="x", seed=0)
    assert run_search(p, open_study(p)) == "exhausted"


def test_resume_refuses_a_different_search(tmp_path):
    from autofit import AutofitError

    p = plan(tmp_path, "clash", 2, 0)
    run_search(p, open_study(p))
    with pytest.raises(AutofitError, match="different search"):
        open_study(plan(tmp_path, "clash", 2, 0, gpu_mem="2GB"))


# -- the pieces --------------------------------------------------------------------------------------
def test_memory_order_neighbours():
    space = SearchSpace.load().pinned({"attn_implementation": "sdpa", "optimizer": "adamw_torch", "seq_len": 1024})
    cands = build_candidates(space, MODEL.facts)
    for index in range(0, len(cands), 37):
        above, below = cands.at_least_as_large_as(index), cands.at_most_as_large_as(index)
        assert above[index] and below[index]
        steps = cands.one_step_larger(index)
        assert all(above[j] and j != index for j in steps)
        # everything above is above one of the steps (or equal to the configuration itself)
        covered = np.zeros(len(cands), dtype=bool)
        for j in steps:
            covered |= cands.at_least_as_large_as(j)
        covered[index] = True
        assert (covered[above]).all()
        for j in cands.one_step_larger(index, ["per_device_train_batch_size"]):
            a, b = cands.configs[index], cands.configs[j]
            assert b.per_device_train_batch_size == 2 * a.per_device_train_batch_size
            assert b.replace(per_device_train_batch_size=1) == a.replace(per_device_train_batch_size=1)


def test_incremental_gp_matches_a_direct_solve():
    rng = np.random.default_rng(0)
    x = rng.random((60, 3))
    y = np.sin(3 * x[:, 0]) + 0.1 * x[:, 2]
    gp = _GP(x, noise=1e-3)
    train = [int(j) for j in rng.choice(60, 25, replace=False)]
    for j in train:  # refits at 1..8 and 16 observations (lengthscales fitted), incremental in between
        gp.add(j, float(y[j]))
    mean, sd = gp.predict()
    xs, ys = x[train] / gp.lengthscales, (y[train] - gp.mean) / gp.scale

    def k(a, b):
        return np.exp(-0.5 * ((a[:, None] - b[None]) ** 2).sum(-1))

    kinv = np.linalg.inv(k(xs, xs) + 1e-3 * np.eye(len(train)))
    cross = k(x / gp.lengthscales, xs)
    assert np.allclose(mean, gp.mean + gp.scale * cross @ kinv @ ys, atol=1e-6)
    direct_var = 1 - np.einsum("ij,jk,ik->i", cross, kinv, cross)
    assert np.allclose(sd, gp.scale * np.sqrt(np.maximum(direct_var, 1e-9)), atol=1e-5)
    assert np.abs(mean[train] - y[train]).max() < 0.05  # it interpolates what it saw
    # the fitted lengthscales find the knob that matters (x0) and the one that hardly does (x2)
    assert gp.lengthscales[0] < gp.lengthscales[2]
    held_out = np.setdiff1d(np.arange(60), train)
    assert np.median(np.abs(mean[held_out] - y[held_out])) < 0.1
