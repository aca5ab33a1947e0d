"""Concessions: what fits, or what is gained, by giving up a requirement (a shorter seq_len, a smaller LoRA rank,
quantized base weights, LoRA instead of full fine-tuning). Each is traced (cheap: about a second for a 9B model)
on the recommended configuration with that one requirement changed, and stated with its memory and tokens/s
against the recommendation, always as an estimate. Shown in the CLI, best-config.yaml and the report.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any
from collections.abc import Iterable

from .knobs import TrainingConfig, knob_specs, requirement_knobs
from .models import ModelSpec
from .probes import ProbeContext, ProbeResult, TraceProbe
from .trials import Outcome
from .requirements import Requirements
from .rules import violated_rule

LORA_RANK_FOR_FULL = 16  # the LoRA rank offered as a concession to full fine-tuning (LLaMA-Factory's examples use 8-16)


class TraceCache:
    """Trace-probe results by configuration, so the concessions, the sequence-length curve and `check` never
    trace one configuration twice."""

    def __init__(self, model: ModelSpec, context: ProbeContext):
        self.model, self.context = model, context
        self.probe = TraceProbe()
        self._results: dict[str, ProbeResult] = {}

    def run(self, config: TrainingConfig) -> ProbeResult:
        key = config.key()
        if key not in self._results:
            self._results[key] = self.probe.run(self.model, config, self.context)
        return self._results[key]

    def fits(self, config: TrainingConfig) -> bool:
        return self.run(config).state == Outcome.OK

    def __len__(self) -> int:
        return len(self._results)


@dataclass
class Concession:
    """One requirement given up: `knob` at `value` instead of `required`, traced."""

    knob: str
    value: Any
    required: Any
    fits: bool
    peak_memory_gib: float
    tokens_per_s: float
    peak_delta_gib: float | None  # against the reference (the recommendation, or the requirement-meeting config)
    tokens_delta_pct: float | None
    applied: bool = False  # the recommendation already takes it (a default conceded because nothing else fits)
    required_peak_gib: float | None = None  # applied: the peak with the requirement kept

    @property
    def text(self) -> str:
        parts = [f"{self.knob} {_show(self.knob, self.value)} instead of {_show(self.knob, self.required)}"]
        figures = []
        if self.peak_delta_gib is not None:
            figures.append(f"{self.peak_delta_gib:+.1f} GiB")
        else:
            figures.append(f"peak {self.peak_memory_gib:.1f} GiB")
        if self.tokens_delta_pct is not None:
            figures.append(f"{self.tokens_delta_pct:+.0f}% tokens/s")
        text = parts[0] + ": " + ", ".join(figures) + " (estimated)"
        if not self.fits:
            text += ", still does not fit"
        if self.applied:
            text += (f"; taken by the recommendation: with {_show(self.knob, self.required)} nothing fits without "
                     f"DeepSpeed offload (this configuration: {self.required_peak_gib:.1f} GiB)")
        return text

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "text": self.text}


def _show(knob: str, value: Any) -> str:
    return "0 (full fine-tuning)" if knob == "lora_rank" and value == 0 else str(value)


def alternatives(knob: str, required: Any, space_values: Iterable[Any]) -> list[Any]:
    """Values of a requirement knob that need less memory than `required`, nearest first (at most two)."""
    spec = knob_specs()[knob]
    if knob == "lora_rank" and required == 0:
        return [LORA_RANK_FOR_FULL]
    if knob == "seq_len":
        values = [required // 2, required // 4]
        return [v for v in values if v >= 128]
    below = [v for v in dict.fromkeys(space_values) if v != 0 or knob != "lora_rank"]
    below = [v for v in below if spec.ordered_rank(v) < spec.ordered_rank(required)]
    below.sort(key=lambda v: -spec.ordered_rank(v))
    return below[:2]


def find_concessions(cache: TraceCache, base: TrainingConfig, req: Requirements, space_values: dict[str, tuple],
                     reference: tuple[float | None, float | None] | None) -> list[Concession]:
    """Each requirement given up on its own, from `base` (the recommendation, its neutral knobs kept). The
    deltas are against `reference` (peak GiB, tokens/s): the recommendation's own trace, so that both sides of
    a delta are estimates of the same kind. Conceded defaults come first, marked applied."""
    found: list[Concession] = []
    facts = cache.model.facts
    required_config = base.replace(**req.values)
    for knob in requirement_knobs():
        required = req.values[knob]
        if knob in req.conceded:  # the recommendation took it: state it against the requirement it gives up
            ref = cache.run(required_config)
            now = cache.run(base)
            conceded = _make(knob, req.conceded[knob], required, now,
                             (ref.peak_memory_gib, ref.tokens_per_s) if ref.peak_memory_gib else None, applied=True)
            conceded.required_peak_gib = round(ref.peak_memory_gib or 0.0, 3)
            found.append(conceded)
            continue
        for value in alternatives(knob, required, space_values.get(knob, ())):
            config = base.replace(**{knob: value})
            if violated_rule(config, facts) is not None:
                continue
            result = cache.run(config)
            if result.peak_memory_gib is None:
                continue
            found.append(_make(knob, value, required, result, reference))
    return found


def _make(knob, value, required, result: ProbeResult, reference, applied=False) -> Concession:
    peak = result.figures()[0]  # a trace: always has figures
    peak_delta = tokens_pct = None
    if reference is not None and reference[0] is not None:
        peak_delta = peak - reference[0]
        if reference[1] and result.tokens_per_s is not None:
            tokens_pct = 100.0 * (result.tokens_per_s / reference[1] - 1)
    return Concession(knob=knob, value=value, required=required, fits=result.state == Outcome.OK,
                      peak_memory_gib=round(peak, 3),
                      tokens_per_s=round(result.tokens_per_s or 0.0, 1),
                      peak_delta_gib=None if peak_delta is None else round(peak_delta, 3),
                      tokens_delta_pct=None if tokens_pct is None else round(tokens_pct, 1), applied=applied)


def concessions_that_fit(cache: TraceCache, configs: Iterable[TrainingConfig], req: Requirements,
                         space_values: dict[str, tuple], limit: int = 3) -> list[Concession]:
    """When nothing meeting the requirements fits: single concessions from the smallest configurations that fit,
    the nearest (least given up) first."""
    found: dict[tuple, Concession] = {}
    for base in configs:
        for c in find_concessions(cache, base, req, space_values, None):
            if c.fits and (c.knob, c.value) not in found:
                found[(c.knob, c.value)] = c
        if len(found) >= limit:
            break
    return list(found.values())[:limit]
