"""Render autofit's recommended configuration for other trainers.

Pure functions only: every renderer returns text (or a dict for the DeepSpeed
config) and never touches the file system; the caller writes files atomically.

Formats
-------
``llamafactory``  YAML for ``llamafactory-cli train``. LLaMA-Factory parses the
                  file with ``HfArgumentParser(...).parse_dict(allow_extra_keys=False)``
                  (src/llamafactory/hparams/parser.py) and rejects unknown keys,
                  so only argument names from its hparams dataclasses
                  (model_args.py, data_args.py, finetuning_args.py,
                  training_args.py = Seq2SeqTrainingArguments + a few) are
                  emitted; autofit's own figures go in comments.
``hf``            YAML whose top-level keys are all ``transformers.TrainingArguments``
                  fields, so ``TrainingArguments(**yaml.safe_load(text))`` works.
                  Model loading / LoRA / quantization (not owned by
                  TrainingArguments) is shown as commented Python.
``deepspeed``     ``ds_config.json`` modelled on LLaMA-Factory's
                  examples/deepspeed/ds_z{0,2,3}{,_offload}_config.json, with the
                  batch/clipping/precision values left as ``"auto"`` so the
                  Hugging Face Trainer integration fills them in from the
                  trainer arguments (no risk of a mismatch error). Only that
                  integration resolves "auto" (``deepspeed.initialize`` on the
                  file raises a TypeError), so this format also writes
                  ``ds_config.resolved.json``: the same config with every value
                  filled in as the integration fills it, for plain DeepSpeed
                  scripts (the trainer formats say so in a comment).
``axolotl``       YAML for ``axolotl train`` (keys from
                  src/axolotl/utils/schemas/*.py, axolotl 0.19).

Knobs read from ``ExportContext.config`` (exact names): per_device_train_batch_size,
gradient_accumulation_steps, seq_len, lora_rank (0 = full fine-tuning),
quantization (none|int8|nf4), gradient_checkpointing, zero_stage (0-3),
offload (none|optimizer|all), optimizer (adamw_torch|adamw_8bit|paged_adamw_8bit),
attn_implementation (sdpa|eager); optional ``allocator`` (default|expandable).
Unknown extra knobs are ignored.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

import yaml

__all__ = [
    "FORMATS",
    "ExportContext",
    "deepspeed_config",
    "needs_remote_code",
    "render",
    "render_axolotl",
    "render_deepspeed",
    "render_deepspeed_resolved",
    "resolved_deepspeed_config",
    "render_hf",
    "render_llamafactory",
]

FORMATS = ("llamafactory", "hf", "deepspeed", "axolotl")

DS_FILENAME = "ds_config.json"
DS_RESOLVED_FILENAME = "ds_config.resolved.json"
ALLOC_ENV = "PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True"

# autofit optimizer knob -> transformers.training_args.OptimizerNames value.
# ("adamw_8bit" is also an OptimizerNames alias, but "adamw_bnb_8bit" is the
# spelling LLaMA-Factory and axolotl document.)
_OPTIM = {
    "adamw_torch": "adamw_torch",
    "adamw_8bit": "adamw_bnb_8bit",
    "paged_adamw_8bit": "paged_adamw_8bit",
}
# Placeholders the user is expected to replace.
_LR_LORA = 1.0e-4
_LR_FULL = 1.0e-5
_EPOCHS = 3.0
_LOGGING_STEPS = 10
_SAVE_STEPS = 500


@dataclass(frozen=True)
class ExportContext:
    model_ref: str  # model_name_or_path / base_model: hub id or local path
    model_name: str  # autofit's model name, e.g. "glm4-9b"
    template: str | None  # LLaMA-Factory template; None -> "default"
    config: dict  # knob name -> value
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
    from transformers import CONFIG_MAPPING

    return model_config.get("model_type") not in CONFIG_MAPPING


# --------------------------------------------------------------------------
# knob handling


@dataclass(frozen=True)
class _Knobs:
    batch: int
    accum: int
    seq_len: int
    rank: int
    quant: str
    grad_ckpt: bool
    zero: int
    offload: str
    optim: str  # HF OptimizerNames value
    optim_knob: str
    attn: str
    expandable: bool

    @property
    def lora(self) -> bool:
        return self.rank > 0


def _knobs(ctx: ExportContext) -> _Knobs:
    """The knobs of `ctx.config`, checked against autofit's knob definitions and validity rules
    (autofit/data/knobs.yaml, rules.yaml); ValueError names what is wrong."""
    from .errors import AutofitError
    from .knobs import KNOBS, TrainingConfig
    from .rules import check_valid

    cfg = ctx.config
    try:
        config = TrainingConfig.from_dict({k: cfg[k].item() if hasattr(cfg[k], "item") else cfg[k]
                                           for k in KNOBS if k in cfg})
        check_valid(config, {"max_position_embeddings": float("inf")})  # the model's limits were checked upstream
    except AutofitError as exc:
        raise ValueError(str(exc)) from None
    return _Knobs(
        batch=config.per_device_train_batch_size,
        accum=config.gradient_accumulation_steps,
        seq_len=config.seq_len,
        rank=config.lora_rank,
        quant=config.quantization,
        grad_ckpt=config.gradient_checkpointing,
        zero=config.zero_stage,
        offload=config.offload,
        optim=_OPTIM[config.optimizer],
        optim_knob=config.optimizer,
        attn=config.attn_implementation,
        expandable=cfg.get("allocator", "default") == "expandable",
    )


# --------------------------------------------------------------------------
# small YAML writer: ordered keys, section comments, safe scalars


_NUMBER_LIKE = re.compile(
    r"[-+]?(\.[0-9_]+|[0-9][0-9_]*\.?[0-9_]*)([eE][-+]?[0-9]+)?|[-+]?\.?(inf|Inf|INF|nan|NaN|NAN)"
)


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"cannot export non-finite number {value!r}")
        text = repr(value)
        if "e" in text:
            # "1.0e-5" form: YAML 1.1 (PyYAML) reads an exponent as a float only
            # when the mantissa has a dot and the exponent a sign.
            mantissa, exp = text.split("e")
            if "." not in mantissa:
                mantissa += ".0"
            text = f"{mantissa}e{'-' if exp.startswith('-') else '+'}{int(exp.lstrip('+-'))}"
        return text
    if isinstance(value, str):
        if not value.isprintable() or _NUMBER_LIKE.fullmatch(value):
            # Number-like strings: PyYAML keeps e.g. 1e5 a string, but YAML 1.2
            # loaders (OmegaConf, used by LLaMA-Factory) read a number. Control
            # characters/newlines: keep the value on one escaped line.
            return json.dumps(value)
        text = yaml.safe_dump(value, default_flow_style=True, width=10_000, allow_unicode=True).strip()
        if text.endswith("\n..."):
            text = text[: -len("\n...")]
        elif text.endswith("..."):
            text = text[: -len("...")].rstrip()
        return text
    raise TypeError(f"unsupported YAML scalar {value!r}")


def _yaml_lines(items: list) -> list[str]:
    """items: ("# comment") | ("", ) blank | (key, value) | (key, value, trailing comment)."""
    lines: list[str] = []
    for item in items:
        if isinstance(item, str):
            lines.append(item)
            continue
        key, value, *rest = item
        if isinstance(value, dict):
            line = f"{key}:"
            lines.append(line + (f"  # {rest[0]}" if rest else ""))
            for sub_key, sub_value in value.items():
                lines.append(f"  {sub_key}: {_scalar(sub_value)}")
        elif isinstance(value, list):
            lines.append(f"{key}:" + (f"  # {rest[0]}" if rest else ""))
            for entry in value:
                first = True
                for sub_key, sub_value in entry.items():
                    prefix = "  - " if first else "    "
                    lines.append(f"{prefix}{sub_key}: {_scalar(sub_value)}")
                    first = False
        else:
            line = f"{key}: {_scalar(value)}"
            lines.append(line + (f"  # {rest[0]}" if rest else ""))
    return lines


def _text(lines: list[str]) -> str:
    return "\n".join(lines).rstrip("\n") + "\n"


# --------------------------------------------------------------------------
# shared comment header


def _fmt_num(value: float) -> str:
    return f"{value:,.1f}" if value < 100 else f"{value:,.0f}"


def _one_line(value: Any) -> str:
    """Text safe to embed in a single comment line."""
    return " ".join(str(value).split())


def _header(ctx: ExportContext, k: _Knobs, title: str) -> list[str]:
    kind = "estimated" if ctx.estimated else "measured"
    method = _method_label(k)
    probe = _one_line(ctx.probe)
    lines = [
        f"# {title}",
        f"# Generated by autofit for model {_one_line(ctx.model_name)} ({_one_line(ctx.model_ref)}).",
        (
            f"# GPU memory budget: {_one_line(ctx.gpu_mem)} per GPU x {ctx.gpus} GPU(s); usable budget "
            f"{ctx.usable_budget_gib:.2f} GiB."
        ),
        f"# Peak GPU memory: {ctx.peak_memory_gib:.2f} GiB ({kind}, {probe} probe).",
        f"# Throughput: {_fmt_num(ctx.tokens_per_s)} tokens/s ({kind}, {probe} probe).",
    ]
    if ctx.estimated:
        lines.append(
            "# NOTE: these figures are estimated by autofit's trace probe, not measured on a GPU; "
            "verify with a short run."
        )
    lines += [
        (
            f"# Method: {method}; seq_len {k.seq_len}; micro-batch {k.batch} x grad-accum {k.accum}"
            f" x {ctx.gpus} GPU(s) = {k.batch * k.accum * ctx.gpus} sequences per optimizer step."
        ),
        (
            f"# Memory knobs: gradient checkpointing {'on' if k.grad_ckpt else 'off'}; "
            f"ZeRO stage {k.zero}; offload {k.offload}; optimizer {k.optim_knob}; attention {k.attn}; bf16."
        ),
    ]
    if k.expandable:
        lines += [
            "# Environment (set before launching; autofit's figures assume it):",
            f"#   export {ALLOC_ENV}",
        ]
    return lines


def _method_label(k: _Knobs) -> str:
    if not k.lora:
        return "full fine-tuning (bf16 weights)"
    if k.quant == "nf4":
        return (
            "QLoRA (4-bit NF4, double quantization, bf16 compute), "
            f"LoRA rank {k.rank} alpha {2 * k.rank} on all linear layers"
        )
    if k.quant == "int8":
        return f"LoRA rank {k.rank} alpha {2 * k.rank} on all linear layers over an 8-bit (bitsandbytes int8) base"
    return f"LoRA rank {k.rank} alpha {2 * k.rank} on all linear layers (bf16 base)"


def _env_prefix(k: _Knobs) -> str:
    return f"{ALLOC_ENV} " if k.expandable else ""


def _offload_note(k: _Knobs) -> list[str]:
    if k.offload == "none":
        return []
    return [
        (
            "# DeepSpeed offload is on: the optimizer step runs on the CPU with DeepSpeed's AdamW "
            f'("optimizer" block of {DS_FILENAME}), which takes precedence over `optim`.'
        ),
    ]


def _ds_path_note(ctx: ExportContext, k: _Knobs) -> list[str]:
    if k.zero == 0:
        return []
    lines = [f'# {DS_FILENAME} leaves batch sizes, clipping and bf16 "auto" for the Hugging Face integration to fill'
             f" (as this trainer does); a script calling deepspeed.initialize itself needs {DS_RESOLVED_FILENAME}"
             " (autofit export OUT --format deepspeed)."]
    path = ctx.deepspeed_config_path
    if not (path.startswith(("/", "~")) or (len(path) > 1 and path[1] == ":")):
        lines.append(f"# The deepspeed path {_one_line(path)} is relative: launch from the folder that holds it.")
    return lines


def _output_dir(ctx: ExportContext, k: _Knobs) -> str:
    method = ("qlora" if k.quant == "nf4" else "lora") if k.lora else "full"
    return f"saves/{ctx.model_name}/{method}/sft"


def _learning_rate(k: _Knobs) -> float:
    return _LR_LORA if k.lora else _LR_FULL


# --------------------------------------------------------------------------
# DeepSpeed


def deepspeed_config(ctx: ExportContext) -> dict | None:
    """DeepSpeed config for the recommendation, or None when zero_stage == 0.

    Batch sizes, gradient clipping and precision are "auto": the Hugging Face
    Trainer integration (used by LLaMA-Factory, axolotl and plain HF) fills
    them from the trainer arguments, exactly as in LLaMA-Factory's examples.
    """
    k = _knobs(ctx)
    if k.zero == 0:
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
    if k.zero in (1, 2):
        zero: dict[str, Any] = {"stage": k.zero}
        if k.offload in ("optimizer", "all"):
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
        if k.offload in ("optimizer", "all"):
            zero["offload_optimizer"] = dict(offload_dev)
        if k.offload == "all":
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
    if k.offload != "none":
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
    k = _knobs(ctx)
    cfg.update(train_micro_batch_size_per_gpu=k.batch, gradient_accumulation_steps=k.accum,
               train_batch_size=k.batch * k.accum * ctx.gpus, gradient_clipping=_HF_DEFAULTS["gradient_clipping"],
               bf16={"enabled": True})
    if "optimizer" in cfg:
        cfg["optimizer"]["params"] = {"lr": _learning_rate(k), "betas": _HF_DEFAULTS["betas"],
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


# --------------------------------------------------------------------------
# LLaMA-Factory


def render_llamafactory(ctx: ExportContext) -> str:
    k = _knobs(ctx)
    lines = _header(ctx, k, "LLaMA-Factory training config (llamafactory-cli train).")
    launch = "llamafactory-cli train llamafactory.yaml"
    if k.zero > 0:
        # parser.py: "Please use `FORCE_TORCHRUN=1` to launch DeepSpeed training."
        launch = "FORCE_TORCHRUN=1 " + launch
    if ctx.gpus > 1:
        launch = f"CUDA_VISIBLE_DEVICES={','.join(str(i) for i in range(ctx.gpus))} " + launch
    lines.append(f"# Launch: {_env_prefix(k)}{launch}")
    lines += _ds_path_note(ctx, k)
    lines.append("# Replace the placeholders marked FILL IN (dataset, template, output_dir, schedule).")
    if not k.lora and k.zero == 3:
        lines.append(
            "# pure_bf16 is left out: LLaMA-Factory rejects it with DeepSpeed ZeRO-3 (DeepSpeed's bf16 mode is used)."
        )
    if k.quant == "nf4" and k.zero == 3:
        lines.append("# QLoRA + ZeRO-3: LLaMA-Factory sets bnb_4bit_quant_storage to the bf16 compute dtype itself.")
    lines += _offload_note(k)
    lines.append("")

    items: list = ["### model", ("model_name_or_path", ctx.model_ref)]
    if needs_remote_code(ctx.model_config):
        items.append(("trust_remote_code", True, "the model's code lives in its repository (auto_map)"))
    items.append(("flash_attn", "sdpa" if k.attn == "sdpa" else "disabled", f"attn_implementation={k.attn}"))
    if not k.grad_ckpt:
        items.append(("disable_gradient_checkpointing", True))
    else:  # LLaMA-Factory defaults to reentrant checkpointing; autofit traced (and its probes run) non-reentrant
        items.append(("use_reentrant_gc", False))
    if k.quant != "none":
        items.append(("quantization_bit", 4 if k.quant == "nf4" else 8))
        items.append(("quantization_method", "bnb"))
        if k.quant == "nf4":
            items.append(("quantization_type", "nf4"))
            items.append(("double_quantization", True))
    items += ["", "### method", ("stage", "sft"), ("do_train", True)]
    if k.lora:
        items += [
            ("finetuning_type", "lora"),
            ("lora_rank", k.rank),
            ("lora_alpha", 2 * k.rank),
            ("lora_dropout", 0.0),
            ("lora_target", "all"),
        ]
    else:
        items.append(("finetuning_type", "full"))
        if k.zero != 3:
            items.append(("pure_bf16", True))
    if k.zero > 0:
        items.append(("deepspeed", ctx.deepspeed_config_path))
    items += [
        "",
        "### dataset",
        ("dataset", "identity,alpaca_en_demo", "FILL IN: your dataset(s) from data/dataset_info.json"),
        ("template", ctx.template or "default", "FILL IN if the model needs another chat template"),
        ("cutoff_len", k.seq_len),
        "",
        "### output",
        ("output_dir", _output_dir(ctx, k), "FILL IN"),
        ("logging_steps", _LOGGING_STEPS),
        ("save_steps", _SAVE_STEPS),
        ("report_to", "none"),
        "",
        "### train",
        ("per_device_train_batch_size", k.batch),
        ("gradient_accumulation_steps", k.accum),
        ("learning_rate", _learning_rate(k), "FILL IN"),
        ("num_train_epochs", _EPOCHS, "FILL IN"),
        ("lr_scheduler_type", "cosine"),
        ("optim", k.optim),
        ("bf16", True),
    ]
    return _text(lines + _yaml_lines(items))


# --------------------------------------------------------------------------
# Hugging Face TrainingArguments


def _model_code(ctx: ExportContext, k: _Knobs) -> list[str]:
    code = [
        "import torch",
        "from transformers import AutoModelForCausalLM, AutoTokenizer",
    ]
    if k.quant != "none":
        code[-1] += ", BitsAndBytesConfig"
    if k.lora:
        code.append("from peft import LoraConfig, get_peft_model")
    code.append("")
    if k.quant == "nf4":
        code += [
            "bnb = BitsAndBytesConfig(",
            "    load_in_4bit=True,",
            '    bnb_4bit_quant_type="nf4",',
            "    bnb_4bit_use_double_quant=True,",
            "    bnb_4bit_compute_dtype=torch.bfloat16,",
        ]
        if k.zero == 3:
            code.append("    bnb_4bit_quant_storage=torch.bfloat16,  # must equal the compute dtype under ZeRO-3")
        code += [")", ""]
    elif k.quant == "int8":
        code += ["bnb = BitsAndBytesConfig(load_in_8bit=True)", ""]
    code += [
        "model = AutoModelForCausalLM.from_pretrained(",
        f"    {json.dumps(ctx.model_ref)},",
    ]
    if needs_remote_code(ctx.model_config):
        code.append("    trust_remote_code=True,  # the model's code lives in its repository (auto_map)")
    code += [
        "    dtype=torch.bfloat16,  # torch_dtype= on transformers < 4.56",
        f'    attn_implementation="{k.attn}",',
    ]
    if k.quant != "none":
        code.append("    quantization_config=bnb,")
    code.append(")")
    code.append(f"tokenizer = AutoTokenizer.from_pretrained({json.dumps(ctx.model_ref)})")
    if k.quant != "none":
        # not peft's prepare_model_for_kbit_training: it upcasts embeddings, lm_head and norms to fp32, memory
        # autofit's estimate (like LLaMA-Factory) does not spend
        code.append("# No prepare_model_for_kbit_training: its fp32 upcast of embeddings, lm_head and norms is")
        code.append("# memory autofit's figures leave out (LLaMA-Factory does not upcast either).")
    if k.lora and k.grad_ckpt:
        code.append("model.enable_input_require_grads()  # checkpointed LoRA layers need grads flowing in")
    if k.lora:
        code += [
            "model = get_peft_model(model, LoraConfig(",
            f"    r={k.rank}, lora_alpha={2 * k.rank}, lora_dropout=0.0,",
            '    target_modules="all-linear", task_type="CAUSAL_LM",',
            "))",
        ]
    code += [
        "",
        f"# Tokenize with truncation=True, max_length={k.seq_len} (autofit sized memory for",
        f"# {k.seq_len}-token sequences), then:",
        "# Trainer(model=model, args=TrainingArguments(**yaml.safe_load(open('hf_training_args.yaml'))),",
        "#         train_dataset=..., data_collator=DataCollatorForLanguageModeling(tokenizer, mlm=False)).train()",
    ]
    return ["#   " + line if line else "#" for line in code]


def render_hf(ctx: ExportContext) -> str:
    k = _knobs(ctx)
    lines = _header(ctx, k, "Hugging Face transformers.TrainingArguments (TrainingArguments(**yaml.safe_load(text))).")
    if k.zero > 0:
        launch = f"deepspeed --num_gpus {ctx.gpus} train.py"
    elif ctx.gpus > 1:
        launch = f"torchrun --nproc_per_node {ctx.gpus} train.py"
    else:
        launch = "python train.py"
    lines.append(f"# Launch: {_env_prefix(k)}{launch}")
    lines += _ds_path_note(ctx, k)
    lines.append(
        "# transformers >= 5 also accepts activation_checkpointing(_kwargs); the gradient_checkpointing"
        " names below work on 4.x and 5.x."
    )
    lines += _offload_note(k)
    lines.append("#")
    lines.append("# Model, LoRA and quantization are not TrainingArguments fields; set them up in code:")
    lines += _model_code(ctx, k)
    lines.append("")

    items: list = [
        ("output_dir", f"outputs/{ctx.model_name}", "FILL IN"),
        ("per_device_train_batch_size", k.batch),
        ("gradient_accumulation_steps", k.accum),
        ("gradient_checkpointing", k.grad_ckpt),
    ]
    if k.grad_ckpt:
        items.append(("gradient_checkpointing_kwargs", {"use_reentrant": False}))
    items += [
        ("bf16", True),
        ("optim", k.optim),
        ("learning_rate", _learning_rate(k), "FILL IN"),
        ("num_train_epochs", _EPOCHS, "FILL IN"),
        ("lr_scheduler_type", "cosine"),
        ("logging_steps", _LOGGING_STEPS),
        ("save_steps", _SAVE_STEPS),
        ("report_to", "none"),
    ]
    if k.zero > 0:
        items.append(("deepspeed", ctx.deepspeed_config_path))
    return _text(lines + _yaml_lines(items))


# --------------------------------------------------------------------------
# axolotl


def render_axolotl(ctx: ExportContext) -> str:
    k = _knobs(ctx)
    lines = _header(ctx, k, "axolotl config (axolotl train axolotl.yaml).")
    launch = "axolotl train axolotl.yaml"
    if ctx.gpus > 1 or k.zero > 0:
        launch += f"  (uses accelerate; {ctx.gpus} GPU(s))"
    lines.append(f"# Launch: {_env_prefix(k)}{launch}")
    lines += _ds_path_note(ctx, k)
    lines.append("# Replace the placeholders marked FILL IN (datasets, output_dir, schedule).")
    lines += _offload_note(k)
    lines.append("")

    items: list = [("base_model", ctx.model_ref)]
    if needs_remote_code(ctx.model_config):
        items.append(("trust_remote_code", True, "the model's code lives in its repository (auto_map)"))
    if k.quant == "nf4":
        items += [("load_in_4bit", True), ("adapter", "qlora", "NF4 + double quantization, bf16 compute")]
    elif k.quant == "int8":
        items += [("load_in_8bit", True), ("adapter", "lora")]
    elif k.lora:
        items.append(("adapter", "lora"))
    if k.lora:
        items += [
            ("lora_r", k.rank),
            ("lora_alpha", 2 * k.rank),
            ("lora_dropout", 0.0),
            ("lora_target_linear", True),
        ]
    items += [
        "",
        ("datasets", [{"path": "mhenrichsen/alpaca_2k_test", "type": "alpaca"}], "FILL IN"),
        ("output_dir", f"./outputs/{ctx.model_name}", "FILL IN"),
        "",
        ("sequence_len", k.seq_len),
        ("sample_packing", False),
        ("micro_batch_size", k.batch),
        ("gradient_accumulation_steps", k.accum),
        ("num_epochs", _EPOCHS, "FILL IN"),
        ("optimizer", k.optim),
        ("lr_scheduler", "cosine"),
        ("learning_rate", _learning_rate(k), "FILL IN"),
        ("bf16", True),
        ("gradient_checkpointing", k.grad_ckpt),
        ("attn_implementation", k.attn),
        ("logging_steps", _LOGGING_STEPS),
        ("save_steps", _SAVE_STEPS),
    ]
    if k.zero > 0:
        items.append(("deepspeed", ctx.deepspeed_config_path))
    return _text(lines + _yaml_lines(items))


# --------------------------------------------------------------------------


def render(fmt: str, ctx: ExportContext) -> dict[str, str]:
    """filename -> text for one format (ds_config.json added when ZeRO is used)."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; valid formats: {', '.join(FORMATS)}")
    if fmt == "deepspeed":
        return {DS_FILENAME: render_deepspeed(ctx), DS_RESOLVED_FILENAME: render_deepspeed_resolved(ctx)}
    renderer, filename = {
        "llamafactory": (render_llamafactory, "llamafactory.yaml"),
        "hf": (render_hf, "hf_training_args.yaml"),
        "axolotl": (render_axolotl, "axolotl.yaml"),
    }[fmt]
    files = {filename: renderer(ctx)}
    if deepspeed_config(ctx) is not None:
        files[DS_FILENAME] = render_deepspeed(ctx)
    return files
