"""How many probes a search needs to find the Pareto front: autofit's sampler against random, grid order,
Optuna's NSGA-II and TPE (their defaults), on exhaustive oracles built with the trace probe.

    python bench/search_efficiency.py --quick --json     # 10% of each space; prints one JSON object
    python bench/search_efficiency.py        # k = 10..100% of each space; writes docs/search-efficiency.md + PNG

An oracle is every valid configuration of a search space, traced once (the real TraceProbe, the real budget,
a real target card) and cached under bench/.cache/search-efficiency/ (rebuilt when the probe's code, its
constants, the space or the model change). A run is a search with one method's sampler on an in-memory
Optuna study, with a probe that looks the configuration up in the oracle: each probe returns what the trace
probe returned (ok or oom, peak memory, tokens/s; --censor-oom: an oom without figures, as a GPU reports it).
autofit runs in autofit's own loop (`run_search`: study lock, before_claim, remaining); the baselines in the
same loop written out (`_baseline_search`).

After k probes (trials in state ok / oom / failed: what --trials counts) a run is scored by
  * the hypervolume of the feasible front found (tokens/s against peak GiB, reference point (0 tokens/s,
    usable budget GiB)) divided by the hypervolume of the exhaustive front, and
  * the tokens/s of the configuration autofit would recommend (the fastest feasible one found) divided by
    the fastest feasible tokens/s of the oracle.
Medians over 5 seeds. Hypervolumes are computed by an exact 2-D sweep and checked, at the end of every run,
against Optuna's own `optuna.visualization.plot_hypervolume_history` (its public hypervolume).

Fairness: a configuration a baseline proposes twice is probed twice (it counts as a probe, returning the known
result), as it would be in a real search with that sampler. An invalid combination (the baselines sample the
product of the knobs' values; autofit never proposes one) is not a probe, as in run_search, and is told
PRUNED rather than FAIL so that TPE learns to avoid it (see _baseline_search). Out-of-memory trials are
PRUNED with the memory constraint set (trial.set_constraint), as run_search records them for every sampler.
autofit's `oom-inferred` records are not probes. Grid = the candidates in enumeration order (one run: it
ignores the seed). The full run reuses cached runs whose inputs did not change (--fresh: rerun all).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import platform
import statistics
import sys
import time
import warnings
from dataclasses import dataclass
from importlib import resources
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from autofit.knobs import traced_config
from autofit.outputs import atomic_write
from autofit.trials import Outcome

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / "bench" / ".cache" / "search-efficiency"
DOCS = ROOT / "docs"
METHODS = ("autofit", "random", "grid", "nsga2", "tpe")
SEEDS = (0, 1, 2, 3, 4)
# shares of the valid configurations probed at which runs are scored: 10..100% as asked, and 1, 2, 5% to show
# the start of the curves
FRACTIONS = (0.01, 0.02, 0.05) + tuple(p / 100 for p in range(10, 101, 10))
AT = 0.10  # the share --quick --json reports

# Three searches, each over at least 1000 valid configurations. The spaces vary the knobs that share a trace
# (gradient accumulation beyond 2, ZeRO stage, offload) so that building an oracle takes a few minutes, and
# include full fine-tuning (lora_rank 0) with ZeRO and offload so that offload matters. Target cards: the
# card autofit picks for the budget (default_gpu_for_budget: 24 and 16 GB -> RTX 4090, 48 GB -> L40S).
ORACLES: dict[str, dict[str, Any]] = {
    "glm4-9b-24GB": {
        "model": "glm4-9b", "gpu_mem": "24GB", "gpu": "rtx4090",
        "space": {
            "per_device_train_batch_size": [1, 2, 4, 8], "gradient_accumulation_steps": [1, 2, 4, 8, 16],
            "seq_len": [1024, 2048, 4096], "lora_rank": [0, 16], "quantization": ["none", "nf4"],
            "gradient_checkpointing": [True, False], "zero_stage": [0, 1, 2, 3],
            "offload": ["none", "optimizer", "all"], "optimizer": ["adamw_torch"], "attn_implementation": ["sdpa"]},
    },
    "llama3.1-8b-16GB": {
        "model": "llama3.1-8b", "gpu_mem": "16GB", "gpu": "rtx4090",
        "space": {
            "per_device_train_batch_size": [1, 2, 4, 8, 16], "gradient_accumulation_steps": [2, 4, 8, 16],
            "seq_len": [512, 1024, 2048], "lora_rank": [0, 16], "quantization": ["none", "int8", "nf4"],
            "gradient_checkpointing": [True, False], "zero_stage": [0, 1, 2, 3],
            "offload": ["none", "optimizer", "all"], "optimizer": ["adamw_torch"], "attn_implementation": ["sdpa"]},
    },
    "qwen2.5-32b-48GB": {
        "model": "qwen2.5-32b", "gpu_mem": "48GB", "gpu": "l40s",
        "space": {
            "per_device_train_batch_size": [1, 2, 4, 8, 16], "gradient_accumulation_steps": [4, 16],
            "seq_len": [512, 1024, 2048], "lora_rank": [0, 16, 64], "quantization": ["none", "nf4"],
            "gradient_checkpointing": [True, False], "zero_stage": [0, 1, 2, 3],
            "offload": ["none", "optimizer", "all"], "optimizer": ["adamw_torch"], "attn_implementation": ["sdpa"]},
    },
}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# -- oracles --------------------------------------------------------------------------------------------
@dataclass
class Setting:
    """An oracle's search, as autofit runs it."""

    name: str
    plan: Any  # autofit.search.SearchPlan (its probe replaced per run)

    @property
    def candidates(self):
        return self.plan.candidates

    @property
    def budget_gib(self) -> float:
        return self.plan.budget.usable_gib


