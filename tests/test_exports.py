"""Tests for autofit.exports: every output is parsed and checked by the real
libraries (transformers, DeepSpeed) or against key allow-lists taken from the
trainers' own argument definitions.

Run: python -m pytest tests/test_exports.py -q
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import warnings

import pytest
import torch
import yaml

from autofit.exports import (
    FORMATS,
    ExportContext,
    deepspeed_config,
    render,
    render_axolotl,
    render_deepspeed,
    render_hf,
    resolved_deepspeed_config,
    render_llamafactory,
)

# ---------------------------------------------------------------------------
# allow-lists

# LLaMA-Factory parses the training YAML with
# HfArgumentParser([ModelArguments, DataArguments, TrainingArguments,
# FinetuningArguments, GeneratingArguments]).parse_dict(..., allow_extra_keys=False)
# (src/llamafactory/hparams/parser.py, _parse_train_args), i.e. unknown keys are an
# error. Its TrainingArguments is transformers' Seq2SeqTrainingArguments plus Ray
# arguments and `overwrite_output_dir` (src/llamafactory/hparams/training_args.py).
# LLaMA-Factory's own names below were checked in hiyouga/LLaMA-Factory (main) and
# in the llamafactory 0.9.5 wheel from PyPI:
#   src/llamafactory/hparams/model_args.py   (BaseModelArguments, QuantizationArguments)
#   src/llamafactory/hparams/data_args.py    (DataArguments)
#   src/llamafactory/hparams/finetuning_args.py (LoraArguments, FinetuningArguments)
LLAMAFACTORY_OWN_ARGS = {
    # model_args.py
    "model_name_or_path",
    "trust_remote_code",
    "cache_dir",
    "flash_attn",  # AttentionFunction: auto | disabled | sdpa | fa2 (| fa3)
    "disable_gradient_checkpointing",
    "use_reentrant_gc",
    "upcast_layernorm",
    "quantization_method",  # QuantizationMethod.BNB == "bnb"
    "quantization_bit",
    "quantization_type",  # "fp4" | "nf4"
    "double_quantization",
    # data_args.py
    "template",
    "dataset",
    "dataset_dir",
    "cutoff_len",
    "overwrite_cache",
    "preprocessing_num_workers",
    "max_samples",
    "packing",
    "val_size",
    # finetuning_args.py
    "stage",
    "finetuning_type",
    "pure_bf16",
    "lora_rank",
    "lora_alpha",
    "lora_dropout",
    "lora_target",
    "plot_loss",
    # training_args.py
    "overwrite_output_dir",
}
LLAMAFACTORY_FLASH_ATTN = {"auto", "disabled", "sdpa", "fa2", "fa3"}

# axolotl: keys of AxolotlInputConfig (src/axolotl/utils/schemas/config.py) and the
# mixins it inherits, checked in axolotl-ai-cloud/axolotl and the axolotl 0.19.0
# wheel from PyPI:
#   schemas/model.py    ModelInputConfig: base_model, trust_remote_code;
#                       ModelOutputConfig: output_dir
#   schemas/peft.py     LoraConfig: load_in_8bit, load_in_4bit, adapter, lora_r,
#                       lora_alpha, lora_dropout, lora_target_linear
#   schemas/training.py HyperparametersConfig: micro_batch_size,
#                       gradient_accumulation_steps, num_epochs, optimizer,
#                       lr_scheduler, learning_rate
#   schemas/config.py   AxolotlInputConfig: datasets, sequence_len, sample_packing,
#                       bf16, gradient_checkpointing, attn_implementation
#                       (replaces the deprecated sdp_attention/eager_attention
#                       flags), deepspeed, logging_steps, save_steps
# The pydantic model ignores unknown keys silently, hence this explicit list.
AXOLOTL_KEYS = {
    "base_model",
    "trust_remote_code",
    "output_dir",
    "load_in_8bit",
    "load_in_4bit",
    "adapter",
    "lora_r",
    "lora_alpha",
    "lora_dropout",
    "lora_target_linear",
    "micro_batch_size",
    "gradient_accumulation_steps",
    "num_epochs",
    "optimizer",
    "lr_scheduler",
    "learning_rate",
    "datasets",
    "sequence_len",
    "sample_packing",
    "bf16",
    "gradient_checkpointing",
    "attn_implementation",
    "deepspeed",
    "logging_steps",
    "save_steps",
}

# Names of autofit's figures: they may only ever appear in comments.
AUTOFIT_FIGURE_KEYS = {
    "peak_memory_gib",
    "peak_memory",
    "tokens_per_s",
    "probe",
    "estimated",
    "gpu_mem",
    "usable_budget_gib",
    "allocator",
    "PYTORCH_CUDA_ALLOC_CONF",
}

ALLOC_ENV = "PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True"

# ---------------------------------------------------------------------------
# configurations under test

BASE = {
    "per_device_train_batch_size": 2,
    "gradient_accumulation_steps": 8,
    "seq_len": 2048,
    "lora_rank": 16,
    "quantization": "none",
    "gradient_checkpointing": True,
    "zero_stage": 0,
    "offload": "none",
    "optimizer": "adamw_torch",
    "attn_implementation": "sdpa",
}

CASES = {
    "lora": {},
    "qlora_nf4": {"quantization": "nf4", "optimizer": "paged_adamw_8bit", "lora_rank": 64},
    "int8": {"quantization": "int8", "optimizer": "adamw_8bit", "lora_rank": 8},
    "full_z3_offload_all": {"lora_rank": 0, "zero_stage": 3, "offload": "all"},
    "full_z2_offload_optimizer": {"lora_rank": 0, "zero_stage": 2, "offload": "optimizer"},
    "lora_z2_offload_optimizer": {"zero_stage": 2, "offload": "optimizer"},
    "qlora_z3": {"quantization": "nf4", "zero_stage": 3},
    "full_z1": {"lora_rank": 0, "zero_stage": 1},
    "eager": {"attn_implementation": "eager"},
    "ckpt_off": {"gradient_checkpointing": False, "per_device_train_batch_size": 1},
    "allocator_expandable": {"allocator": "expandable", "zero_stage": 2},
    "full_no_zero": {"lora_rank": 0},
}

PEAK, TPS, BUDGET = 18.73, 2345.6, 21.6


# the model's config.json as a study stores it (a model transformers knows: no remote code)
GLM_CONFIG = {"model_type": "glm", "hidden_size": 4096, "num_hidden_layers": 40, "vocab_size": 151552}


def make_ctx(case: str, *, estimated: bool = True, ds_path: str = "ds_config.json", gpus: int = 1,
             model_config: dict | None = None, **extra):
    cfg = {**BASE, **CASES[case], **extra}
    return ExportContext(
        model_ref="THUDM/glm-4-9b-chat-hf",
        model_name="glm4-9b",
        template="glm4",
        config=cfg,
        peak_memory_gib=PEAK,
        tokens_per_s=TPS,
        probe="trace" if estimated else "cuda",
        estimated=estimated,
        gpu_mem="24GB",
        usable_budget_gib=BUDGET,
        gpus=gpus,
        deepspeed_config_path=ds_path,
        model_config=model_config or GLM_CONFIG,
    )


def knobs(case: str) -> dict:
    return {**BASE, **CASES[case]}


@pytest.fixture(autouse=True)
def _reset_hf_deepspeed():
    """TrainingArguments(deepspeed=...) registers a process-global DeepSpeed config."""
    yield
    from transformers.integrations.deepspeed import unset_hf_deepspeed_config

    unset_hf_deepspeed_config()


def comment_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.lstrip().startswith("#")]


def key_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def optimizer_names() -> set[str]:
    from transformers.training_args import OptimizerNames

    return {o.value for o in OptimizerNames}


def seq2seq_fields() -> set[str]:
    from transformers import Seq2SeqTrainingArguments

    return {f.name for f in dataclasses.fields(Seq2SeqTrainingArguments) if f.init}


def training_args_fields() -> set[str]:
    from transformers import TrainingArguments

    return {f.name for f in dataclasses.fields(TrainingArguments) if f.init}


EXPECTED_OPTIM = {"adamw_torch": "adamw_torch", "adamw_8bit": "adamw_bnb_8bit", "paged_adamw_8bit": "paged_adamw_8bit"}

# ---------------------------------------------------------------------------
# render()


@pytest.mark.parametrize("case", sorted(CASES))
def test_render_file_sets(case):
    ctx = make_ctx(case)
    zero = knobs(case)["zero_stage"]
    expected = {"llamafactory": "llamafactory.yaml", "hf": "hf_training_args.yaml", "axolotl": "axolotl.yaml"}
    for fmt, name in expected.items():
        files = render(fmt, ctx)
        assert set(files) == ({name, "ds_config.json"} if zero else {name})
        assert all(text.endswith("\n") for text in files.values())
        if zero:
            assert json.loads(files["ds_config.json"]) == deepspeed_config(ctx)
    if zero:
        files = render("deepspeed", ctx)
        assert set(files) == {"ds_config.json", "ds_config.resolved.json"}
        assert json.loads(files["ds_config.resolved.json"]) == resolved_deepspeed_config(ctx)
    else:
        assert deepspeed_config(ctx) is None
        with pytest.raises(ValueError, match="zero_stage is 0: no DeepSpeed config"):
            render("deepspeed", ctx)
        with pytest.raises(ValueError, match="zero_stage is 0: no DeepSpeed config"):
            render_deepspeed(ctx)


def test_unknown_format_names_valid_ones():
    with pytest.raises(ValueError) as err:
        render("megatron", make_ctx("lora"))
    for fmt in FORMATS:
        assert fmt in str(err.value)


def test_cli_format_help_names_every_format():
    """`autofit export --format`'s help lists exactly the formats render() accepts, in order."""
    import typer.main

    from autofit.cli import app

    export = typer.main.get_command(app).commands["export"]
    (option,) = [p for p in export.params if "--format" in p.opts]
    assert option.help.split("|") == list(FORMATS)


