"""autofit's Optuna sampler: a search that knows how memory behaves, so it needs few probes.

Generic samplers (Optuna's NSGA-II, TPE) treat the knobs as a black box. autofit knows more, and this
sampler uses it:

* **Memory is monotone** in most knobs (data/knobs.yaml: larger batch, longer sequence, higher rank, less
  quantization, no checkpointing, no offload, ... need at least as much memory, other knobs equal). Once a
  configuration runs out of memory, every configuration at least as large is out of memory too: none of them
  is ever probed, and the next step beyond the failed one (along batch size, else sequence length, else
  another knob) is recorded as an `oom-inferred` trial (PRUNED, not a probe; see `before_claim`). Once one
  fits, everything below it fits, and every measured peak bounds the memory of the configurations above it
  (from below) and below it (from above).
* **A model of the whole space.** Two Gaussian processes over all candidates, one for log peak memory (on the
  knobs' memory ranks, so e.g. accumulation 4 and 8 look alike, as they are) and one for log tokens/s, are
  updated after every probe, with a lengthscale per knob fitted to what was measured. Memory predictions are
  clipped to the monotone bounds; an out-of-memory result without a measured peak counts as 15% above the
  budget.
* **Each probe goes where it can grow the Pareto front most.** The next configuration maximises the expected
  gain in hypervolume of the front (tokens/s against peak memory, reference point: 0 tokens/s at the usable
  budget) plus the expected gain in the best feasible tokens/s, both relative to what was found so far. The
  expectation runs over the two models' predictive distributions, and a configuration predicted not to fit
  counts for nothing, so probes concentrate on the feasibility boundary of promising settings: along batch
  and sequence length this behaves like a bisection per setting of the other knobs, guided by the model.
* It never proposes a configuration the study holds (evaluated, invalid, oom-predicted, inferred, running
  or queued); configurations of lost or interrupted trials may be proposed again.

Everything it knows is rebuilt from the study's trials (incrementally), so it works with any storage, resume,
several workers on one study, --set pins, --global-batch and any space file. Configurations in flight on
other workers are excluded (not fantasised). It lives inside Optuna, so plots and the dashboard see an
ordinary study. Cost per proposal: O(n N) for n probes and N candidates, plus a lengthscale fit (O(n^3))
whenever n doubles; the models stop growing after a few hundred probes.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution
from optuna.samplers import BaseSampler
from optuna.trial import FrozenTrial, TrialState

from .candidates import CandidateSet
from .knobs import knob_specs
from .trials import HELD, OOM_STATES, Outcome, StudyAttr, TrialAttr, outcome_of

# the knobs along which an out-of-memory result's next step is recorded as oom-inferred, in order of preference
# (the axes the search bisects per setting of the other knobs); then the other searched knobs
RECORD_ALONG = ("per_device_train_batch_size", "seq_len")

# probabilists' Gauss-Hermite nodes and weights: expectations over a normal predictive distribution
_GH_NODES = np.array([-2.856970013872806, -1.355626179974266, 0.0, 1.355626179974266, 2.856970013872806])
_GH_WEIGHTS = np.array([0.011257411327721, 0.222075922005613, 0.533333333333333, 0.222075922005613,
                        0.011257411327721])


class _GP:
    """Gaussian-process regression over a fixed, finite set of inputs (the candidates), updated one
    observation at a time in O(n N). Squared-exponential kernel with a lengthscale per feature (ARD) on
    features scaled to [0, 1]. At each refit (after every observation while there are few, then when their
    number has doubled) the targets are standardised and, from 12 observations on, the lengthscales are fitted
    by maximising the marginal likelihood (Adam on log lengthscales, a log-normal prior around 1), so a knob
    that hardly moves the target (a ZeRO stage for throughput) stops making its configurations look unknown.
    Past `max_points` observations the model stays as it is."""

    def __init__(self, features: np.ndarray, noise: float = 1e-3, max_points: int | None = None):
        self.x = features
        self.lengthscales = np.ones(features.shape[1])
        self.noise = noise
        self.max_points = max_points or int(min(600, max(100, 3e7 / max(1, len(features)))))
        self.index: list[int] = []
        self.y: list[float] = []
        self.refitted_at = 0
        self._reset(0.0, 1.0)

    def _reset(self, mean: float, scale: float) -> None:
        n = len(self.x)
        self.mean, self.scale = mean, scale
        self.xs = self.x / self.lengthscales
        self.sq = (self.xs**2).sum(axis=1)
        self.v = np.empty((min(self.max_points, 16), n))  # rows of V = L^-1 K(X_train, X_all)
        self.z = np.empty(min(self.max_points, 16))  # L^-1 (y - mean) / scale
        self.used = 0  # observations in the factorisation
        self.mu = np.zeros(n)  # standardised posterior mean
        self.var = np.ones(n)  # standardised posterior variance

    def _kernel_row(self, j: int) -> np.ndarray:
        d2 = np.maximum(self.sq + self.sq[j] - 2.0 * (self.xs @ self.xs[j]), 0.0)
        return np.exp(-0.5 * d2)

    def _absorb(self, j: int, y: float) -> None:
        k = self.used
        if k == len(self.v):  # grow the factor's storage by doubling
            grow = min(self.max_points, 2 * k)
            self.v = np.concatenate([self.v, np.empty((grow - k, self.v.shape[1]))])
            self.z = np.concatenate([self.z, np.empty(grow - k)])
        v = self.v[:k]
        col = v[:, j]
        d = math.sqrt(max(1.0 + self.noise - float(col @ col), self.noise))
        row = (self._kernel_row(j) - col @ v) / d
        zj = ((y - self.mean) / self.scale - float(col @ self.z[:k])) / d
        self.v[k], self.z[k] = row, zj
        self.used = k + 1
        self.mu += row * zj
        self.var = np.maximum(self.var - row**2, 1e-9)

    def add(self, j: int, y: float) -> None:
        if len(self.index) >= self.max_points:
            return
        self.index.append(j)
        self.y.append(y)
        n = len(self.index)
        if n <= 8 or n >= 2 * self.refitted_at:
            self.refit()
        else:
            self._absorb(j, y)

    def refit(self) -> None:
        y = np.array(self.y)
        mean, scale = float(y.mean()), float(max(y.std(), 0.05))
        if len(y) >= 12:
            self._fit_lengthscales((y - mean) / scale)
        self._reset(mean, scale)
        for j, value in zip(self.index, self.y, strict=False):
            self._absorb(j, value)
        self.refitted_at = len(self.index)

    def _fit_lengthscales(self, y: np.ndarray, steps: int = 40, rate: float = 0.1) -> None:
        x = self.x[self.index]
        n = len(x)
        diff = (x[:, None, :] - x[None, :, :]) ** 2  # (n, n, features)
        theta = np.log(self.lengthscales)
        first, second = np.zeros_like(theta), np.zeros_like(theta)
        for step in range(1, steps + 1):
            inv_sq = np.exp(-2.0 * theta)
            k = np.exp(-0.5 * diff @ inv_sq)
            try:
                chol = np.linalg.cholesky(k + self.noise * np.eye(n))
            except np.linalg.LinAlgError:
                return
            chol_inv = np.linalg.inv(chol)
            k_inv = chol_inv.T @ chol_inv
            alpha = k_inv @ y
            weights = (np.outer(alpha, alpha) - k_inv) * k
            grad = 0.5 * np.einsum("ij,ijd->d", weights, diff) * inv_sq - theta  # + log-normal prior N(0, 1)
            first = 0.9 * first + 0.1 * grad
            second = 0.999 * second + 0.001 * grad**2
            theta = np.clip(theta + rate * (first / (1 - 0.9**step)) / (np.sqrt(second / (1 - 0.999**step)) + 1e-8),
                            math.log(0.05), math.log(20.0))
        self.lengthscales = np.exp(theta)

    def predict(self) -> tuple[np.ndarray, np.ndarray]:
        """Posterior mean and standard deviation at every input, in the targets' units."""
        return self.mean + self.scale * self.mu, self.scale * np.sqrt(self.var)


