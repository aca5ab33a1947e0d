"""The configurations a search may probe: a space's product, with pins, the global-batch constraint and
the validity rules applied, plus what memory monotonicity lets us infer about them."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import AutofitError
from .knobs import KNOBS, TrainingConfig, knob_specs
from .rules import violated_rule
from .space import SearchSpace

ATTENTION_KNOB = "attn_implementation"


@dataclass
class CandidateSet:
    """Valid configurations, each with its position in every knob's memory order."""

    configs: list[TrainingConfig]
    searched: list[str]  # knobs that take more than one value among the candidates (Optuna parameters)
    fixed: dict  # knob -> value for the rest

    def __post_init__(self):
        specs = knob_specs()
        self._index = {self.params_key(self.params(i)): i for i in range(len(self.configs))}
        ordered = [k for k in KNOBS if specs[k].memory_order not in (None, "none")]
        unordered = [k for k in KNOBS if k not in ordered]
        self._ordered = ordered
        self._values = self._value_codes(ordered)  # which value, on the ordered knobs
        self._ranks = np.array([[specs[k].memory_rank(getattr(c, k)) for k in ordered] for c in self.configs],
                               dtype=float).reshape(len(self.configs), len(ordered))
        self._exact = self._value_codes(unordered)  # which value, on the knobs without a memory order
        self._keys = {c.key(): i for i, c in enumerate(self.configs)}

    def _value_codes(self, knobs: list[str]):
        """Each candidate's value on `knobs` as small integers (candidates x knobs), for equality tests."""
        codes = {k: {v: i for i, v in enumerate(sorted({getattr(c, k) for c in self.configs}, key=str))}
                 for k in knobs}
        return np.array([[codes[k][getattr(c, k)] for k in knobs] for c in self.configs],
                        dtype=int).reshape(len(self.configs), len(knobs))

    def __len__(self) -> int:
        return len(self.configs)

    @property
    def choices(self) -> dict[str, tuple]:
        """Each searched knob's values, in the space's order."""
        seen: dict[str, dict] = {k: {} for k in self.searched}
        for c in self.configs:
            for k in self.searched:
                seen[k].setdefault(getattr(c, k), None)
        return {k: tuple(v) for k, v in seen.items()}

    def params(self, index: int) -> dict:
        config = self.configs[index]
        return {k: getattr(config, k) for k in self.searched}

    @staticmethod
    def params_key(params: dict) -> tuple:
        return tuple(sorted((k, str(v)) for k, v in params.items()))

    def index_of_params(self, params: dict) -> int | None:
        return self._index.get(self.params_key({k: params[k] for k in self.searched if k in params}))

    def index_of_config(self, config: TrainingConfig) -> int | None:
        return self._keys.get(config.key())

    def at_least_as_large_as(self, index: int) -> np.ndarray:
        """Mask of candidates that need at least as much memory as candidate `index` by the knobs'
        memory orders (equal on knobs without an order): if `index` runs out of memory, so do they."""
        return np.all(self._ranks >= self._ranks[index], axis=1) & np.all(self._exact == self._exact[index], axis=1)

    def at_most_as_large_as(self, index: int) -> np.ndarray:
        """Mask of candidates that need at most as much memory as candidate `index` by the memory orders
        (equal on knobs without an order): if `index` fits, so do they."""
        return np.all(self._ranks <= self._ranks[index], axis=1) & np.all(self._exact == self._exact[index], axis=1)

    def one_step_larger(self, index: int, knobs=None) -> list[int]:
        """The candidates just above `index` along one ordered knob: the same values on every other knob, and
        on that one the next larger memory rank among such candidates. `knobs` limits the knobs stepped along.
        With all knobs (None) this also lists the candidates of exactly equal memory ranks (e.g. accumulation
        4 -> 8), and everything at least as large as `index` is at least as large as one of them."""
        same_group = np.all(self._exact == self._exact[index], axis=1)
        same_value = self._values == self._values[index]
        found: set[int] = set()
        for k, name in enumerate(self._ordered):
            if knobs is not None and name not in knobs:
                continue
            others = np.delete(same_value, k, axis=1).all(axis=1) & same_group
            column = self._ranks[:, k]
            above = others & (column > self._ranks[index, k])
            if above.any():
                found.update(int(i) for i in np.flatnonzero(above & (column == column[above].min())))
        if knobs is None:
            found.update(int(i) for i in np.flatnonzero(np.all(self._ranks == self._ranks[index], axis=1) & same_group))
        found.discard(index)
        return sorted(found)

    def dominated_by_any(self, index: int, sources: list[int]) -> bool:
        """Whether candidate `index` is at least as large as any of `sources` (by the memory orders)."""
        if not sources:
            return False
        ranks = self._ranks[sources]
        return bool(np.any(np.all(ranks <= self._ranks[index], axis=1)
                           & np.all(self._exact[sources] == self._exact[index], axis=1)))

    def minimal(self) -> list[int]:
        """Candidates no other candidate is smaller than (the cheapest configurations of the space).
        Visiting by increasing rank sum, a candidate is minimal unless a minimal one found earlier is below it."""
        found: list[int] = []
        finite = np.where(np.isinf(self._ranks), 1e18, self._ranks)
        for i in np.argsort(finite.sum(axis=1), kind="stable"):
            if found:
                below = np.all(self._ranks[found] <= self._ranks[i], axis=1)
                below &= np.all(self._exact[found] == self._exact[i], axis=1)
                if below.any():
                    continue
            found.append(int(i))
        return found