def make_setting(name: str, probe=None, trials: int = 1) -> Setting:
    from autofit.budget import make_budget
    from autofit.gpus import get_gpu
    from autofit.models import resolve_model
    from autofit.probes import TraceProbe
    from autofit.search import SearchPlan
    from autofit.space import SearchSpace

    spec = ORACLES[name]
    space = SearchSpace.from_mapping({k: {"choices": v, "default": v[0]} for k, v in spec["space"].items()},
                                     fallback=SearchSpace.load(), source=f"bench:{name}")
    plan = SearchPlan(model=resolve_model(spec["model"]), space=space, pins={}, budget=make_budget(spec["gpu_mem"]),
                      gpu=get_gpu(spec["gpu"]), gpu_source="named", probe=probe or TraceProbe(), trials=trials,
                      storage="memory://", study_name=name)
    return Setting(name=name, plan=plan)


def _fingerprint(setting: Setting) -> str:
    """What an oracle depends on: the space, model, budget, card, the trace probe's code and constants,
    and the versions of the libraries it runs."""
    from importlib.metadata import version

    plan = setting.plan
    parts = [json.dumps(ORACLES[setting.name], sort_keys=True), json.dumps(plan.model.config, sort_keys=True),
             str(plan.budget.usable_bytes), repr(plan.gpu), str(len(plan.candidates))]
    package = resources.files("autofit")
    for rel in ("probes/_trace.py", "probes/_memtrack.py", "probes/_zero.py", "data/runtime.yaml",
                "data/gpus.yaml", "data/knobs.yaml", "data/rules.yaml"):
        parts.append(package.joinpath(rel).read_text())
    for dist in ("torch", "transformers", "peft", "bitsandbytes"):
        parts.append(f"{dist}={version(dist)}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def _trace_group(config) -> str:
    """Configurations that share one trace (trace_step's cache key drops these knobs): build them together."""
    return traced_config(config).key()


def _build_part(args: tuple[str, list[str]]) -> dict[str, list]:
    name, groups = args
    import torch

    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    setting = make_setting(name)
    plan = setting.plan
    wanted = set(groups)
    out = {}
    for config in plan.candidates.configs:
        if _trace_group(config) not in wanted:
            continue
        try:
            r = plan.probe.run(plan.model, config, plan.context)
            out[config.key()] = [r.state.value, r.peak_memory_gib, r.tokens_per_s]
        except Exception as exc:  # recorded as a failed probe, as run_search would
            out[config.key()] = [Outcome.FAILED.value, None, None]
            log(f"  {name}: {config.key()}: {type(exc).__name__}: {exc}")
    return out


def load_oracle(name: str, jobs: int = 2) -> dict[str, Any]:
    """The oracle for `name`, from the cache or built (and cached) now."""
    setting = make_setting(name)
    path = CACHE / f"{name}-{_fingerprint(setting)}.json"
    if path.is_file():
        return json.loads(path.read_text())
    started = time.perf_counter()
    groups = sorted({_trace_group(c) for c in setting.candidates.configs})
    log(f"building oracle {name}: {len(setting.candidates)} configurations, {len(groups)} distinct traces, "
        f"{jobs} process(es)")
    parts = [(name, groups[i::max(1, 4 * jobs)]) for i in range(max(1, 4 * jobs))]
    results: dict[str, list] = {}
    if jobs > 1:
        with get_context("spawn").Pool(jobs) as pool:
            for part in pool.imap_unordered(_build_part, parts):
                results.update(part)
    else:
        for part in parts:
            results.update(_build_part(part))
    oracle = {"name": name, **{k: v for k, v in ORACLES[name].items() if k != "space"}, "space": ORACLES[name]["space"],
              "usable_budget_gib": setting.budget_gib, "configs": len(setting.candidates), "traces": len(groups),
              "build_s": round(time.perf_counter() - started, 1), "results": results}
    atomic_write(path, json.dumps(oracle))
    log(f"built oracle {name} in {oracle['build_s']:.0f} s")
    return oracle


def hypervolume(points: list[tuple[float, float]], budget: float) -> float:
    """Exact 2-D hypervolume of (tokens/s, peak GiB) points: maximise tokens/s, minimise memory, reference
    point (0 tokens/s, budget GiB). Points above the budget add nothing."""
    volume, best = 0.0, 0.0
    for tps, mem in sorted(((t, m) for t, m in points if m <= budget and t > 0), key=lambda p: (p[1], -p[0])):
        if tps > best:
            volume += (tps - best) * (budget - mem)
            best = tps
    return volume


def oracle_summary(oracle: dict[str, Any]) -> dict[str, float]:
    ok = [(tps, mem) for state, mem, tps in oracle["results"].values() if state == Outcome.OK]
    front, best = 0, 0.0
    for tps, _mem in sorted(ok, key=lambda p: (p[1], -p[0])):
        if tps > best:
            front, best = front + 1, tps
    return {"hv": hypervolume(ok, oracle["usable_budget_gib"]), "best_tps": best, "feasible": len(ok),
            "front": front, "configs": oracle["configs"]}


# -- runs -----------------------------------------------------------------------------------------------
def _oracle_probe_class():
    from autofit.probes import Probe, ProbeResult

    class OracleProbe(Probe):
        """Looks a configuration up in the oracle: what the trace probe returned for it."""

        name = "trace"
        estimated = True

        def __init__(self, results: dict[str, list], censor_oom: bool = False):
            self.results, self.censor_oom = results, censor_oom

        def run(self, model, config, context):
            state, peak, tps = self.results.get(config.key(), [Outcome.FAILED, None, None])
            if state not in (Outcome.OK, Outcome.OOM):
                return ProbeResult(state=Outcome.FAILED, probe=self.name, estimated=True, error="failed in the oracle")
            if state == Outcome.OOM and self.censor_oom:  # as a real GPU reports it: no figures
                peak = tps = None
            return ProbeResult(state=state, probe=self.name, estimated=True, peak_memory_gib=peak,
                               tokens_per_s=tps)

    return OracleProbe


def _grid_sampler_class():
    import optuna
    from optuna.distributions import CategoricalDistribution

    class GridOrderSampler(optuna.samplers.BaseSampler):
        """The candidates in enumeration order (the space's product order, invalid ones skipped)."""

        def __init__(self, candidates):
            self.candidates, self.next = candidates, 0

        def infer_relative_search_space(self, study, trial):
            return {k: CategoricalDistribution(v) for k, v in self.candidates.choices.items()}

        def sample_relative(self, study, trial, search_space):
            if not search_space or self.next >= len(self.candidates):
                return {}
            self.next += 1
            return self.candidates.params(self.next - 1)

        def sample_independent(self, study, trial, param_name, param_distribution):
            return param_distribution.choices[0]

        def remaining(self, study):
            return len(self.candidates) - self.next

    return GridOrderSampler


def make_sampler(method: str, candidates, seed: int):
    import optuna

    from autofit.sampler import AutofitSampler

    if method == "autofit":
        return AutofitSampler(candidates, seed=seed)
    if method == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if method == "grid":
        return _grid_sampler_class()(candidates)
    if method == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed)
    if method == "tpe":
        return optuna.samplers.TPESampler(seed=seed)
    raise ValueError(method)