def test_unknown_extra_knobs_are_ignored():
    plain = make_ctx("lora")
    extra = make_ctx("lora", some_future_knob=123, allocator="default")
    for fmt in ("llamafactory", "hf", "axolotl"):
        assert render(fmt, plain) == render(fmt, extra)


def test_invalid_combinations_rejected():
    with pytest.raises(ValueError, match="offload_all_needs_zero3"):
        render("hf", make_ctx("full_z2_offload_optimizer", offload="all"))
    with pytest.raises(ValueError, match="quantization_needs_lora"):
        render("llamafactory", make_ctx("full_z1", quantization="nf4"))
    with pytest.raises(ValueError, match="lacks knob"):
        render("axolotl", ExportContext("m", "m", None, {"seq_len": 8}, 1.0, 1.0, "cpu", False, "8GB", 7.0))


# ---------------------------------------------------------------------------
# comments: figures, "estimated", environment line


@pytest.mark.parametrize("fmt", ["llamafactory", "hf", "axolotl"])
@pytest.mark.parametrize("estimated", [True, False])
def test_figures_only_in_comments(fmt, estimated):
    for case in CASES:
        ctx = make_ctx(case, estimated=estimated)
        text = render(fmt, ctx)[
            {"llamafactory": "llamafactory.yaml", "hf": "hf_training_args.yaml", "axolotl": "axolotl.yaml"}[fmt]
        ]
        comments = "\n".join(comment_lines(text))
        body = "\n".join(key_lines(text))
        # the figures are in the comments ...
        assert f"{PEAK:.2f}" in comments
        assert "2,346" in comments  # tokens/s
        assert f"{BUDGET:.2f}" in comments
        assert "24GB" in comments
        assert ctx.probe in comments
        # ... and never in keys/values
        for figure in (f"{PEAK:.2f}", "2,346", "2346", f"{BUDGET:.2f}", "24GB"):
            assert figure not in body
        data = yaml.safe_load(text)
        assert not (AUTOFIT_FIGURE_KEYS & set(data))
        # "estimated" appears exactly when the numbers are estimated
        assert ("estimated" in comments.lower()) is estimated
        assert "estimated" not in body.lower()


