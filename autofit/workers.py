"""--workers N: several probes at a time on one machine, each in its own process against the shared study.
Workers on other machines join by running the same search against the same (PostgreSQL) storage."""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import signal
import time
from collections.abc import Callable

import optuna

from .gpus import cuda_device_count
from .lifecycle import die_with_parent, sigterm_raises
from .search import SearchPlan, evaluated_count, open_study, run_search
from .trials import outcome_of


def _worker_main(plan: SearchPlan, index: int, parent_pid: int | None = None) -> None:
    """One of --workers N processes: probe against the shared study until it is done. SIGTERM (also sent
    when the parent dies) stops it like Ctrl-C: its probe is killed and its trial marked interrupted."""
    sigterm_raises()
    die_with_parent(signal.SIGTERM, parent_pid)
    try:
        plan = dataclasses.replace(plan, seed=None if plan.seed is None else plan.seed + index)
        run_search(plan, open_study(plan))
    except KeyboardInterrupt:
        pass


def run_workers(plan: SearchPlan, study: optuna.Study, workers: int,
                on_trial: Callable[[optuna.trial.FrozenTrial], None] | None = None) -> str:
    """Run `workers` processes on the study (one GPU each when there are enough), report each finished
    trial to `on_trial`, and return why the search stopped."""
    context = multiprocessing.get_context("spawn")
    processes = []
    gpus_visible = cuda_device_count()
    for index in range(workers):
        saved = os.environ.get("CUDA_VISIBLE_DEVICES")
        if gpus_visible >= workers:
            os.environ["CUDA_VISIBLE_DEVICES"] = str(index)
        process = context.Process(target=_worker_main, args=(plan, index, os.getpid()), name=f"autofit-worker-{index}")
        process.start()
        processes.append(process)
        if saved is None:
            os.environ.pop("CUDA_VISIBLE_DEVICES", None)
        else:
            os.environ["CUDA_VISIBLE_DEVICES"] = saved
    seen: set[int] = set()
    try:
        while True:
            alive = any(p.is_alive() for p in processes)
            for trial in study.get_trials(deepcopy=False):
                finished = trial.state not in (optuna.trial.TrialState.RUNNING, optuna.trial.TrialState.WAITING)
                if trial.number not in seen and finished and outcome_of(trial) is not None:
                    seen.add(trial.number)
                    if on_trial is not None:
                        on_trial(trial)
            if not alive:
                break
            time.sleep(0.5)
    except KeyboardInterrupt:  # Ctrl-C reaches the workers through the terminal; SIGTERM to us does not
        for process in processes:
            if process.is_alive():
                process.terminate()
        raise
    finally:
        for process in processes:
            process.join(timeout=30)
    return "trials" if evaluated_count(study) >= plan.trials else "exhausted"