class _Stop(Exception):
    pass


def _baseline_search(plan, study, on_trial) -> str:
    """The loop run_search runs (ask, suggest every searched knob, probe, record, tell), for the baselines,
    with one difference: an invalid combination is told PRUNED instead of FAIL. It costs no probe either way,
    but TPE ignores FAIL trials and, told FAIL, keeps proposing invalid combinations (measured: 16 probes in
    13,600 trials on glm4-9b-24GB); told PRUNED, it learns to avoid them like any bad result."""
    from optuna.trial import TrialState

    from autofit.rules import violated_rule
    from autofit.trials import EVALUATED, TrialAttr, set_outcome, tell

    budget = plan.budget.usable_gib
    evaluated = 0
    remaining = getattr(study.sampler, "remaining", None)
    while evaluated < plan.trials:
        if remaining is not None and remaining(study) == 0:
            return "exhausted"
        trial = study.ask()
        params = {k: trial.suggest_categorical(k, list(v)) for k, v in plan.candidates.choices.items()}
        index = plan.candidates.index_of_params(params)
        config = plan.candidates.configs[index] if index is not None else None
        if config is None or violated_rule(config, plan.model.facts) is not None:
            set_outcome(trial, Outcome.INVALID)
            study.tell(trial, state=TrialState.PRUNED)
        else:
            trial.set_user_attr(TrialAttr.CONFIG, config.to_dict())
            trial.set_user_attr(TrialAttr.CONFIG_KEY, config.key())
            result = plan.probe.run(plan.model, config, plan.context)
            if result.peak_memory_gib is not None:
                trial.set_user_attr(TrialAttr.PEAK_MEMORY_GIB, result.peak_memory_gib)
                trial.set_constraint("memory", result.peak_memory_gib - budget)
            if result.tokens_per_s is not None:
                trial.set_user_attr(TrialAttr.TOKENS_PER_S, result.tokens_per_s)
            set_outcome(trial, result.state)
            tell(study, trial, result.state, [result.tokens_per_s, result.peak_memory_gib])
            evaluated += result.state in EVALUATED
        on_trial(study.get_trials(deepcopy=False)[-1])
    return "trials"