@pytest.mark.parametrize("fmt", ["llamafactory", "hf", "axolotl"])
def test_allocator_env_line(fmt):
    for case in CASES:
        for allocator in ("default", "expandable", None):
            extra = {} if allocator is None else {"allocator": allocator}
            files = render(fmt, make_ctx(case, **extra) if case != "allocator_expandable" else make_ctx(case))
            text = next(t for name, t in files.items() if name.endswith(".yaml"))
            expandable = (allocator == "expandable") or case == "allocator_expandable"
            env_comments = [line for line in comment_lines(text) if ALLOC_ENV in line]
            assert bool(env_comments) is expandable
            # only ever as a comment
            assert not any(ALLOC_ENV in line for line in key_lines(text))
            if expandable:
                assert any(
                    re.search(r"^#\s+export PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True$", line)
                    for line in env_comments
                )


def test_header_precedes_keys():
    for case in CASES:
        for text in (render_llamafactory(make_ctx(case)), render_hf(make_ctx(case)), render_axolotl(make_ctx(case))):
            first_key = next(i for i, line in enumerate(text.splitlines()) if line and not line.startswith("#"))
            assert first_key > 3
            assert all(line.startswith("#") or not line for line in text.splitlines()[:first_key])


# ---------------------------------------------------------------------------
# LLaMA-Factory


