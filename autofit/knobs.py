"""The knobs: names, types, allowed values and memory orders, loaded from data/knobs.yaml.

`TrainingConfig` is the typed form of one configuration. Its fields are checked against knobs.yaml at
import, so the YAML stays the one definition and the dataclass cannot drift from it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import yaml

from .errors import AutofitError


@dataclass(frozen=True)
class KnobSpec:
    name: str
    type: str  # int | bool | choice
    values: tuple | None
    min: int | None
    memory_order: Any
    help: str
    max: int | None = None
    kind: str = "neutral"  # requirement | neutral (data/knobs.yaml)
    moving_parts: dict | None = None  # value -> parts it adds to a run (neutral knobs)
    short: str | None = None  # label in the CLI's tables
    label: str | None = None  # column label in the report
    trace_invariant: bool = False  # the traced step does not depend on it: traced at trace_value
    trace_value: Any = None
    trace_max: int | None = None  # the trace runs min(value, trace_max)
    stored_default: Any = None  # what a configuration stored before the knob existed had

    def parse(self, raw: Any) -> Any:
        """A value for this knob from YAML or from --set text; AutofitError if it is not valid."""
        value = raw
        choices = self.values or ()  # knob_specs() makes sure a choice knob lists its values
        if isinstance(raw, str):
            text = raw.strip()
            if self.type == "int":
                try:
                    value = int(text)
                except ValueError:
                    raise AutofitError(f"{self.name}={raw!r}: expected an integer") from None
            elif self.type == "bool":
                lowered = text.lower()
                if lowered not in ("true", "false", "1", "0", "yes", "no", "on", "off"):
                    raise AutofitError(f"{self.name}={raw!r}: expected true or false")
                value = lowered in ("true", "1", "yes", "on")
            else:
                value = int(text) if text.isdigit() and all(isinstance(v, int) for v in choices) else text
        if self.type == "int":
            if isinstance(value, bool) or not isinstance(value, int):
                raise AutofitError(f"{self.name}={raw!r}: expected an integer")
            if self.min is not None and value < self.min:
                raise AutofitError(f"{self.name}={raw!r}: must be at least {self.min}")
            if self.max is not None and value > self.max:
                raise AutofitError(f"{self.name}={str(raw)[:40]}: must be at most {self.max}")
        elif self.type == "bool":
            if not isinstance(value, bool):
                raise AutofitError(f"{self.name}={raw!r}: expected true or false")
        elif value not in choices:
            allowed = "|".join(str(v) for v in choices)
            raise AutofitError(f"{self.name}={raw!r}: not one of {allowed}")
        return value

    def memory_rank(self, value: Any) -> float | None:
        """Position of `value` in this knob's memory order (higher never needs less memory), or None."""
        order = self.memory_order
        if order == "ascending":
            return float(value)
        if order in (None, "none"):
            return None
        if "ranks" in order:
            return float(order["ranks"][value])
        rule = order["ranks_from_int"]
        if rule.get("zero_is_max") and value == 0:
            return float("inf")
        if "clamp_max" in rule:
            return float(min(value, rule["clamp_max"]))
        return float(value)

    def ordered_rank(self, value: Any) -> float:
        """memory_rank for a knob that has a memory order (the ones concessions, fixes and the sampler's memory
        features move along); ValueError for one that has none."""
        rank = self.memory_rank(value)
        if rank is None:
            raise ValueError(f"{self.name} has no memory order (data/knobs.yaml memory_order)")
        return rank


@cache
def knob_specs() -> dict[str, KnobSpec]:
    """Every knob, in the order of knobs.yaml."""
    data = yaml.safe_load(resources.files("autofit").joinpath("data/knobs.yaml").read_text())
    specs = {}
    for name, entry in data.items():
        values = entry.get("values")
        specs[name] = KnobSpec(name=name, type=entry["type"], values=tuple(values) if values else None,
                               min=entry.get("min"), max=entry.get("max"), memory_order=entry.get("memory_order"),
                               help=entry["help"], kind=entry["kind"], moving_parts=entry.get("moving_parts"),
                               short=entry.get("short"), label=entry.get("label"),
                               trace_invariant=bool(entry.get("trace_invariant", False)),
                               trace_value=entry.get("trace_value"), trace_max=entry.get("trace_max"),
                               stored_default=entry.get("stored_default"))
        if specs[name].kind not in ("requirement", "neutral"):
            raise RuntimeError(f"data/knobs.yaml: {name} has kind {entry['kind']!r}; expected requirement or neutral")
        if specs[name].type == "choice" and not specs[name].values:
            raise RuntimeError(f"data/knobs.yaml: choice knob {name} lists no values")
        for field in ("short", "label"):  # e.g. an unquoted `off`, which YAML reads as false
            if not isinstance(entry.get(field, ""), str):
                raise RuntimeError(f"data/knobs.yaml: {name}'s {field} must be a string")
        if specs[name].trace_invariant:  # the value traced must be one the knob accepts
            specs[name].parse(entry.get("trace_value"))
        if specs[name].stored_default is not None:
            specs[name].parse(specs[name].stored_default)
    return specs