def run_method(name: str, oracle: dict[str, Any], method: str, seed: int, probes: int,
               censor_oom: bool = False) -> dict[str, Any]:
    """One search of `probes` probes with `method`; the hypervolume and best feasible tokens/s after each.
    autofit runs in autofit's own loop (run_search: before_claim, remaining, the study lock); the baselines
    in the same loop written out (_baseline_search)."""
    import optuna

    from autofit.search import DIRECTIONS, run_search
    from autofit.trials import EVALUATED, TrialAttr, outcome_of

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.filterwarnings("ignore")
    setting = make_setting(name, probe=_oracle_probe_class()(oracle["results"], censor_oom), trials=probes)
    plan, budget = setting.plan, setting.budget_gib
    study = optuna.create_study(directions=DIRECTIONS, sampler=make_sampler(method, plan.candidates, seed))
    for key, value in plan.study_attrs().items():
        study.set_user_attr(key, value)
    points: list[tuple[float, float]] = []
    hv, best, asks = [], [], [0]
    started = time.perf_counter()

    def on_trial(trial):
        asks[0] += 1
        state = outcome_of(trial)
        if state in EVALUATED:
            if state == Outcome.OK:
                points.append((trial.user_attrs[TrialAttr.TOKENS_PER_S], trial.user_attrs[TrialAttr.PEAK_MEMORY_GIB]))
            hv.append(hypervolume(points, budget))
            best.append(max((t for t, m in points if m <= budget), default=0.0))
        if asks[0] >= 20 * probes + 1000:  # a sampler stuck on invalid combinations: stop, keep what it found
            raise _Stop

    try:
        if method == "autofit":
            stopped = run_search(plan, study, on_trial=on_trial, poll_s=0.0)
        else:
            stopped = _baseline_search(plan, study, on_trial)
    except _Stop:
        stopped = "stuck"
    seconds = time.perf_counter() - started
    found = len(hv)
    hv += [hv[-1] if hv else 0.0] * (probes - len(hv))  # exhausted early: nothing left to probe
    best += [best[-1] if best else 0.0] * (probes - len(best))
    _check_with_optuna(study, budget, hv[found - 1] if found else 0.0)
    states = [outcome_of(t) for t in study.get_trials(deepcopy=False)]
    return {"oracle": name, "method": method, "seed": seed, "hv": hv, "best": best, "stopped": stopped,
            "probes": found, "trials": len(states), "inferred": states.count(Outcome.OOM_INFERRED),
            "invalid": states.count(Outcome.INVALID), "seconds": round(seconds, 2)}