def _features(candidates: CandidateSet, for_memory: bool) -> np.ndarray:
    """One row per candidate, each searched knob scaled to [0, 1]: integer knobs by log2 value (for memory:
    by memory rank, so values of equal rank coincide), ordered choices by memory rank (for memory) or one-hot
    (for throughput), unordered knobs one-hot (scaled so two categories are 1 apart)."""
    specs = knob_specs()
    columns: list[np.ndarray] = []

    def scaled(x: np.ndarray) -> np.ndarray:
        lo, hi = float(np.min(x)), float(np.max(x))
        return (x - lo) / (hi - lo) if hi > lo else np.zeros_like(x)

    for name in candidates.searched:
        spec = specs[name]
        values = [getattr(c, name) for c in candidates.configs]
        ordered = spec.memory_order not in (None, "none")
        if spec.type == "int":
            if name == "lora_rank":  # 0 = full fine-tuning: its own axis
                full = np.array([v == 0 for v in values], dtype=float)
                if full.any():
                    columns.append(full)
                ranks = np.array([math.log2(v) if v > 0 else 0.0 for v in values])
                lora = full == 0
                if lora.any():
                    ranks[~lora] = ranks[lora].max()
                    columns.append(scaled(ranks))
                continue
            if for_memory and ordered:
                order_ranks = [spec.ordered_rank(v) for v in values]
                columns.append(scaled(np.log2(np.maximum(order_ranks, 1.0))))
            else:
                columns.append(scaled(np.log2(np.maximum(np.array(values, dtype=float), 1.0))))
        elif ordered and (for_memory or spec.type == "bool"):
            columns.append(scaled(np.array([spec.memory_rank(v) for v in values], dtype=float)))
        else:
            for level in dict.fromkeys(values):
                columns.append(np.array([v == level for v in values], dtype=float) / math.sqrt(2.0))
    if not columns:
        return np.zeros((len(candidates), 1))
    return np.stack(columns, axis=1)


