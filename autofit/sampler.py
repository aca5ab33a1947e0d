"""autofit's Optuna sampler: TPE that knows what an out-of-memory result means.

Optuna's NSGA-II (the multi-objective default) learns only from completed trials, so a configuration
that ran out of memory teaches it nothing and the same region is proposed again. This sampler
  * never proposes a configuration the study already holds (in any state, running included),
  * never proposes a configuration that needs at least as much memory as one that already ran out,
    by the knobs' memory orders (data/knobs.yaml): larger batch, longer sequence, higher rank, less
    quantization, no checkpointing, ... (other knobs equal),
  * proposes jointly with multivariate TPE, which ranks pruned (OOM) and infeasible trials below feasible
    ones, falling back to a uniform draw among the remaining candidates during start-up or when TPE
    keeps proposing excluded ones.
It lives inside Optuna, so storage, resume, plots and the dashboard work as for any sampler.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution
from optuna.samplers import BaseSampler
from optuna.trial import FrozenTrial, TrialState

from .candidates import CandidateSet
from .probes._base import EVALUATED, INVALID, OOM, OOM_PREDICTED

# user attribute holding autofit's outcome of a trial (ok, oom, invalid, failed, ...)
STATE_ATTR = "autofit_state"
CONFIG_KEY_ATTR = "config_key"
OOM_STATES = (OOM, OOM_PREDICTED, "oom-inferred")
_HELD = (*EVALUATED, INVALID, OOM_PREDICTED)  # outcomes that keep a configuration from being proposed again


class AutofitSampler(BaseSampler):
    def __init__(self, candidates: CandidateSet, seed: int | None = None, n_startup_trials: int = 8,
                 max_tpe_tries: int = 16):
        self._candidates = candidates
        self._rng = np.random.RandomState(seed)
        self._max_tpe_tries = max_tpe_tries
        # constant_liar: trials in flight on other workers count as bad guesses, so workers spread out
        self._tpe = optuna.samplers.TPESampler(seed=seed, multivariate=True, n_startup_trials=n_startup_trials,
                                               constant_liar=True)

    def reseed_rng(self) -> None:
        self._rng.seed()
        self._tpe.reseed_rng()

    def excluded(self, study: optuna.Study, current: int | None = None) -> np.ndarray:
        """Mask of candidates not to propose: held by the study (evaluated, invalid, running or queued), or
        implied out of memory. Configurations of lost or interrupted trials may be proposed again."""
        excluded = np.zeros(len(self._candidates), dtype=bool)
        for trial in study.get_trials(deepcopy=False):
            if trial.number == current:
                continue
            if trial.state not in (TrialState.RUNNING, TrialState.WAITING) and \
                    trial.user_attrs.get(STATE_ATTR) not in _HELD:
                continue
            key = trial.user_attrs.get(CONFIG_KEY_ATTR)
            index = self._candidates._keys.get(key) if key else self._candidates.index_of_params(trial.params)
            if index is None:
                continue
            excluded[index] = True
            if trial.user_attrs.get(STATE_ATTR) in OOM_STATES:
                excluded |= self._candidates.at_least_as_large_as(index)
        return excluded

    def remaining(self, study: optuna.Study) -> int:
        """How many candidates could still be proposed."""
        return int((~self.excluded(study)).sum())

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return {k: CategoricalDistribution(v) for k, v in self._candidates.choices.items()}

    def sample_relative(self, study: optuna.Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        if not search_space:
            return {}
        excluded = self.excluded(study, current=trial.number)
        remaining = np.flatnonzero(~excluded)
        if remaining.size == 0:
            return {}  # exhausted: the search loop stops before asking; sample_independent covers races
        for _ in range(self._max_tpe_tries):
            params = self._tpe.sample_relative(study, trial, search_space)
            if not params:
                break  # TPE is still in its random start-up
            index = self._candidates.index_of_params(params)
            if index is not None and not excluded[index]:
                return params
        return self._candidates.params(int(self._rng.choice(remaining)))

    def sample_independent(self, study: optuna.Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        choices = param_distribution.choices
        return choices[self._rng.randint(len(choices))]

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self._tpe.before_trial(study, trial)

    def after_trial(self, study: optuna.Study, trial: FrozenTrial, state: TrialState, values) -> None:
        self._tpe.after_trial(study, trial, state, values)
