"""axolotl config YAML (axolotl train)."""

from __future__ import annotations


from ._comments import ds_path_note, env_prefix, header, offload_note
from ._context import (EPOCHS, LOGGING_STEPS, SAVE_STEPS, ExportContext, hf_optimizer, learning_rate, needs_remote_code,
                       training_config)
from ._yaml import join_lines, yaml_lines


def render_axolotl(ctx: ExportContext) -> str:
    config = training_config(ctx)
    lines = header(ctx, config, "axolotl config (axolotl train axolotl.yaml).")
    launch = "axolotl train axolotl.yaml"
    if ctx.gpus > 1 or config.zero_stage > 0:
        launch += f"  (uses accelerate; {ctx.gpus} GPU(s))"
    lines.append(f"# Launch: {env_prefix(config)}{launch}")
    lines += ds_path_note(ctx, config)
    lines.append("# Replace the placeholders marked FILL IN (datasets, output_dir, schedule).")
    lines += offload_note(config)
    lines.append("")

    items: list = [("base_model", ctx.model_ref)]
    if needs_remote_code(ctx.model_config):
        items.append(("trust_remote_code", True, "the model's code lives in its repository (auto_map)"))
    if config.quantization == "nf4":
        items += [("load_in_4bit", True), ("adapter", "qlora", "NF4 + double quantization, bf16 compute")]
    elif config.quantization == "int8":
        items += [("load_in_8bit", True), ("adapter", "lora")]
    elif config.is_lora:
        items.append(("adapter", "lora"))
    if config.is_lora:
        items += [
            ("lora_r", config.lora_rank),
            ("lora_alpha", config.lora_alpha),
            ("lora_dropout", 0.0),
            ("lora_target_linear", True),
        ]
    items += [
        "",
        ("datasets", [{"path": "mhenrichsen/alpaca_2k_test", "type": "alpaca"}], "FILL IN"),
        ("output_dir", f"./outputs/{ctx.model_name}", "FILL IN"),
        "",
        ("sequence_len", config.seq_len),
        ("sample_packing", False),
        ("micro_batch_size", config.per_device_train_batch_size),
        ("gradient_accumulation_steps", config.gradient_accumulation_steps),
        ("num_epochs", EPOCHS, "FILL IN"),
        ("optimizer", hf_optimizer(config)),
        ("lr_scheduler", "cosine"),
        ("learning_rate", learning_rate(config), "FILL IN"),
        ("bf16", True),
        ("gradient_checkpointing", config.gradient_checkpointing),
        ("attn_implementation", config.attn_implementation),
        ("logging_steps", LOGGING_STEPS),
        ("save_steps", SAVE_STEPS),
    ]
    if config.zero_stage > 0:
        items.append(("deepspeed", ctx.deepspeed_config_path))
    return join_lines(lines + yaml_lines(items))
