"""The study: OOM trials are pruned and learnt from, configurations are never probed twice."""

import optuna
import pytest

from autofit.budget import make_budget
from autofit.gpus import get_gpu
from autofit.models import resolve_model
from autofit.probes import TraceProbe
from autofit.results import pareto_frame, recommend, trials_frame
from autofit.sampler import AutofitSampler
from autofit.search import SearchPlan, open_study, run_search
from autofit.space import SearchSpace

MODEL = resolve_model("glm-tiny")


def plan(tmp_path, name, trials, seed, gpu_mem="1.2GB"):
    # 1.2 GB leaves 0.14 GiB usable after the 1 GiB reserve and 5% headroom: about half of this space
    # runs out of memory there (576 configurations of batch, seq_len, rank, quantization, checkpointing)
    space = SearchSpace.load().pinned({"gradient_accumulation_steps": 1, "attn_implementation": "sdpa",
                                       "optimizer": "adamw_torch"})
    return SearchPlan(model=MODEL, space=space, pins={}, budget=make_budget(gpu_mem), gpu=get_gpu("h100"),
                      gpu_source="named", probe=TraceProbe(), trials=trials,
                      storage=f"sqlite:///{tmp_path}/{name}.db", study_name=name, seed=seed)


def oom_share(study):
    frame = trials_frame(study)
    probed = frame[frame["state"].isin(["ok", "oom"])]
    return (probed["state"] == "oom").mean(), frame


def test_space_is_about_half_oom(tmp_path):
    p = plan(tmp_path, "census", 1, 0)
    probe = TraceProbe()
    states = [probe.run(MODEL, c, p.context).state for c in p.candidates.configs[::25]]
    share = states.count("oom") / len(states)
    assert 0.3 < share < 0.8, share


def test_autofit_sampler_learns_from_oom_better_than_random(tmp_path):
    ours, random = [], []
    for seed in (0, 1, 2):
        p = plan(tmp_path, f"ours{seed}", 20, seed)
        study = open_study(p)
        run_search(p, study)
        share, frame = oom_share(study)
        ours.append(share)
        assert frame["state"].isin(["ok", "oom"]).all()
        assert len(frame) == 20 and frame[list(p.candidates.searched)].astype(str).duplicated().sum() == 0
        p = plan(tmp_path, f"random{seed}", 20, seed)
        study = open_study(p, sampler=optuna.samplers.RandomSampler(seed=seed))
        run_search(p, study)
        random.append(oom_share(study)[0])
    assert sum(ours) / 3 < sum(random) / 3 - 0.1, (ours, random)


def test_oom_is_pruned_in_optuna_and_constraint_recorded(tmp_path):
    p = plan(tmp_path, "states", 12, 5)
    study = open_study(p)
    run_search(p, study)
    for trial in study.trials:
        state = trial.user_attrs["autofit_state"]
        if state == "oom":
            assert trial.state == optuna.trial.TrialState.PRUNED
            assert trial.constraints["memory"] > 0
        elif state == "ok":
            assert trial.state == optuna.trial.TrialState.COMPLETE
            assert trial.constraints["memory"] <= 0


def test_recommendation_and_front(tmp_path):
    p = plan(tmp_path, "front", 20, 3)
    study = open_study(p)
    run_search(p, study)
    frame = trials_frame(study)
    ok = frame[frame["state"] == "ok"]
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
    p = plan(tmp_path, "resume", 6, 9)
    run_search(p, open_study(p))
    p2 = plan(tmp_path, "resume", 14, 9)
    study = open_study(p2)
    run_search(p2, study)
    frame = trials_frame(study)
    assert len(frame) == 14
    assert frame[list(p2.candidates.searched)].astype(str).duplicated().sum() == 0


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