def build_candidates(space: SearchSpace, facts: dict, gpus: int = 1, global_batch: int | None = None,
                     ga_pinned: bool = False) -> CandidateSet:
    """Every valid configuration of `space`. With `global_batch`, gradient accumulation is derived so that
    batch x accumulation x gpus = global_batch (or, when pinned, configurations that break it are dropped)."""
    configs: dict[str, TrainingConfig] = {}
    first_rule = None
    for config in space.configs():
        if global_batch is not None:
            per_step = config.per_device_train_batch_size * gpus
            if ga_pinned:
                if per_step * config.gradient_accumulation_steps != global_batch:
                    continue
            elif global_batch % per_step:
                continue
            else:
                config = config.replace(gradient_accumulation_steps=global_batch // per_step)
        rule = violated_rule(config, facts)
        if rule is not None:
            first_rule = first_rule or rule
            continue
        configs.setdefault(config.key(), config)
    if not configs:
        if global_batch is not None and first_rule is None:
            raise AutofitError(f"no configuration in the space reaches --global-batch {global_batch} "
                               f"(per_device_train_batch_size x gradient_accumulation_steps x {gpus} GPU(s))")
        reason = f": {first_rule.message} (rule {first_rule.name})" if first_rule else ""
        raise AutofitError(f"no valid configuration in the space{reason}")
    ordered = list(configs.values())
    searched = [k for k in KNOBS if len({getattr(c, k) for c in ordered}) > 1]
    fixed = {k: getattr(ordered[0], k) for k in KNOBS if k not in searched}
    return CandidateSet(configs=ordered, searched=searched, fixed=fixed)


def drop_unsupported_attention(space: SearchSpace, pins: dict, model) -> tuple[SearchSpace, str | None]:
    """`space` without the attention implementations the model's transformers class cannot run (Gemma-2 has no
    SDPA path, for one), and a line saying what was left out (None when nothing was). A pinned unsupported
    value, or a space with no supported value left, is an AutofitError."""
    from .models import attention_support, causal_lm_class_name

    values, default = space.values[ATTENTION_KNOB], space.defaults[ATTENTION_KNOB]
    support = attention_support(model, (*values, default))
    supported = tuple(v for v in values if support[v])
    if len(supported) == len(values) and support[default]:
        return space, None
    unsupported = [v for v in values if not support[v]]
    where = f"{causal_lm_class_name(model)} ({model.model_type})"
    if ATTENTION_KNOB in pins:
        raise AutofitError(f"{ATTENTION_KNOB}={pins[ATTENTION_KNOB]} is not supported by {where}; "
                           f"use --set {ATTENTION_KNOB}=eager")
    if not supported:
        raise AutofitError(f"{where} supports none of the space's {ATTENTION_KNOB} values "
                           f"({', '.join(map(str, values))}); add eager to the space")
    restricted = SearchSpace(values={**space.values, ATTENTION_KNOB: supported},
                             defaults={**space.defaults, ATTENTION_KNOB: default if support[default] else supported[0]},
                             source=space.source)
    left_out = sorted({*unsupported, *([] if support[default] else [default])}, key=str)
    return restricted, f"{ATTENTION_KNOB} {', '.join(map(str, left_out))} left out: {where} does not support it"