def _hv_2d(points: list[tuple[float, float]], budget: float) -> float:
    """Hypervolume of (tokens/s, peak GiB) points against the reference point (0 tokens/s, budget GiB)."""
    best, volume, front = 0.0, 0.0, _front(points, budget)
    for k, (mem, tps) in enumerate(front):
        right = front[k + 1][0] if k + 1 < len(front) else budget
        volume += tps * (right - mem)
        best = tps
    return volume if best else 0.0


def _front(points, budget: float) -> list[tuple[float, float]]:
    """The non-dominated (memory, tokens/s) pairs within the budget, by ascending memory (and tokens/s)."""
    front: list[tuple[float, float]] = []
    for tps, mem in sorted(points, key=lambda p: (p[1], -p[0])):
        if mem <= budget and tps > (front[-1][1] if front else 0.0):
            front.append((mem, tps))
    return front


class _Knowledge:
    """What the study's trials say about every candidate, kept up to date incrementally."""

    def __init__(self, candidates: CandidateSet):
        self.c = candidates
        n = len(candidates)
        self.seen: dict[int, Outcome] = {}  # trial number -> the outcome already absorbed
        self.held = np.zeros(n, dtype=bool)  # finished trials that keep a candidate from being proposed
        self.oom = np.zeros(n, dtype=bool)  # out of memory: probed, predicted or implied by dominance
        self.fits = np.zeros(n, dtype=bool)  # fits: probed ok or below an ok one
        self.mem_lo = np.zeros(n)  # GiB: peak of an ok configuration below it
        self.mem_hi = np.full(n, np.inf)  # GiB: peak of a probed configuration above it
        self.ok: dict[int, tuple[float, float]] = {}  # candidate -> (tokens/s, peak GiB) of ok trials
        self.oom_sources: list[tuple[int, int]] = []  # (trial number, candidate) of oom / oom-predicted trials
        self.budget: float | None = None
        self.recorded: set[int] = set()  # out-of-memory trials whose oom-inferred record has been considered
        self.mem_gp = _GP(_features(candidates, for_memory=True))
        self.tps_gp = _GP(_features(candidates, for_memory=False))

    def index_of(self, trial: FrozenTrial) -> int | None:
        key = trial.user_attrs.get(TrialAttr.CONFIG_KEY)
        if key:
            return self.c._keys.get(key)
        return self.c.index_of_params(trial.params) if trial.params else None

    def sync(self, study: optuna.Study, trials: list[FrozenTrial] | None = None) -> list[FrozenTrial]:
        """Absorb the trials finished since the last call; returns all trials."""
        trials = study.get_trials(deepcopy=False) if trials is None else trials
        if self.budget is None:
            budget = study.user_attrs.get(StudyAttr.USABLE_BUDGET_GIB)
            self.budget = float(budget) if budget is not None else None
        for trial in trials:
            state = outcome_of(trial)
            if state is None or state not in HELD or trial.state in (TrialState.RUNNING, TrialState.WAITING):
                continue
            if self.seen.get(trial.number) == state:
                continue
            self.seen[trial.number] = state
            index = self.index_of(trial)
            if index is None:
                continue
            self._absorb(trial, index, state)
        return trials

    def _absorb(self, trial: FrozenTrial, index: int, state: Outcome) -> None:
        self.held[index] = True
        peak = trial.user_attrs.get(TrialAttr.PEAK_MEMORY_GIB)
        if self.budget is None and peak is not None and "memory" in trial.constraints:
            self.budget = float(peak) - float(trial.constraints["memory"])
        if state in OOM_STATES:
            above = self.c.at_least_as_large_as(index)
            self.oom |= above
            if state != Outcome.OOM_INFERRED:
                self.oom_sources.append((trial.number, index))
        if peak is not None and peak > 0 and state in (Outcome.OK, *OOM_STATES):
            below = self.c.at_most_as_large_as(index)
            self.mem_hi[below] = np.minimum(self.mem_hi[below], peak)
            self.mem_gp.add(index, math.log(peak))
        elif state in (Outcome.OOM, Outcome.OOM_PREDICTED) and self.budget:  # ran out, peak unmeasured: over budget
            self.mem_gp.add(index, math.log(1.15 * self.budget))
        if state == Outcome.OK:
            tps = trial.user_attrs.get(TrialAttr.TOKENS_PER_S)
            above = self.c.at_least_as_large_as(index)
            self.fits |= self.c.at_most_as_large_as(index)
            if peak is not None:
                self.mem_lo[above] = np.maximum(self.mem_lo[above], peak)
            if tps is not None and tps > 0 and peak is not None:
                self.ok[index] = (float(tps), float(peak))
                self.tps_gp.add(index, math.log(tps))

    # -- choosing the next configuration ------------------------------------------------------------
    def budget_gib(self) -> float:
        if self.budget is not None:
            return self.budget
        peaks = [mem for _, mem in self.ok.values()]
        return max(peaks) * 1.1 if peaks else 1.0

    def scores(self, allowed: np.ndarray) -> np.ndarray:
        """Expected relative gain of probing each allowed candidate: in front hypervolume plus in the best
        feasible tokens/s."""
        budget = self.budget_gib()
        idx = np.flatnonzero(allowed)
        mu_m, sd_m = self.mem_gp.predict()
        mu_t, sd_t = self.tps_gp.predict()
        if not self.tps_gp.index:  # nothing fitted yet: throughput unknown everywhere, alike
            mu_t, sd_t = np.zeros(len(self.c)), np.ones(len(self.c))
        lo = np.log(np.maximum(self.mem_lo[idx], 1e-6))
        hi = np.log(np.minimum(np.where(self.fits[idx], budget, 1e6), self.mem_hi[idx]))
        mem = np.exp(np.clip(mu_m[idx, None] + sd_m[idx, None] * _GH_NODES, lo[:, None], hi[:, None]))
        tps = np.exp(mu_t[idx, None] + sd_t[idx, None] * _GH_NODES)  # (k, 5)
        front = _front(list(self.ok.values()), budget)
        hv = _hv_2d(list(self.ok.values()), budget)
        best = front[-1][1] if front else 0.0
        # the front's staircase, segment by segment: [start, end) GiB with the tokens/s already dominated there
        starts = [0.0] + [m for m, _ in front]
        ends = [m for m, _ in front] + [budget]
        levels = [0.0] + [t for _, t in front]
        t = tps[:, :, None]  # (k, 5, 1): throughput samples
        m = mem[:, None, :]  # (k, 1, 5): memory samples
        gain = np.zeros((len(idx), len(_GH_NODES), len(_GH_NODES)))  # hypervolume gain per sample pair
        for start, end, level in zip(starts, ends, levels, strict=False):
            gain += np.clip(t - level, 0.0, None) * np.clip(end - np.maximum(start, m), 0.0, None)
        weights = _GH_WEIGHTS[:, None] * _GH_WEIGHTS[None, :]
        ehvi = (gain * weights).sum(axis=(1, 2))
        feasible = m <= budget
        ei = ((np.clip(t - best, 0.0, None) * feasible) * weights).sum(axis=(1, 2))
        if hv > 0:
            score = ehvi / hv + ei / best
        else:  # nothing fits yet: the chance of fitting, weighted by what a fit would be worth
            score = ehvi
        out = np.full(len(self.c), -np.inf)
        out[idx] = score
        return out