@pytest.mark.parametrize("case", sorted(CASES))
def test_llamafactory_keys_and_values(case):
    k = knobs(case)
    data = yaml.safe_load(render_llamafactory(make_ctx(case)))
    allowed = seq2seq_fields() | LLAMAFACTORY_OWN_ARGS
    assert set(data) <= allowed, set(data) - allowed

    assert data["model_name_or_path"] == "THUDM/glm-4-9b-chat-hf"
    assert "trust_remote_code" not in data  # GLM is in transformers: no remote code
    # LLaMA-Factory checkpoints reentrantly unless told: the export asks for what autofit traced
    assert data.get("use_reentrant_gc") is (False if k["gradient_checkpointing"] else None)
    assert data["stage"] == "sft" and data["do_train"] is True
    assert data["template"] == "glm4"
    assert data["cutoff_len"] == k["seq_len"]
    assert data["per_device_train_batch_size"] == k["per_device_train_batch_size"]
    assert data["gradient_accumulation_steps"] == k["gradient_accumulation_steps"]
    assert data["bf16"] is True
    assert data["optim"] == EXPECTED_OPTIM[k["optimizer"]]
    assert data["optim"] in optimizer_names()
    assert data["flash_attn"] in LLAMAFACTORY_FLASH_ATTN
    assert data["flash_attn"] == {"sdpa": "sdpa", "eager": "disabled"}[k["attn_implementation"]]
    assert data.get("disable_gradient_checkpointing", False) is (not k["gradient_checkpointing"])
    for placeholder in ("dataset", "output_dir", "learning_rate", "num_train_epochs", "logging_steps", "save_steps"):
        assert placeholder in data
    assert isinstance(data["learning_rate"], float) and 0 < data["learning_rate"] < 1e-2
    assert isinstance(data["num_train_epochs"], float)

    if k["lora_rank"]:
        assert data["finetuning_type"] == "lora"
        assert data["lora_rank"] == k["lora_rank"]
        assert data["lora_alpha"] == 2 * k["lora_rank"]
        assert data["lora_dropout"] == 0.0
        assert data["lora_target"] == "all"
        assert "pure_bf16" not in data
    else:
        assert data["finetuning_type"] == "full"
        assert not any(key.startswith("lora_") for key in data)
        # parser.py: "`pure_bf16` is incompatible with DeepSpeed ZeRO-3."
        assert data.get("pure_bf16", False) is (k["zero_stage"] != 3)

    quant = k["quantization"]
    if quant == "none":
        assert not any(key.startswith("quantization") or key == "double_quantization" for key in data)
    else:
        assert data["quantization_method"] == "bnb"
        assert data["quantization_bit"] == {"int8": 8, "nf4": 4}[quant]
        if quant == "nf4":
            assert data["quantization_type"] == "nf4" and data["double_quantization"] is True
        else:
            assert "quantization_type" not in data and "double_quantization" not in data

    if k["zero_stage"]:
        assert data["deepspeed"] == "ds_config.json"
    else:
        assert "deepspeed" not in data


def test_llamafactory_template_default_and_ds_path():
    ctx = dataclasses.replace(make_ctx("full_z3_offload_all"), template=None, deepspeed_config_path="cfg/ds.json")
    text = render_llamafactory(ctx)
    data = yaml.safe_load(text)
    assert data["template"] == "default"
    assert data["deepspeed"] == "cfg/ds.json"
    assert "FORCE_TORCHRUN=1" in "\n".join(comment_lines(text))


def test_llamafactory_real_parser_if_installed(tmp_path):
    """Strongest check, run where LLaMA-Factory is importable (skipped otherwise)."""
    os.environ.setdefault("DISABLE_VERSION_CHECK", "1")
    parser_mod = pytest.importorskip("llamafactory.hparams.parser")
    from transformers import HfArgumentParser

    fields = set()
    for cls in parser_mod._TRAIN_ARGS:
        fields |= {f.name for f in dataclasses.fields(cls) if f.init}
    assert LLAMAFACTORY_OWN_ARGS <= fields
    for case in CASES:
        ds_path = tmp_path / f"{case}.json"
        ctx = make_ctx(case, ds_path=str(ds_path))
        if deepspeed_config(ctx):
            ds_path.write_text(render_deepspeed(ctx))
        data = yaml.safe_load(render_llamafactory(ctx))
        data["output_dir"] = str(tmp_path / case)
        if not torch.cuda.is_available():
            data["use_cpu"] = True  # TrainingArguments refuses bf16 on a CPU-only box otherwise
        HfArgumentParser(parser_mod._TRAIN_ARGS).parse_dict(data, allow_extra_keys=False)


