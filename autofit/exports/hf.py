"""Hugging Face transformers.TrainingArguments YAML, with model/LoRA/quantization set-up as commented Python."""

from __future__ import annotations

import json

from ..knobs import TrainingConfig
from ._comments import ds_path_note, env_prefix, header, offload_note
from ._context import (EPOCHS, LOGGING_STEPS, SAVE_STEPS, ExportContext, hf_optimizer, learning_rate, needs_remote_code,
                       training_config)
from ._yaml import join_lines, yaml_lines


def _model_code(ctx: ExportContext, config: TrainingConfig) -> list[str]:
    code = [
        "import torch",
        "from transformers import AutoModelForCausalLM, AutoTokenizer",
    ]
    if config.quantization != "none":
        code[-1] += ", BitsAndBytesConfig"
    if config.is_lora:
        code.append("from peft import LoraConfig, get_peft_model")
    code.append("")
    if config.quantization == "nf4":
        code += [
            "bnb = BitsAndBytesConfig(",
            "    load_in_4bit=True,",
            '    bnb_4bit_quant_type="nf4",',
            "    bnb_4bit_use_double_quant=True,",
            "    bnb_4bit_compute_dtype=torch.bfloat16,",
        ]
        if config.zero_stage == 3:
            code.append("    bnb_4bit_quant_storage=torch.bfloat16,  # must equal the compute dtype under ZeRO-3")
        code += [")", ""]
    elif config.quantization == "int8":
        code += ["bnb = BitsAndBytesConfig(load_in_8bit=True)", ""]
    code += [
        "model = AutoModelForCausalLM.from_pretrained(",
        f"    {json.dumps(ctx.model_ref)},",
    ]
    if needs_remote_code(ctx.model_config):
        code.append("    trust_remote_code=True,  # the model's code lives in its repository (auto_map)")
    code += [
        "    dtype=torch.bfloat16,  # torch_dtype= on transformers < 4.56",
        f'    attn_implementation="{config.attn_implementation}",',
    ]
    if config.quantization != "none":
        code.append("    quantization_config=bnb,")
    code.append(")")
    code.append(f"tokenizer = AutoTokenizer.from_pretrained({json.dumps(ctx.model_ref)})")
    if config.quantization != "none":
        # not peft's prepare_model_for_kbit_training: it upcasts embeddings, lm_head and norms to fp32, memory
        # autofit's estimate (like LLaMA-Factory) does not spend
        code.append("# No prepare_model_for_kbit_training: its fp32 upcast of embeddings, lm_head and norms is")
        code.append("# memory autofit's figures leave out (LLaMA-Factory does not upcast either).")
    if config.is_lora and config.gradient_checkpointing:
        code.append("model.enable_input_require_grads()  # checkpointed LoRA layers need grads flowing in")
    if config.is_lora:
        code += [
            "model = get_peft_model(model, LoraConfig(",
            f"    r={config.lora_rank}, lora_alpha={config.lora_alpha}, lora_dropout=0.0,",
            '    target_modules="all-linear", task_type="CAUSAL_LM",',
            "))",
        ]
    code += [
        "",
        f"# Tokenize with truncation=True, max_length={config.seq_len} (autofit sized memory for",
        f"# {config.seq_len}-token sequences), then:",
        "# Trainer(model=model, args=TrainingArguments(**yaml.safe_load(open('hf_training_args.yaml'))),",
        "#         train_dataset=..., data_collator=DataCollatorForLanguageModeling(tokenizer, mlm=False)).train()",
    ]
    return ["#   " + line if line else "#" for line in code]


def render_hf(ctx: ExportContext) -> str:
    config = training_config(ctx)
    lines = header(ctx, config,
                   "Hugging Face transformers.TrainingArguments (TrainingArguments(**yaml.safe_load(text))).")
    if config.zero_stage > 0:
        launch = f"deepspeed --num_gpus {ctx.gpus} train.py"
    elif ctx.gpus > 1:
        launch = f"torchrun --nproc_per_node {ctx.gpus} train.py"
    else:
        launch = "python train.py"
    lines.append(f"# Launch: {env_prefix(config)}{launch}")
    lines += ds_path_note(ctx, config)
    lines.append(
        "# transformers >= 5 also accepts activation_checkpointing(_kwargs); the gradient_checkpointing"
        " names below work on 4.x and 5.x."
    )
    lines += offload_note(config)
    lines.append("#")
    lines.append("# Model, LoRA and quantization are not TrainingArguments fields; set them up in code:")
    lines += _model_code(ctx, config)
    lines.append("")

    items: list = [
        ("output_dir", f"outputs/{ctx.model_name}", "FILL IN"),
        ("per_device_train_batch_size", config.per_device_train_batch_size),
        ("gradient_accumulation_steps", config.gradient_accumulation_steps),
        ("gradient_checkpointing", config.gradient_checkpointing),
    ]
    if config.gradient_checkpointing:
        items.append(("gradient_checkpointing_kwargs", {"use_reentrant": False}))
    items += [
        ("bf16", True),
        ("optim", hf_optimizer(config)),
        ("learning_rate", learning_rate(config), "FILL IN"),
        ("num_train_epochs", EPOCHS, "FILL IN"),
        ("lr_scheduler_type", "cosine"),
        ("logging_steps", LOGGING_STEPS),
        ("save_steps", SAVE_STEPS),
        ("report_to", "none"),
    ]
    if config.zero_stage > 0:
        items.append(("deepspeed", ctx.deepspeed_config_path))
    return join_lines(lines + yaml_lines(items))
