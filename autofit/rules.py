"""Validity rules (data/rules.yaml): which knob combinations can run at all. Checked before any probe."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
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


def _holds(condition: dict[str, Any], values: dict[str, Any], facts: dict[str, Any]) -> bool:
    for knob, test in condition.items():
        value = values[knob]
        if isinstance(test, dict):
            low, high = _resolve(test.get("min"), facts), _resolve(test.get("max"), facts)
            if (low is not None and value < low) or (high is not None and value > high):
                return False
        elif value not in [_resolve(t, facts) for t in test]:
            return False
    return True


@cache
def rules() -> tuple[Rule, ...]:
    data = yaml.safe_load(resources.files("autofit").joinpath("data/rules.yaml").read_text())
    return tuple(Rule(name=r["name"], message=r["message"], when=r["when"] or {}, require=r["require"]) for r in data)


def violated_rule(config: TrainingConfig, facts: dict[str, Any]) -> Rule | None:
    """The first rule `config` breaks for a model with these facts, or None when it is valid."""
    values = config.to_dict()
    for rule in rules():
        if _holds(rule.when, values, facts) and (rule.require == "never" or not _holds(rule.require, values, facts)):
            return rule
    return None


def check_valid(config: TrainingConfig, facts: dict[str, Any]) -> None:
    """Raise InvalidConfigError naming the rule when `config` is invalid."""
    rule = violated_rule(config, facts)
    if rule is not None:
        raise InvalidConfigError(rule.name, rule.message)