# ---------------------------------------------------------------------------
# Hugging Face TrainingArguments


@pytest.mark.parametrize("case", sorted(CASES))
def test_hf_training_arguments_construct(case, tmp_path):
    from transformers import TrainingArguments

    k = knobs(case)
    ds_path = tmp_path / "ds_config.json"
    ctx = make_ctx(case, ds_path=str(ds_path))
    files = render("hf", ctx)
    if k["zero_stage"]:
        ds_path.write_text(files["ds_config.json"])
    text = files["hf_training_args.yaml"]
    data = yaml.safe_load(text)
    assert set(data) <= training_args_fields(), set(data) - training_args_fields()
    assert not {"peft", "quantization", "lora", "model", "model_name_or_path"} & set(data)

    data["output_dir"] = str(tmp_path / "out")
    extra = {} if torch.cuda.is_available() else {"use_cpu": True}  # bf16 check on CPU-only boxes
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # gradient_checkpointing -> activation_checkpointing rename
        args = TrainingArguments(**data, **extra)

    assert args.per_device_train_batch_size == k["per_device_train_batch_size"]
    assert args.gradient_accumulation_steps == k["gradient_accumulation_steps"]
    assert args.gradient_checkpointing is k["gradient_checkpointing"]
    if k["gradient_checkpointing"]:
        assert args.gradient_checkpointing_kwargs == {"use_reentrant": False}
    assert args.bf16 is True and args.fp16 is False
    assert args.optim.value == EXPECTED_OPTIM[k["optimizer"]]
    if k["zero_stage"]:
        assert args.deepspeed == str(ds_path)
        ds = args.hf_deepspeed_config.config
        assert ds["zero_optimization"]["stage"] == k["zero_stage"]
        # "auto" values were filled from the trainer arguments
        assert ds["train_micro_batch_size_per_gpu"] == k["per_device_train_batch_size"]
        assert ds["gradient_accumulation_steps"] == k["gradient_accumulation_steps"]
        assert ds["bf16"]["enabled"] is True
    else:
        assert args.deepspeed is None

    # model / LoRA / quantization guidance is in comments
    comments = "\n".join(comment_lines(text))
    assert f'attn_implementation="{k["attn_implementation"]}"' in comments
    assert "dtype=torch.bfloat16" in comments
    assert f"max_length={k['seq_len']}" in comments
    if k["lora_rank"]:
        assert f"r={k['lora_rank']}, lora_alpha={2 * k['lora_rank']}, lora_dropout=0.0" in comments
        assert 'target_modules="all-linear"' in comments
    else:
        assert "LoraConfig" not in comments
    if k["quantization"] == "nf4":
        for needle in (
            "load_in_4bit=True",
            'bnb_4bit_quant_type="nf4"',
            "bnb_4bit_use_double_quant=True",
            "bnb_4bit_compute_dtype=torch.bfloat16",
        ):
            assert needle in comments
        assert ("bnb_4bit_quant_storage=torch.bfloat16" in comments) is (k["zero_stage"] == 3)
    elif k["quantization"] == "int8":
        assert "load_in_8bit=True" in comments
    else:
        assert "BitsAndBytesConfig" not in comments


def test_hf_comment_code_is_valid_python():
    """The commented model-setup snippet must be syntactically valid Python."""
    import ast

    for case in CASES:
        text = render_hf(make_ctx(case))
        lines = text.splitlines()
        start = next(i for i, line in enumerate(lines) if line.startswith("#   import torch"))
        snippet = []
        for line in lines[start:]:
            if not line.startswith("#"):
                break
            snippet.append(line[4:] if line.startswith("#   ") else "")
        ast.parse("\n".join(snippet))


# ---------------------------------------------------------------------------
# DeepSpeed


def _walk(obj):
    if isinstance(obj, dict):
        for value in obj.values():
            yield from _walk(value)
    else:
        yield obj


