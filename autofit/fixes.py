"""The fewest changes that make a configuration fit (for `autofit check`): quality-neutral changes first (gradient
checkpointing, a smaller per-device batch with more accumulation so the global batch is kept, an 8-bit optimizer,
sdpa attention, ZeRO with CPU offload), then giving up a requirement (quantization, seq_len, LoRA rank). Each
candidate is traced (cached); memory is monotone in each change's levels, so a set of changes is tried at its
strongest levels first and relaxed only when that fits."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

from .concessions import LORA_RANK_FOR_FULL, TraceCache
from .knobs import TrainingConfig, knob_specs
from .rules import violated_rule
from .trials import Outcome

MAX_TRACES = 40  # a bound on the work (a 9B trace takes about a second on 2 cores)


@dataclass
class Fix:
    changes: dict[str, Any]
    peak_memory_gib: float
    tokens_per_s: float
    requirement_changes: int

    def to_dict(self) -> dict[str, Any]:
        return {"changes": self.changes, "peak_memory_gib": round(self.peak_memory_gib, 3),
                "tokens_per_s": round(self.tokens_per_s, 1)}


def _groups(config: TrainingConfig) -> tuple[dict[str, list[dict]], dict[str, list[dict]]]:
    """(neutral groups, requirement groups): each group's levels, mildest first, as knob changes."""
    neutral: dict[str, list[dict]] = {}
    if not config.gradient_checkpointing:
        neutral["gradient_checkpointing"] = [{"gradient_checkpointing": True}]
    batch, accum = config.per_device_train_batch_size, config.gradient_accumulation_steps
    levels, factor = [], 2
    while batch // factor >= 1 and batch % factor == 0:
        levels.append({"per_device_train_batch_size": batch // factor, "gradient_accumulation_steps": accum * factor})
        factor *= 2
    if levels:
        neutral["batch"] = levels
    if config.zero_stage == 0 and config.optimizer == "adamw_torch":
        neutral["optimizer"] = [{"optimizer": "adamw_8bit"}]
    if config.attn_implementation != "sdpa":
        neutral["attn_implementation"] = [{"attn_implementation": "sdpa"}]
    zero_levels = [{"zero_stage": 2, "offload": "optimizer", "optimizer": "adamw_torch"},
                   {"zero_stage": 3, "offload": "all", "optimizer": "adamw_torch"}]
    offload_spec = knob_specs()["offload"]
    zero_levels = [z for z in zero_levels
                   if offload_spec.ordered_rank(z["offload"]) < offload_spec.ordered_rank(config.offload)]
    if zero_levels:
        neutral["zero"] = zero_levels
    required: dict[str, list[dict]] = {}
    if config.lora_rank == 0:
        required["lora_rank"] = [{"lora_rank": LORA_RANK_FOR_FULL}]
    else:
        quant_spec = knob_specs()["quantization"]
        quant = [{"quantization": q} for q in ("int8", "nf4")
                 if quant_spec.ordered_rank(q) < quant_spec.ordered_rank(config.quantization)]
        if quant:
            required["quantization"] = quant
        if config.lora_rank > 8:
            required["lora_rank"] = [{"lora_rank": config.lora_rank // 2}]
    seq = [{"seq_len": config.seq_len // d} for d in (2, 4) if config.seq_len // d >= 128]
    if seq:
        required["seq_len"] = seq
    return neutral, required


def fewest_changes(cache: TraceCache, config: TrainingConfig, want: int = 3) -> list[Fix]:
    """Up to `want` configurations that fit, fewest requirement changes first, then fewest knobs changed, then
    the fastest."""
    neutral, required = _groups(config)
    facts = cache.model.facts
    found: dict[str, Fix] = {}
    fitting_sets: list[frozenset] = []
    budget = [MAX_TRACES]

    def trace(changes: dict) -> tuple[bool, Any]:
        candidate = config.replace(**changes)
        if violated_rule(candidate, facts) is not None or budget[0] <= 0:
            return False, None
        budget[0] -= 0 if candidate.key() in cache._results else 1
        result = cache.run(candidate)
        return result.state == Outcome.OK, result

    groups = {**neutral, **required}
    tiers = sorted(((r, n) for r in range(len(required) + 1) for n in range(len(neutral) + 1) if r + n > 0),
                   key=lambda t: (t[0], t[0] + t[1]))
    for r, n in tiers:
        for req_names in itertools.combinations(required, r):
            for neu_names in itertools.combinations(neutral, n):
                names = frozenset(req_names + neu_names)
                if {"optimizer", "zero"} <= names:
                    continue  # ZeRO runs DeepSpeed's own Adam: no 8-bit optimizer with it
                if any(s <= names for s in fitting_sets):
                    continue  # a subset already fits: this only adds changes
                levels = {name: len(groups[name]) - 1 for name in names}  # strongest first
                ok, result = trace(_merge(groups, levels))
                if not ok:
                    continue
                for name in sorted(names):  # relax each group while it still fits
                    while levels[name] > 0:
                        levels[name] -= 1
                        ok_milder, milder = trace(_merge(groups, levels))
                        if ok_milder:
                            result = milder
                        else:
                            levels[name] += 1
                            break
                fitting_sets.append(names)
                changes = {k: v for k, v in _merge(groups, levels).items() if getattr(config, k) != v}
                fix = Fix(changes=changes, peak_memory_gib=result.peak_memory_gib, tokens_per_s=result.tokens_per_s,
                          requirement_changes=r)
                found[config.replace(**changes).key()] = fix
        if len(found) >= want or budget[0] <= 0:
            break
    ordered = sorted(found.values(), key=lambda f: (f.requirement_changes, len(f.changes), -f.tokens_per_s))
    return ordered[:want]


def _merge(groups: dict[str, list[dict]], levels: dict[str, int]) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    for name, level in levels.items():
        changes.update(groups[name][level])
    return changes
