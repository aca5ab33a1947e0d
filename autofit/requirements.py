"""What the user requires of the training run: the requirement knobs of data/knobs.yaml (seq_len, lora_rank,
quantization; lora_rank 0 = full fine-tuning) and the global batch, each with where its value came from.

The recommendation meets every requirement. A value the user gave (a flag, --set, --data, --from) is never
conceded silently. A default may be conceded only where DEFAULT_CONCESSIONS says so: quantization none -> nf4
when nothing in bf16 fits (QLoRA is the usual answer to "LoRA does not fit"; int8 is slower on bitsandbytes and
rarely trained with). seq_len and lora_rank defaults are never conceded: a shorter sequence truncates samples,
a smaller rank is less capacity than the user may expect; those show up as concessions to choose, not choices.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .errors import AutofitError
from .knobs import TrainingConfig, knob_specs, requirement_knobs
from .space import SearchSpace

# default requirement -> the values it may be conceded to, in order, when nothing meeting it fits
DEFAULT_CONCESSIONS: dict[str, tuple] = {"quantization": ("nf4",)}
GLOBAL_BATCH_FREE = "any (per-device batch x accumulation searched; set --global-batch to keep yours)"


@dataclass
class Requirements:
    """Required value of each requirement knob, the global batch (None = free), and each one's source."""

    values: dict[str, Any]
    sources: dict[str, str]
    global_batch: int | None = None
    global_batch_source: str = "default"
    conceded: dict[str, Any] = field(default_factory=dict)  # knob -> value the search used instead (defaults only)
    notes: list[str] = field(default_factory=list)  # e.g. how --data set seq_len

    def explicit(self, knob: str) -> bool:
        return self.sources.get(knob, "default") != "default"

    def pins(self) -> dict[str, Any]:
        """What the search is pinned to: each requirement, or its conceded value."""
        return {**self.values, **self.conceded}

    def meets(self, config: dict[str, Any], gpus: int = 1) -> bool:
        if any(config.get(k) != v for k, v in self.values.items()):
            return False
        if self.global_batch is not None:
            product = config["per_device_train_batch_size"] * config["gradient_accumulation_steps"] * gpus
            return product == self.global_batch
        return True

    def describe(self) -> list[str]:
        """One line per requirement: value and source, for the CLI and best-config.yaml comments."""
        lines = []
        for knob, value in self.values.items():
            shown = "0 (full fine-tuning)" if knob == "lora_rank" and value == 0 else value
            line = f"{knob} {shown} ({self.sources[knob]})"
            if knob in self.conceded:
                line += (f"; conceded: {self.conceded[knob]} used instead, nothing with {value} fits on one GPU"
                         " without DeepSpeed offload")
            lines.append(line)
        batch = GLOBAL_BATCH_FREE if self.global_batch is None else str(self.global_batch)
        lines.append(f"global batch {batch} ({self.global_batch_source})")
        return lines + self.notes

    def to_attrs(self) -> dict[str, Any]:
        return {"values": self.values, "sources": self.sources, "global_batch": self.global_batch,
                "global_batch_source": self.global_batch_source, "conceded": self.conceded, "notes": self.notes}

    @classmethod
    def from_attrs(cls, data: dict[str, Any] | None) -> Requirements | None:
        if not data:
            return None
        return cls(values=dict(data["values"]), sources=dict(data["sources"]), global_batch=data.get("global_batch"),
                   global_batch_source=data.get("global_batch_source", "default"),
                   conceded=dict(data.get("conceded") or {}), notes=list(data.get("notes") or []))


def resolve_requirements(space: SearchSpace, pins: dict[str, Any], given: dict[str, tuple[Any, str]],
                         global_batch: int | None, global_batch_source: str = "--global-batch") -> Requirements:
    """The requirements: `given` (knob -> (value, source) from --seq-len, --lora-rank, --quantization, --data,
    --from), then --set pins, then the space's defaults (stated as defaults). A --set that contradicts a given
    value is an error."""
    specs = knob_specs()
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for knob in requirement_knobs():
        if knob in given:
            value, source = given[knob]
            value = specs[knob].parse(value)
            if knob in pins and pins[knob] != value:
                raise AutofitError(f"--set {knob}={pins[knob]} contradicts {source} ({knob} {value})")
            values[knob], sources[knob] = value, source
        elif knob in pins:
            values[knob], sources[knob] = pins[knob], f"--set {knob}={pins[knob]}"
        elif len(space.values[knob]) == 1:
            values[knob], sources[knob] = space.values[knob][0], f"the space {space.source}"
        else:
            values[knob], sources[knob] = space.defaults[knob], "default"
    if values["lora_rank"] == 0 and values["quantization"] != "none":
        from .rules import rules  # the same rule the candidates obey, named as every invalid combination is

        rule = next(r for r in rules() if r.name == "quantization_needs_lora")
        raise AutofitError(f"quantization {values['quantization']} needs LoRA, but lora_rank is 0 (full fine-tuning); "
                           f"rule {rule.name}: {rule.message}")
    if global_batch is not None and global_batch < 1:
        raise AutofitError("--global-batch must be at least 1")
    return Requirements(values=values, sources=sources, global_batch=global_batch,
                        global_batch_source=global_batch_source if global_batch is not None else "default")


def concedable_defaults(req: Requirements) -> list[tuple[str, Any]]:
    """(knob, value) concessions allowed for requirements the user did not give, in order of preference."""
    found = []
    for knob, options in DEFAULT_CONCESSIONS.items():
        if req.sources.get(knob) != "default":
            continue
        if knob == "quantization" and req.values["lora_rank"] == 0:
            continue  # quantized weights cannot be fully fine-tuned
        found += [(knob, value) for value in options if value != req.values[knob]]
    return found


def requirement_config(config: TrainingConfig | dict, req: Requirements) -> dict[str, Any]:
    """`config` with its requirement knobs set to the requirements (what the user asked for)."""
    values = config.to_dict() if isinstance(config, TrainingConfig) else dict(config)
    return {**values, **req.values}