@pytest.fixture(scope="module")
def tiny_model():
    """A real (tiny) causal LM, so the HF integration can fill hidden-size based "auto" keys."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        vocab_size=128,
    )
    return LlamaForCausalLM(config)


ZERO_CASES = sorted(c for c in CASES if knobs(c)["zero_stage"])


@pytest.mark.parametrize("case", ZERO_CASES)
def test_deepspeed_config_shape(case):
    k = knobs(case)
    cfg = json.loads(render_deepspeed(make_ctx(case)))
    for key in (
        "train_batch_size",
        "train_micro_batch_size_per_gpu",
        "gradient_accumulation_steps",
        "gradient_clipping",
    ):
        assert cfg[key] == "auto"
    assert cfg["bf16"]["enabled"] in ("auto", True)
    assert cfg["fp16"]["enabled"] in ("auto", False)
    zero = cfg["zero_optimization"]
    assert zero["stage"] == k["zero_stage"]
    offload = k["offload"]
    assert ("offload_optimizer" in zero) is (offload in ("optimizer", "all"))
    assert ("offload_param" in zero) is (offload == "all")
    for key in ("offload_optimizer", "offload_param"):
        if key in zero:
            assert zero[key] == {"device": "cpu", "pin_memory": True}
    if offload != "none":
        assert cfg["optimizer"]["type"] == "AdamW"
    else:
        assert "optimizer" not in cfg
    if k["zero_stage"] < 3:
        assert not any(key.startswith("stage3_") for key in zero)


@pytest.mark.parametrize("case", ZERO_CASES)
def test_deepspeed_config_validates(case, tmp_path, tiny_model):
    """Run the config through the HF integration (fills "auto") and DeepSpeed's own pydantic models."""
    from deepspeed.runtime.config import DeepSpeedConfig
    from deepspeed.runtime.zero.config import DeepSpeedZeroConfig
    from deepspeed.runtime.zero.offload_config import (
        DeepSpeedZeroOffloadOptimizerConfig,
        DeepSpeedZeroOffloadParamConfig,
    )
    from transformers import TrainingArguments

    k = knobs(case)
    ds_path = tmp_path / "ds_config.json"
    ctx = make_ctx(case, ds_path=str(ds_path))
    ds_path.write_text(render_deepspeed(ctx))
    data = yaml.safe_load(render_hf(ctx))
    data["output_dir"] = str(tmp_path / "out")
    extra = {} if torch.cuda.is_available() else {"use_cpu": True}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        args = TrainingArguments(**data, **extra)
    hf_ds = args.hf_deepspeed_config
    hf_ds.trainer_config_finalize(args, tiny_model, num_training_steps=100)
    final = hf_ds.config
    assert "auto" not in list(_walk(final)), final

    zero = DeepSpeedZeroConfig(**final["zero_optimization"])  # extra="forbid": unknown keys fail
    assert int(zero.stage) == k["zero_stage"]
    assert (zero.offload_optimizer is not None) is (k["offload"] in ("optimizer", "all"))
    assert (zero.offload_param is not None) is (k["offload"] == "all")
    if "offload_optimizer" in final["zero_optimization"]:
        DeepSpeedZeroOffloadOptimizerConfig(**final["zero_optimization"]["offload_optimizer"])
    if "offload_param" in final["zero_optimization"]:
        DeepSpeedZeroOffloadParamConfig(**final["zero_optimization"]["offload_param"])

    ds = DeepSpeedConfig(final)  # full DeepSpeed parse + batch-size sanity checks (world size 1 here)
    assert ds.zero_optimization_stage == k["zero_stage"]
    assert ds.bfloat16_config.enabled and not ds.float16_config.enabled
    assert ds.train_micro_batch_size_per_gpu == k["per_device_train_batch_size"]
    assert ds.gradient_accumulation_steps == k["gradient_accumulation_steps"]
    assert ds.zero_allow_untested_optimizer
    if k["offload"] != "none":
        assert ds.optimizer_name == "adamw"
        assert ds.optimizer_params["lr"] == args.learning_rate


# ---------------------------------------------------------------------------
# axolotl


