"""Validity rules (data/rules.yaml): which knob combinations can run at all. Checked before any probe."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache, lru_cache
from importlib import resources
from typing import Any

import yaml

from .errors import InvalidConfigError
from .knobs import TrainingConfig


@dataclass(frozen=True)
class Rule:
    name: str
    message: str
    when: dict[str, Any]
    require: Any  # a condition dict, or "never"


def _resolve(value: Any, facts: dict[str, Any]) -> Any:
    if isinstance(value, str) and value.startswith("$"):
        return facts[value[1:]]
    return value


@dataclass(frozen=True)
class _Test:
    """One knob's condition with the model's facts filled in: a list of values, or a range."""

    knob: str
    values: tuple | None  # None for a range
    low: Any = None
    high: Any = None

    def holds(self, config: TrainingConfig) -> bool:
        value = getattr(config, self.knob)
        if self.values is not None:
            return value in self.values
        return not ((self.low is not None and value < self.low) or (self.high is not None and value > self.high))


def _tests(condition: dict[str, Any], facts: dict[str, Any]) -> tuple[_Test, ...]:
    return tuple(_Test(knob, None, _resolve(test.get("min"), facts), _resolve(test.get("max"), facts))
                 if isinstance(test, dict) else _Test(knob, tuple(_resolve(t, facts) for t in test))
                 for knob, test in condition.items())


@cache
def rules() -> tuple[Rule, ...]:
    data = yaml.safe_load(resources.files("autofit").joinpath("data/rules.yaml").read_text())
    return tuple(Rule(name=r["name"], message=r["message"], when=r["when"] or {}, require=r["require"]) for r in data)


@lru_cache(maxsize=8)
def _resolved_rules(facts: tuple) -> tuple[tuple[Rule, tuple[_Test, ...], tuple[_Test, ...] | None], ...]:
    """The rules with `facts` filled in, each as (rule, when, require or None for never). A space of ~100,000
    configurations is checked against the same facts, so they are resolved once."""
    values = dict(facts)
    return tuple((r, _tests(r.when, values), None if r.require == "never" else _tests(r.require, values))
                 for r in rules())


def violated_rule(config: TrainingConfig, facts: dict[str, Any]) -> Rule | None:
    """The first rule `config` breaks for a model with these facts, or None when it is valid."""
    for rule, when, require in _resolved_rules(tuple(sorted(facts.items()))):
        if all(t.holds(config) for t in when) and (require is None or not all(t.holds(config) for t in require)):
            return rule
    return None


def check_valid(config: TrainingConfig, facts: dict[str, Any]) -> None:
    """Raise InvalidConfigError naming the rule when `config` is invalid."""
    rule = violated_rule(config, facts)
    if rule is not None:
        raise InvalidConfigError(rule.name, rule.message)