def _check_with_optuna(study, budget: float, expected: float) -> None:
    """The run's final hypervolume must equal Optuna's (plot_hypervolume_history: its public hypervolume)."""
    import optuna

    if not study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        figure = optuna.visualization.plot_hypervolume_history(study, reference_point=[0.0, budget])
    theirs = float(figure.data[0].y[-1]) if len(figure.data[0].y) else 0.0
    if not math.isclose(theirs, expected, rel_tol=1e-9, abs_tol=1e-6):
        raise AssertionError(f"hypervolume {expected} differs from Optuna's {theirs}")


def _run_key(name: str, method: str, seed: int, probes: int) -> str:
    """What a run's result depends on: the oracle, the loop and the sampler's code, Optuna and numpy."""
    import inspect
    from importlib.metadata import version

    parts = [name, method, str(seed), str(probes), _fingerprint(make_setting(name)), version("optuna"),
             version("numpy")]
    parts += [inspect.getsource(f) for f in (run_method, _baseline_search, make_sampler, _grid_sampler_class,
                                             _oracle_probe_class, hypervolume)]
    if method == "autofit":
        package = resources.files("autofit")
        parts += [package.joinpath(rel).read_text() for rel in ("sampler.py", "candidates.py", "search.py",
                                                                "storage.py", "knobs.py", "rules.py")]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def _run_job(args):
    name, method, seed, probes, reuse, censor = args
    tag = "-censored" if censor else ""
    path = CACHE / "runs" / f"{name}-{method}{tag}-{seed}-{probes}-{_run_key(name, method, seed, probes)}.json"
    if reuse and path.is_file():
        return json.loads(path.read_text())
    oracle = _ORACLES_IN_WORKER.get(name) or load_oracle(name, jobs=1)
    _ORACLES_IN_WORKER[name] = oracle
    run = run_method(name, oracle, method, seed, probes, censor)
    if reuse:  # atomically: parallel workers, and a run killed mid-write must not leave a broken cache file
        atomic_write(path, json.dumps(run))
    return run


_ORACLES_IN_WORKER: dict[str, Any] = {}


def run_all(names: list[str], methods: list[str], seeds: list[int], fractions: tuple[float, ...],
            jobs: int, reuse_runs: bool = False, censor_oom: bool = False) -> dict[str, Any]:
    """Every method on every oracle, `seeds` runs each (one for grid order), scored at `fractions`. With
    `reuse_runs`, a run whose inputs (oracle, code, versions) are unchanged is read from the cache."""
    oracles = {name: load_oracle(name, jobs=jobs) for name in names}
    summaries = {name: oracle_summary(o) for name, o in oracles.items()}
    tasks = []
    for name in names:
        probes = math.ceil(max(fractions) * oracles[name]["configs"])
        for method in methods:
            for seed in (seeds if method != "grid" else seeds[:1]):  # grid order ignores the seed
                tasks.append((name, method, seed, probes, reuse_runs, censor_oom))
    tasks.sort(key=lambda t: (t[1] != "tpe", t[1] != "autofit"))  # the slowest first
    runs = []
    started = time.perf_counter()
    if jobs > 1:
        with get_context("spawn").Pool(jobs) as pool:
            for run in pool.imap_unordered(_run_job, tasks):
                runs.append(run)
                log(f"  {run['oracle']} {run['method']} seed {run['seed']}: {run['probes']} probes in "
                    f"{run['seconds']:.1f} s ({len(runs)}/{len(tasks)}, {time.perf_counter() - started:.0f} s)")
    else:
        for task in tasks:
            runs.append(_run_job(task))
            run = runs[-1]
            log(f"  {run['oracle']} {run['method']} seed {run['seed']}: {run['probes']} probes"
                f" in {run['seconds']:.1f} s")
    results: dict[str, Any] = {}
    for name in names:
        summary = summaries[name]
        results[name] = {"summary": summary, "methods": {},
                         "run_seconds": sum(r["seconds"] for r in runs if r["oracle"] == name)}
        for method in methods:
            mine = [r for r in runs if r["oracle"] == name and r["method"] == method]
            if method == "grid":
                mine = mine * len(seeds)
            curve = []
            for fraction in fractions:
                k = math.ceil(fraction * summary["configs"])
                curve.append({"fraction": fraction, "probes": k,
                              "hv_ratio": statistics.median(r["hv"][k - 1] / summary["hv"] for r in mine),
                              "best_tps_ratio": statistics.median(r["best"][k - 1] / summary["best_tps"]
                                                                  for r in mine)})
            results[name]["methods"][method] = {
                "curve": curve, "seconds": statistics.median(r["seconds"] for r in mine),
                "inferred": statistics.median(r["inferred"] for r in mine),
                "probes_made": statistics.median(r["probes"] for r in mine)}
    return results