@pytest.mark.parametrize("case", sorted(CASES))
def test_axolotl_keys_and_values(case):
    k = knobs(case)
    data = yaml.safe_load(render_axolotl(make_ctx(case)))
    assert set(data) <= AXOLOTL_KEYS, set(data) - AXOLOTL_KEYS
    assert data["base_model"] == "THUDM/glm-4-9b-chat-hf"
    assert data["micro_batch_size"] == k["per_device_train_batch_size"]
    assert data["gradient_accumulation_steps"] == k["gradient_accumulation_steps"]
    assert data["sequence_len"] == k["seq_len"]
    assert data["sample_packing"] is False
    assert data["bf16"] is True
    assert data["gradient_checkpointing"] is k["gradient_checkpointing"]
    assert data["attn_implementation"] == k["attn_implementation"]
    assert data["optimizer"] == EXPECTED_OPTIM[k["optimizer"]]
    assert data["optimizer"] in optimizer_names()
    assert isinstance(data["learning_rate"], float)
    assert data["datasets"] and all({"path", "type"} <= set(d) for d in data["datasets"])
    assert "output_dir" in data

    quant = k["quantization"]
    if not k["lora_rank"]:
        assert "adapter" not in data
        assert not any(key.startswith(("lora_", "load_in_")) for key in data)
    else:
        assert data["adapter"] == ("qlora" if quant == "nf4" else "lora")
        assert data["lora_r"] == k["lora_rank"]
        assert data["lora_alpha"] == 2 * k["lora_rank"]
        assert data["lora_dropout"] == 0.0
        assert data["lora_target_linear"] is True
        assert data.get("load_in_4bit", False) is (quant == "nf4")
        assert data.get("load_in_8bit", False) is (quant == "int8")
    if k["zero_stage"]:
        assert data["deepspeed"] == "ds_config.json"
    else:
        assert "deepspeed" not in data


def test_axolotl_real_schema_if_installed(tmp_path):
    """Strongest check, run where axolotl is importable (skipped otherwise)."""
    config_mod = pytest.importorskip("axolotl.utils.config")
    from axolotl.utils.dict import DictDefault
    from axolotl.utils.schemas.config import AxolotlInputConfig

    assert AXOLOTL_KEYS <= set(AxolotlInputConfig.model_fields)
    caps = {"bf16": True, "fp8": False, "tf32": True, "n_gpu": 1, "n_node": 1, "compute_capability": "sm_90"}
    env = {"torch_version": torch.__version__.split("+")[0]}
    for case in CASES:
        ds_path = tmp_path / f"{case}.json"
        ctx = make_ctx(case, ds_path=str(ds_path))
        if deepspeed_config(ctx):
            ds_path.write_text(render_deepspeed(ctx))
        data = yaml.safe_load(render_axolotl(ctx))
        out = config_mod.validate_config(DictDefault(data), capabilities=caps, env_capabilities=env)
        assert out["attn_implementation"] == knobs(case)["attn_implementation"]


# ---------------------------------------------------------------------------
# odd model references / names survive the round trip


@pytest.mark.parametrize("model_ref", ["1e5", "yes", "null", "/models/glm 4: chat", "#weird", "C:\\models\\glm"])
def test_odd_model_refs_round_trip(model_ref):
    ctx = dataclasses.replace(make_ctx("qlora_nf4"), model_ref=model_ref, model_name="glm\n4: x")
    assert yaml.safe_load(render_llamafactory(ctx))["model_name_or_path"] == model_ref
    assert yaml.safe_load(render_axolotl(ctx))["base_model"] == model_ref
    hf = render_hf(ctx)
    data = yaml.safe_load(hf)
    assert set(data) <= training_args_fields()
    for text in (render_llamafactory(ctx), hf, render_axolotl(ctx)):
        assert not (AUTOFIT_FIGURE_KEYS & set(yaml.safe_load(text)))
        assert "glm 4: x" in "\n".join(comment_lines(text))


def test_numpy_knob_values_render_like_python_ones():
    np = pytest.importorskip("numpy")
    plain = make_ctx("qlora_z3")
    cfg = {
        key: (np.int64(value) if isinstance(value, int) and not isinstance(value, bool) else value)
        for key, value in plain.config.items()
    }
    cfg["gradient_checkpointing"] = np.bool_(True)
    as_numpy = dataclasses.replace(plain, config=cfg)
    for fmt in FORMATS:
        assert render(fmt, plain) == render(fmt, as_numpy)


def test_relative_deepspeed_path_note():
    rel = render_llamafactory(make_ctx("full_z1"))
    assert any("is relative" in line for line in comment_lines(rel))
    absolute = render_llamafactory(make_ctx("full_z1", ds_path="/abs/ds_config.json"))
    assert not any("is relative" in line for line in comment_lines(absolute))
    assert yaml.safe_load(absolute)["deepspeed"] == "/abs/ds_config.json"
    assert not any("is relative" in line for line in comment_lines(render_llamafactory(make_ctx("lora"))))


