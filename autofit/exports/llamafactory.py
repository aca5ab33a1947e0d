"""LLaMA-Factory training YAML (llamafactory-cli train)."""

from __future__ import annotations


from ._comments import ds_path_note, env_prefix, header, offload_note, output_dir
from ._context import (EPOCHS, LOGGING_STEPS, SAVE_STEPS, ExportContext, hf_optimizer, learning_rate, needs_remote_code,
                       training_config)
from ._yaml import join_lines, yaml_lines


def render_llamafactory(ctx: ExportContext) -> str:
    config = training_config(ctx)
    lines = header(ctx, config, "LLaMA-Factory training config (llamafactory-cli train).")
    launch = "llamafactory-cli train llamafactory.yaml"
    if config.zero_stage > 0:
        # parser.py: "Please use `FORCE_TORCHRUN=1` to launch DeepSpeed training."
        launch = "FORCE_TORCHRUN=1 " + launch
    if ctx.gpus > 1:
        launch = f"CUDA_VISIBLE_DEVICES={','.join(str(i) for i in range(ctx.gpus))} " + launch
    lines.append(f"# Launch: {env_prefix(config)}{launch}")
    lines += ds_path_note(ctx, config)
    lines.append("# Replace the placeholders marked FILL IN (dataset, template, output_dir, schedule).")
    if not config.is_lora and config.zero_stage == 3:
        lines.append(
            "# pure_bf16 is left out: LLaMA-Factory rejects it with DeepSpeed ZeRO-3 (DeepSpeed's bf16 mode is used)."
        )
    if config.quantization == "nf4" and config.zero_stage == 3:
        lines.append("# QLoRA + ZeRO-3: LLaMA-Factory sets bnb_4bit_quant_storage to the bf16 compute dtype itself.")
    lines += offload_note(config)
    lines.append("")

    items: list = ["### model", ("model_name_or_path", ctx.model_ref)]
    if needs_remote_code(ctx.model_config):
        items.append(("trust_remote_code", True, "the model's code lives in its repository (auto_map)"))
    attn = config.attn_implementation
    items.append(("flash_attn", "sdpa" if attn == "sdpa" else "disabled", f"attn_implementation={attn}"))
    if not config.gradient_checkpointing:
        items.append(("disable_gradient_checkpointing", True))
    else:  # LLaMA-Factory defaults to reentrant checkpointing; autofit traced (and its probes run) non-reentrant
        items.append(("use_reentrant_gc", False))
    if config.quantization != "none":
        items.append(("quantization_bit", 4 if config.quantization == "nf4" else 8))
        items.append(("quantization_method", "bnb"))
        if config.quantization == "nf4":
            items.append(("quantization_type", "nf4"))
            items.append(("double_quantization", True))
    items += ["", "### method", ("stage", "sft"), ("do_train", True)]
    if config.is_lora:
        items += [
            ("finetuning_type", "lora"),
            ("lora_rank", config.lora_rank),
            ("lora_alpha", config.lora_alpha),
            ("lora_dropout", 0.0),
            ("lora_target", "all"),
        ]
    else:
        items.append(("finetuning_type", "full"))
        if config.zero_stage != 3:
            items.append(("pure_bf16", True))
    if config.zero_stage > 0:
        items.append(("deepspeed", ctx.deepspeed_config_path))
    items += [
        "",
        "### dataset",
        ("dataset", "identity,alpaca_en_demo", "FILL IN: your dataset(s) from data/dataset_info.json"),
        ("template", ctx.template or "default", "FILL IN if the model needs another chat template"),
        ("cutoff_len", config.seq_len),
        "",
        "### output",
        ("output_dir", output_dir(ctx, config), "FILL IN"),
        ("logging_steps", LOGGING_STEPS),
        ("save_steps", SAVE_STEPS),
        ("report_to", "none"),
        "",
        "### train",
        ("per_device_train_batch_size", config.per_device_train_batch_size),
        ("gradient_accumulation_steps", config.gradient_accumulation_steps),
        ("learning_rate", learning_rate(config), "FILL IN"),
        ("num_train_epochs", EPOCHS, "FILL IN"),
        ("lr_scheduler_type", "cosine"),
        ("optim", hf_optimizer(config)),
        ("bf16", True),
    ]
    return join_lines(lines + yaml_lines(items))