def report_labels() -> dict[str, str]:
    """knob -> its column label in the report (knobs.yaml `label:`, else the knob's name)."""
    return {name: spec.label or name for name, spec in knob_specs().items()}


def short_labels() -> dict[str, str]:
    """knob -> its short label for the CLI's tables (knobs.yaml `short:`; knobs without one keep their name)."""
    return {name: spec.short for name, spec in knob_specs().items() if spec.short}


def requirement_knobs() -> tuple[str, ...]:
    """Knobs that change what is trained (data/knobs.yaml kind: requirement)."""
    return tuple(name for name, spec in knob_specs().items() if spec.kind == "requirement")


def neutral_knobs() -> tuple[str, ...]:
    """Knobs that change speed and memory, not the result of training (kind: neutral)."""
    return tuple(name for name, spec in knob_specs().items() if spec.kind == "neutral")


def moving_parts(config: dict[str, Any]) -> dict[str, int]:
    """What each non-default part of `config` adds to a run (knob -> parts), from knobs.yaml's moving_parts."""
    found = {}
    for name, spec in knob_specs().items():
        parts = (spec.moving_parts or {}).get(config.get(name), 0)
        if parts:
            found[name] = parts
    return found


@dataclass(frozen=True)
class TrainingConfig:
    """One fine-tuning configuration: a value for every knob."""

    per_device_train_batch_size: int
    gradient_accumulation_steps: int
    seq_len: int
    lora_rank: int
    quantization: str
    gradient_checkpointing: bool
    zero_stage: int
    offload: str
    optimizer: str
    attn_implementation: str
    allocator: str = "default"

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainingConfig:
        specs = knob_specs()
        unknown = sorted(set(values) - set(specs))
        if unknown:
            raise AutofitError(f"unknown knob {unknown[0]!r}; knobs are: {', '.join(specs)}")
        # knobs added later: older stored configurations lack them (knobs.yaml stored_default)
        values = {**{n: s.stored_default for n, s in specs.items() if s.stored_default is not None}, **values}
        missing = [name for name in specs if name not in values]
        if missing:
            raise AutofitError(f"configuration lacks knob {missing[0]!r}")
        return cls(**{name: specs[name].parse(values[name]) for name in specs})

    def to_dict(self) -> dict[str, Any]:
        # every value is a scalar, so a shallow copy equals dataclasses.asdict, which deep-copies each value and
        # was most of the time of checking a space's ~100,000 configurations against the rules
        return {name: getattr(self, name) for name in _CONFIG_FIELDS}

    def key(self) -> str:
        """Canonical identity of the configuration (used to never probe one twice)."""
        return ",".join(f"{k}={v}" for k, v in self.to_dict().items())

    def replace(self, **changes: Any) -> TrainingConfig:
        return dataclasses.replace(self, **changes)

    @property
    def is_lora(self) -> bool:
        return self.lora_rank > 0

    @property
    def lora_alpha(self) -> int:
        """LoRA's scaling numerator: twice the rank (scale alpha / r = 2), as autofit's probes train and its
        exports write. 0 for full fine-tuning."""
        return 2 * self.lora_rank


_CONFIG_FIELDS = tuple(f.name for f in dataclasses.fields(TrainingConfig))


def traced_config(config: TrainingConfig) -> TrainingConfig:
    """`config` as the trace runs it: knobs that leave the traced step unchanged at their trace_value, knobs with
    a trace_max clamped to it (knobs.yaml). Configurations with the same traced_config share one trace."""
    changes: dict[str, Any] = {}
    for name, spec in knob_specs().items():
        if spec.trace_invariant:
            changes[name] = spec.trace_value
        elif spec.trace_max is not None:
            changes[name] = min(getattr(config, name), spec.trace_max)
    return config.replace(**changes)


KNOBS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(TrainingConfig))
if KNOBS != tuple(knob_specs()):  # one definition: the dataclass must list knobs.yaml's knobs in order
    raise RuntimeError(f"TrainingConfig fields {KNOBS} differ from data/knobs.yaml {tuple(knob_specs())}")


def parse_assignment(text: str) -> tuple[str, Any]:
    """KNOB=VALUE from --set, parsed and checked against the knob's type and allowed values."""
    if "=" not in text:
        raise AutofitError(f"--set {text!r}: expected KNOB=VALUE")
    name, raw = (part.strip() for part in text.split("=", 1))
    specs = knob_specs()
    if name not in specs:
        raise AutofitError(f"--set {text!r}: unknown knob {name!r}; knobs are: {', '.join(specs)}")
    return name, specs[name].parse(raw)