# ---------------------------------------------------------------------------
# exports train what was estimated


@pytest.mark.parametrize("model_config,needed", [
    (GLM_CONFIG, False),
    ({**GLM_CONFIG, "auto_map": {"AutoModelForCausalLM": "modeling_chatglm.ChatGLMForConditionalGeneration"}}, True),
    ({"model_type": "chatglm", "hidden_size": 4096}, True),  # a model_type transformers does not know
])
def test_trust_remote_code_only_where_the_model_needs_it(model_config, needed):
    ctx = make_ctx("qlora_nf4", model_config=model_config)
    assert yaml.safe_load(render_llamafactory(ctx)).get("trust_remote_code", False) is needed
    assert yaml.safe_load(render_axolotl(ctx)).get("trust_remote_code", False) is needed
    assert ("trust_remote_code=True" in render_hf(ctx)) is needed


def _hf_model_code(text: str) -> str:
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("#   import torch"))
    code = []
    for line in lines[start:]:
        if not line.startswith("#"):
            break
        code.append(line[4:] if line.startswith("#   ") else "")
    return "\n".join(code)


def test_hf_qlora_code_keeps_embeddings_and_norms_in_bf16(tmp_path):
    """The HF export's model code, run for real (a tiny model, bitsandbytes 4-bit on the CPU): no fp32 upcast of
    embeddings, lm_head or norms (what peft's prepare_model_for_kbit_training would add), LoRA adapters in fp32,
    as the trace assumes."""
    from transformers import LlamaConfig, LlamaForCausalLM

    path = tmp_path / "tiny-llama"
    LlamaForCausalLM(LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                                 num_key_value_heads=2, vocab_size=256, tie_word_embeddings=False)).save_pretrained(path)
    ctx = dataclasses.replace(make_ctx("qlora_nf4"), model_ref=str(path))
    code = _hf_model_code(render_hf(ctx))
    assert "prepare_model_for_kbit_training(" not in code
    assert "model.enable_input_require_grads()" in code
    code = "\n".join(line for line in code.splitlines() if not line.startswith("tokenizer = "))  # no tokenizer files
    namespace: dict = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        exec(compile(code, "hf_training_args.yaml", "exec"), namespace)
    model = namespace["model"]
    base = model.get_base_model()
    assert base.get_input_embeddings().weight.dtype == torch.bfloat16
    assert base.get_output_embeddings().weight.dtype == torch.bfloat16
    assert base.model.norm.weight.dtype == torch.bfloat16
    assert {p.dtype for n, p in model.named_parameters() if p.requires_grad} == {torch.float32}
    assert all("lora_" in n for n, p in model.named_parameters() if p.requires_grad)


@pytest.mark.parametrize("case", ZERO_CASES)
def test_resolved_deepspeed_config_is_what_the_hf_integration_runs(case, tmp_path, tiny_model):
    """ds_config.resolved.json equals ds_config.json as the HF integration fills it, and loads in plain DeepSpeed,
    which refuses the "auto" file itself."""
    from deepspeed.runtime.config import DeepSpeedConfig
    from transformers import TrainingArguments

    ds_path = tmp_path / "ds_config.json"
    ctx = make_ctx(case, ds_path=str(ds_path), model_config={"model_type": "llama",
                                                              "hidden_size": tiny_model.config.hidden_size})
    ds_path.write_text(render_deepspeed(ctx))
    data = yaml.safe_load(render_hf(ctx))
    data["output_dir"] = str(tmp_path / "out")
    extra = {} if torch.cuda.is_available() else {"use_cpu": True}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        args = TrainingArguments(**data, **extra)
    hf_ds = args.hf_deepspeed_config
    hf_ds.trainer_config_finalize(args, tiny_model, num_training_steps=100)
    resolved = json.loads(render("deepspeed", ctx)["ds_config.resolved.json"])
    filled = {k: v for k, v in hf_ds.config.items() if k != "steps_per_print"}  # a logging value it adds
    assert resolved == filled
    assert "auto" not in list(_walk(resolved))
    ds = DeepSpeedConfig(resolved)
    assert ds.train_micro_batch_size_per_gpu == knobs(case)["per_device_train_batch_size"]
    with pytest.raises(TypeError):
        DeepSpeedConfig(json.loads(render_deepspeed(ctx)))
    note = [line for line in comment_lines(render_llamafactory(ctx)) if "ds_config.resolved.json" in line]
    assert note and '"auto"' in note[0]