# -- the report -----------------------------------------------------------------------------------------
BEGIN, END = "<!-- results: generated by bench/search_efficiency.py -->", "<!-- /results -->"


def write_docs(results: dict[str, Any], oracles_meta: dict[str, Any], wall_s: float) -> None:
    """The plot, and the results section of docs/search-efficiency.md (between its markers; the rest of the
    page is written by hand)."""
    DOCS.mkdir(exist_ok=True)
    _plot(results, DOCS / "search-efficiency.png")
    atomic_write(CACHE / "results.json", json.dumps(results, indent=1))
    total = sum(r["run_seconds"] for r in results.values())
    lines = [BEGIN, "",
             f"Measured {time.strftime('%Y-%m-%d')} on {platform.machine()}, {os.cpu_count()} cores, Python "
             f"{platform.python_version()}, optuna {_version('optuna')}: {total / 60:.0f} min of runs in all (every "
             f"curve to 100%; two at a time, about {total / 120:.0f} min of wall time; oracles cached).", "",
             "| oracle | model | --gpu-mem (usable GiB) | card | valid configs | distinct traces | feasible | "
             "front points | fastest tokens/s (est.) |", "|---|---|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        meta, s = oracles_meta[name], r["summary"]
        lines.append(f"| {name} | {meta['model']} | {meta['gpu_mem']} ({meta['usable_budget_gib']:.2f}) | "
                     f"{meta['gpu']} | {s['configs']} | {meta['traces']} | {s['feasible']} | {s['front']} | "
                     f"{s['best_tps']:,.0f} |")
    lines += ["", "### At 10% of the space (medians of 5 seeds)", "",
              "| oracle | probes | method | hypervolume ratio | fastest tokens/s ratio |", "|---|---|---|---|---|"]
    for name, r in results.items():
        for method, m in r["methods"].items():
            c = _at(m)
            lines.append(f"| {name} | {c['probes']} | {method} | {c['hv_ratio']:.4f} | {c['best_tps_ratio']:.4f} |")
    lines += ["", "![hypervolume ratio and fastest tokens/s ratio against the share of the space probed]"
                  "(search-efficiency.png)"]
    for key, title in (("hv_ratio", "Hypervolume ratio"), ("best_tps_ratio", "Fastest tokens/s ratio")):
        lines += ["", f"### {title} against the share of the space probed (medians of 5 seeds)", ""]
        for name, r in results.items():
            curve = next(iter(r["methods"].values()))["curve"]
            lines += [f"**{name}**", "",
                      "| method | " + " | ".join(f"{c['fraction']:.0%} ({c['probes']})" for c in curve) + " |",
                      "|---|" + "---|" * len(curve)]
            for method, m in r["methods"].items():
                lines.append(f"| {method} | " + " | ".join(f"{c[key]:.3f}" for c in m["curve"]) + " |")
            lines.append("")
    lines += ["### Per run (medians of 5 seeds)", "",
              "| oracle | method | probes made (of 100%) | oom-inferred records | seconds |", "|---|---|---|---|---|"]
    for name, r in results.items():
        for method, m in r["methods"].items():
            lines.append(f"| {name} | {method} | {m['probes_made']:.0f} | {m['inferred']:.0f} | {m['seconds']:.0f} |")
    lines += ["", END]
    page = DOCS / "search-efficiency.md"
    text = page.read_text() if page.is_file() else f"# Search efficiency\n\n{BEGIN}\n{END}\n"
    head, _, rest = text.partition(BEGIN)
    _, _, tail = rest.partition(END)
    atomic_write(page, head + "\n".join(lines) + tail)


def _version(dist: str) -> str:
    from importlib.metadata import version

    return version(dist)


def _plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results)
    fig, axes = plt.subplots(2, len(names), figsize=(5 * len(names), 8), squeeze=False)
    # random is drawn wide and pale: NSGA-II (thin, on top) coincides with it until its first generation completes
    styles = {"autofit": ("tab:red", "-", 2.5, 1.0), "random": ("tab:blue", "-", 5.0, 0.35),
              "grid": ("tab:gray", ":", 1.5, 1.0), "nsga2": ("tab:green", "-.", 1.5, 1.0),
              "tpe": ("tab:purple", "--", 1.5, 1.0)}
    for col, name in enumerate(names):
        for row, key in enumerate(("hv_ratio", "best_tps_ratio")):
            ax = axes[row][col]
            for method, m in results[name]["methods"].items():
                color, dash, width, alpha = styles[method]
                ax.plot([100 * c["fraction"] for c in m["curve"]], [c[key] for c in m["curve"]], dash,
                        color=color, linewidth=width, alpha=alpha, marker="o", markersize=3, label=method)
            ax.set_xscale("log")
            ax.set_xticks([1, 2, 5, 10, 20, 50, 100], ["1", "2", "5", "10", "20", "50", "100"])
            ax.set_xlabel("probes, % of the valid configurations (log scale)")
            ax.set_ylabel("hypervolume / exhaustive" if key == "hv_ratio" else "best tokens/s / exhaustive best")
            ax.set_title(name)
            ax.set_xlim(0.9, 110)
            ax.set_ylim(max(0.0, min(ax.get_ylim()[0], 0.95)), 1.01)
            ax.grid(alpha=0.3)
            ax.axhline(0.99, color="black", linewidth=0.6)
            if row == 0 and col == 0:
                ax.legend(loc="lower right")
    fig.suptitle("Search efficiency: medians of 5 seeds (trace-probe oracles)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _at(method_results: dict[str, Any], fraction: float = AT) -> dict[str, float]:
    return next(c for c in method_results["curve"] if math.isclose(c["fraction"], fraction))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="only up to 10%% of each space")
    parser.add_argument("--json", action="store_true", help="print one JSON object (the 10%% figures)")
    parser.add_argument("--oracle", action="append", choices=list(ORACLES), help="only these oracles")
    parser.add_argument("--method", action="append", choices=list(METHODS), help="only these methods")
    parser.add_argument("--seeds", type=int, default=len(SEEDS))
    parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--censor-oom", action="store_true",
                        help="out-of-memory probes return no peak and no tokens/s (as a real GPU reports them); "
                             "the docs are not rewritten")
    parser.add_argument("--fresh", action="store_true",
                        help="rerun every run (the full run otherwise reuses cached runs whose inputs are unchanged; "
                             "--quick always reruns)")
    args = parser.parse_args()
    started = time.perf_counter()
    names = args.oracle or list(ORACLES)
    methods = args.method or list(METHODS)
    fractions = tuple(f for f in FRACTIONS if f <= AT) if args.quick else FRACTIONS
    results = run_all(names, methods, list(SEEDS[:args.seeds]), fractions, args.jobs,
                      reuse_runs=not args.quick and not args.fresh, censor_oom=args.censor_oom)
    wall = time.perf_counter() - started
    log(f"done in {wall:.0f} s")
    if args.json:
        print(json.dumps({name: {method: {"hv_ratio_at_10pct": _at(m)["hv_ratio"],
                                          "best_tps_ratio_at_10pct": _at(m)["best_tps_ratio"]}
                                 for method, m in r["methods"].items()} for name, r in results.items()}))
    else:
        for name, r in results.items():
            for method, m in r["methods"].items():
                c = _at(m)
                print(f"{name:18s} {method:8s} at 10%: hv {c['hv_ratio']:.4f}  best tokens/s {c['best_tps_ratio']:.4f}")
    if not args.quick and not args.censor_oom:
        metas = {name: {k: v for k, v in load_oracle(name).items() if k != "results"} for name in names}
        write_docs(results, metas, wall)


if __name__ == "__main__":
    main()