class AutofitSampler(BaseSampler):
    def __init__(self, candidates: CandidateSet, seed: int | None = None, n_startup_trials: int = 4,
                 record_inferred: bool = True):
        self._candidates = candidates
        self._rng = np.random.RandomState(seed)
        self._n_startup = n_startup_trials
        self._record_inferred = record_inferred
        self._knowledge: dict[tuple[int, int], _Knowledge] = {}  # per study (storage, study id)

    def reseed_rng(self) -> None:
        self._rng.seed()

    def _state(self, study: optuna.Study) -> _Knowledge:
        key = (id(study._storage), study._study_id)
        knowledge = self._knowledge.get(key)
        if knowledge is None:
            knowledge = self._knowledge[key] = _Knowledge(self._candidates)
        return knowledge

    def excluded(self, study: optuna.Study, current: int | None = None) -> np.ndarray:
        """Mask of candidates not to propose: held by the study (evaluated, invalid, inferred, running or
        queued), or implied out of memory. Configurations of lost or interrupted trials may be proposed again."""
        knowledge = self._state(study)
        trials = knowledge.sync(study)
        excluded = knowledge.held | knowledge.oom
        for trial in trials:
            if trial.state in (TrialState.RUNNING, TrialState.WAITING) and trial.number != current:
                index = knowledge.index_of(trial)
                if index is not None:
                    excluded[index] = True
        return excluded

    def remaining(self, study: optuna.Study) -> int:
        """How many candidates could still be proposed."""
        return int((~self.excluded(study)).sum())

    def before_claim(self, study: optuna.Study) -> None:
        """Under the study lock, before each claim: for each configuration that ran out of memory (probed or
        predicted), record the next larger configuration along batch size (else sequence length, else the
        first ordered knob with a next step) as `oom-inferred`: a PRUNED trial that is not a probe and does
        not count toward --trials. Not recorded when the study already holds it or another out-of-memory
        result implies it. Everything else the result implies is excluded without a record, so the study
        grows by at most one record per out-of-memory result, whatever the size of the space."""
        knowledge = self._state(study)
        trials = knowledge.sync(study)
        if not self._record_inferred:
            return
        if not knowledge.recorded:  # first call in this process: results already explained by a record
            knowledge.recorded = {t.user_attrs[TrialAttr.INFERRED_FROM] for t in trials
                                  if outcome_of(t) == Outcome.OOM_INFERRED
                                  and t.user_attrs.get(TrialAttr.INFERRED_FROM) is not None}
        pending = [(number, index) for number, index in knowledge.oom_sources if number not in knowledge.recorded]
        if not pending:
            return
        held = knowledge.held.copy()
        for trial in trials:
            if trial.state in (TrialState.RUNNING, TrialState.WAITING):
                index = knowledge.index_of(trial)
                if index is not None:
                    held[index] = True
        sources = [index for _, index in knowledge.oom_sources]
        order = [k for k in RECORD_ALONG if k in self._candidates.searched] + \
                [k for k in self._candidates.searched if k not in RECORD_ALONG]
        distributions: dict[str, BaseDistribution] = {k: CategoricalDistribution(v)
                                                      for k, v in self._candidates.choices.items()}
        for number, index in pending:
            knowledge.recorded.add(number)
            others = [s for s in sources if s != index]
            for knob in order:
                steps = self._candidates.one_step_larger(index, [knob])
                if not steps:
                    continue
                step = steps[0]
                if not held[step] and not self._candidates.dominated_by_any(step, others):
                    config = self._candidates.configs[step]
                    study.add_trial(optuna.trial.create_trial(
                        state=TrialState.PRUNED, params=self._candidates.params(step), distributions=distributions,
                        user_attrs={TrialAttr.STATE: Outcome.OOM_INFERRED.value, TrialAttr.CONFIG: config.to_dict(),
                                    TrialAttr.CONFIG_KEY: config.key(), TrialAttr.INFERRED_FROM: number,
                                    TrialAttr.ERROR: f"not probed: {knob} above trial {number}, "
                                                     "which ran out of memory"}))
                    held[step] = True
                break
        knowledge.sync(study)

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return {k: CategoricalDistribution(v) for k, v in self._candidates.choices.items()}

    def sample_relative(self, study: optuna.Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        if not search_space:
            return {}
        excluded = self.excluded(study, current=trial.number)
        allowed = ~excluded
        if not allowed.any():
            return {}  # exhausted: the search loop stops before asking; sample_independent covers races
        knowledge = self._state(study)
        if len(knowledge.seen) < self._n_startup or not knowledge.mem_gp.index:
            return self._candidates.params(int(self._rng.choice(np.flatnonzero(allowed))))
        scores = knowledge.scores(allowed)
        top = np.flatnonzero(scores >= scores.max() - 1e-12 * max(1.0, abs(scores.max())))
        return self._candidates.params(int(self._rng.choice(top)))

    def sample_independent(self, study: optuna.Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        if not isinstance(param_distribution, CategoricalDistribution):  # every autofit knob is categorical
            raise TypeError(f"AutofitSampler samples categorical parameters only, not {param_distribution!r}")
        choices = param_distribution.choices
        return choices[self._rng.randint(len(choices))]
