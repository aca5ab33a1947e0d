"""The export's input (ExportContext) and its knobs checked against autofit's rules; constants the formats share."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import AutofitError
from ..knobs import KNOBS, TrainingConfig
from ..rules import check_valid

FORMATS = ("llamafactory", "hf", "deepspeed", "axolotl")

DS_FILENAME = "ds_config.json"
DS_RESOLVED_FILENAME = "ds_config.resolved.json"
ALLOC_ENV = "PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True"

# autofit optimizer knob -> transformers.training_args.OptimizerNames value.
# ("adamw_8bit" is also an OptimizerNames alias, but "adamw_bnb_8bit" is the
# spelling LLaMA-Factory and axolotl document.)
HF_OPTIMIZERS = {
    "adamw_torch": "adamw_torch",
    "adamw_8bit": "adamw_bnb_8bit",
    "paged_adamw_8bit": "paged_adamw_8bit",
}
# Placeholders the user is expected to replace.
LR_LORA = 1.0e-4
LR_FULL = 1.0e-5
EPOCHS = 3.0
LOGGING_STEPS = 10
SAVE_STEPS = 500


@dataclass(frozen=True)
class ExportContext:
    model_ref: str  # model_name_or_path / base_model: hub id or local path
    model_name: str  # autofit's model name, e.g. "glm4-9b"
    template: str | None  # LLaMA-Factory template; None -> "default"
    config: TrainingConfig | Mapping[str, Any]  # a TrainingConfig, or knob name -> value
    peak_memory_gib: float
    tokens_per_s: float
    probe: str  # "trace" | "cuda" | "cpu"
    estimated: bool  # True -> comments say "estimated"
    gpu_mem: str  # e.g. "24GB"
    usable_budget_gib: float
    gpus: int = 1
    deepspeed_config_path: str = DS_FILENAME
    model_config: dict | None = None  # the model's config.json values: remote code, hidden size for DeepSpeed


def needs_remote_code(model_config: dict | None) -> bool:
    """Whether loading the model needs trust_remote_code: its config maps classes to code in its repository
    (auto_map), or names a model_type this transformers does not know."""
    if not model_config:
        return False
    if model_config.get("auto_map"):
        return True
    from ..models import known_model_types

    return model_config.get("model_type") not in known_model_types()



def training_config(ctx: ExportContext) -> TrainingConfig:
    """The knobs of `ctx.config`, checked against autofit's knob definitions and validity rules
    (autofit/data/knobs.yaml, rules.yaml); ValueError names what is wrong. A mapping may hold numpy scalars
    (a study's values) and knobs this autofit does not know, which are ignored."""
    try:
        if isinstance(ctx.config, TrainingConfig):
            config = ctx.config
        else:
            values = ctx.config
            config = TrainingConfig.from_dict({k: values[k].item() if hasattr(values[k], "item") else values[k]
                                               for k in KNOBS if k in values})
        check_valid(config, {"max_position_embeddings": float("inf")})  # the model's limits were checked upstream
    except AutofitError as exc:
        raise ValueError(str(exc)) from None
    return config


def hf_optimizer(config: TrainingConfig) -> str:
    """The transformers OptimizerNames value (TrainingArguments.optim) of the optimizer knob."""
    return HF_OPTIMIZERS[config.optimizer]


def learning_rate(config: TrainingConfig) -> float:
    """The placeholder learning rate (the user's to replace): LoRA trains at a higher rate than full fine-tuning."""
    return LR_LORA if config.is_lora else LR_FULL
