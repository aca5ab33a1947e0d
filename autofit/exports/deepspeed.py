"""DeepSpeed config (ds_config.json) for the recommendation, and its fully resolved variant."""

from __future__ import annotations

import json
from typing import Any

from ._context import ExportContext, learning_rate, training_config


def deepspeed_config(ctx: ExportContext) -> dict | None:
    """DeepSpeed config for the recommendation, or None when zero_stage == 0.

    Batch sizes, gradient clipping and precision are "auto": the Hugging Face
    Trainer integration (used by LLaMA-Factory, axolotl and plain HF) fills
    them from the trainer arguments, exactly as in LLaMA-Factory's examples.
    """
    config = training_config(ctx)
    if config.zero_stage == 0:
        return None
    cfg: dict[str, Any] = {
        "train_batch_size": "auto",
        "train_micro_batch_size_per_gpu": "auto",
        "gradient_accumulation_steps": "auto",
        "gradient_clipping": "auto",
        "zero_allow_untested_optimizer": True,
        "fp16": {"enabled": False},
        "bf16": {"enabled": "auto"},
    }
    offload_dev = {"device": "cpu", "pin_memory": True}
    if config.zero_stage in (1, 2):
        zero: dict[str, Any] = {"stage": config.zero_stage}
        if config.offload in ("optimizer", "all"):
            zero["offload_optimizer"] = dict(offload_dev)
        zero.update(
            {
                "allgather_partitions": True,
                "allgather_bucket_size": 500_000_000,
                "overlap_comm": False,
                "reduce_scatter": True,
                "reduce_bucket_size": 500_000_000,
                "contiguous_gradients": True,
                "round_robin_gradients": True,
            }
        )
    else:
        zero = {"stage": 3}
        if config.offload in ("optimizer", "all"):
            zero["offload_optimizer"] = dict(offload_dev)
        if config.offload == "all":
            zero["offload_param"] = dict(offload_dev)
        zero.update(
            {
                "overlap_comm": False,
                "contiguous_gradients": True,
                "sub_group_size": 1_000_000_000,
                "reduce_bucket_size": "auto",
                "stage3_prefetch_bucket_size": "auto",
                "stage3_param_persistence_threshold": "auto",
                "stage3_max_live_parameters": 1_000_000_000,
                "stage3_max_reuse_distance": 1_000_000_000,
                "stage3_gather_16bit_weights_on_model_save": True,
            }
        )
    cfg["zero_optimization"] = zero
    if config.offload != "none":
        # With optimizer offload DeepSpeed refuses a trainer-created (client)
        # optimizer unless zero_force_ds_cpu_optimizer is false; declaring the
        # optimizer here makes it build its fast DeepSpeedCPUAdam instead. The
        # Hugging Face integration fills the "auto" hyper-parameters from the
        # trainer arguments (learning_rate, adam_beta1/2, adam_epsilon, weight_decay).
        cfg["optimizer"] = {
            "type": "AdamW",
            "params": {"lr": "auto", "betas": "auto", "eps": "auto", "weight_decay": "auto"},
        }
    return cfg


# transformers.TrainingArguments defaults the HF integration fills "auto" from (max_grad_norm, adam_*, weight_decay)
_HF_DEFAULTS = {"gradient_clipping": 1.0, "betas": [0.9, 0.999], "eps": 1e-8, "weight_decay": 0.0}


def resolved_deepspeed_config(ctx: ExportContext) -> dict | None:
    """deepspeed_config(ctx) with every "auto" filled as transformers' HF integration fills it
    (integrations/deepspeed.py: trainer_config_process / trainer_config_finalize) from the exported training
    arguments, for scripts that call deepspeed.initialize themselves. Size fields derived from the model's hidden
    size are left to DeepSpeed's defaults when the hidden size is unknown."""
    cfg = deepspeed_config(ctx)
    if cfg is None:
        return None
    config = training_config(ctx)
    batch, accum = config.per_device_train_batch_size, config.gradient_accumulation_steps
    cfg.update(train_micro_batch_size_per_gpu=batch, gradient_accumulation_steps=accum,
               train_batch_size=batch * accum * ctx.gpus, gradient_clipping=_HF_DEFAULTS["gradient_clipping"],
               bf16={"enabled": True})
    if "optimizer" in cfg:
        cfg["optimizer"]["params"] = {"lr": learning_rate(config), "betas": _HF_DEFAULTS["betas"],
                                      "eps": _HF_DEFAULTS["eps"], "weight_decay": _HF_DEFAULTS["weight_decay"]}
    zero = cfg["zero_optimization"]
    hidden = (ctx.model_config or {}).get("hidden_size")
    sized = {"reduce_bucket_size": lambda h: h * h, "stage3_prefetch_bucket_size": lambda h: int(0.9 * h * h),
             "stage3_param_persistence_threshold": lambda h: 10 * h}
    for key, size in sized.items():
        if zero.get(key) == "auto":
            if isinstance(hidden, int) and hidden > 0:
                zero[key] = size(hidden)
            else:
                del zero[key]
    return cfg


def render_deepspeed(ctx: ExportContext) -> str:
    cfg = deepspeed_config(ctx)
    if cfg is None:
        raise ValueError("zero_stage is 0: no DeepSpeed config")
    return json.dumps(cfg, indent=2) + "\n"


def render_deepspeed_resolved(ctx: ExportContext) -> str:
    return json.dumps(resolved_deepspeed_config(ctx), indent=2) + "\n"
