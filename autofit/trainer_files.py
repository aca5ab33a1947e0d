"""The user's own trainer file, in and out: a LLaMA-Factory YAML, an axolotl YAML, or a Hugging Face
TrainingArguments / TRL SFTConfig YAML or JSON (with the DeepSpeed JSON it names).

Reading maps the file to autofit's knobs (each value, or the trainer's documented default when the key is absent)
and its model (`model_name_or_path` / `base_model`). Writing puts a recommendation back into the same text: every
other key, comment and order kept, each changed key marked `# autofit: was ...`, removed keys commented out and
new ones appended under a marked line. Key names and defaults, from the trainers' sources:
LLaMA-Factory src/llamafactory/hparams/{model,data,finetuning}_args.py (cutoff_len 2048, finetuning_type lora,
lora_rank 8, disable_gradient_checkpointing false, flash_attn auto), axolotl src/axolotl/utils/schemas/*.py
(sequence_len 512, micro_batch_size 1, gradient_checkpointing false, adapter lora|qlora), transformers
TrainingArguments (per_device_train_batch_size 8, gradient_accumulation_steps 1, optim adamw_torch) and TRL
(max_length 1024, use_peft, lora_r 16, load_in_4bit / load_in_8bit).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import AutofitError
from .exports import HF_OPTIMIZERS
from .knobs import KNOBS, knob_specs
from .models import ModelSpec, load_preset, preset_names, resolve_model

FORMAT_FILES = {"llamafactory": "llamafactory.yaml", "axolotl": "axolotl.yaml", "hf": "hf_training_args.yaml"}
LLAMAFACTORY_MARKERS = ("finetuning_type", "stage", "cutoff_len", "template", "lora_target", "quantization_bit",
                        "flash_attn", "disable_gradient_checkpointing", "dataset")
# trainer optimizer names -> autofit's optimizer knob (fused AdamW is the same update, a different kernel)
OPTIMIZERS = {"adamw_torch": "adamw_torch", "adamw_torch_fused": "adamw_torch", "adamw_hf": "adamw_torch",
              "adamw_bnb_8bit": "adamw_8bit", "adamw_8bit": "adamw_8bit", "paged_adamw_8bit": "paged_adamw_8bit"}
OPTIMIZER_KEYS = {"llamafactory": "optim", "hf": "optim", "axolotl": "optimizer"}
DS_FILE = "ds_config.json"


@dataclass
class TrainerFile:
    path: Path
    format: str  # llamafactory | axolotl | hf
    data: dict[str, Any]
    text: str
    knobs: dict[str, Any]  # every knob, from the file or the trainer's default
    stated: dict[str, str]  # knob -> the key that stated it (absent: the trainer's default was used)
    model_ref: str | None
    is_json: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def global_batch(self) -> int:
        return self.knobs["per_device_train_batch_size"] * self.knobs["gradient_accumulation_steps"]

    def model(self, override: str | None = None) -> ModelSpec:
        ref = override or self.model_ref
        if not ref:
            raise AutofitError(f"{self.path} names no model (model_name_or_path / base_model); pass --model")
        return resolve_file_model(ref, self.path.parent)

    def to_attrs(self) -> dict[str, Any]:
        return {"path": str(self.path), "format": self.format, "text": self.text, "knobs": self.knobs,
                "is_json": self.is_json}


def resolve_file_model(ref: str, base: Path) -> ModelSpec:
    """A model named in a trainer file: a preset, a hub id of a preset, a folder (relative to the file too) or a
    hub id in the local cache (never downloaded)."""
    for preset in preset_names():
        spec = load_preset(preset)
        if ref in (preset, spec.hf_ref):
            return spec
    relative = base / ref
    if not Path(ref).expanduser().exists() and relative.exists():
        ref = str(relative)
    return resolve_model(ref)


def _bool(value: Any, key: str, path: Path) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise AutofitError(f"{path}: {key}: expected true or false, got {value!r}")


def _int(value: Any, key: str, path: Path) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise AutofitError(f"{path}: {key}: expected an integer, got {value!r}")
    return value


def read_trainer_file(path_text: str) -> TrainerFile:
    """Parse a trainer file into knobs. AutofitError (one line) for anything unreadable or not modelled."""
    path = Path(path_text)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise AutofitError(f"trainer file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise AutofitError(f"cannot read trainer file {path}: {exc}") from None
    is_json = path.suffix.lower() == ".json"
    try:
        data = json.loads(text) if is_json else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise AutofitError(f"malformed trainer file {path}: {str(exc).splitlines()[0]}") from None
    if not isinstance(data, dict) or not data:
        raise AutofitError(f"{path}: expected a mapping of training arguments")
    if "base_model" in data:
        fmt = "axolotl"
    elif any(key in data for key in LLAMAFACTORY_MARKERS):
        fmt = "llamafactory"
    else:
        fmt = "hf"
    reader = {"llamafactory": _read_llamafactory, "axolotl": _read_axolotl, "hf": _read_hf}[fmt]
    stated: dict[str, str] = {}
    notes: list[str] = []

    def get(key: str, default: Any, knob: str | None = None) -> Any:
        if key in data and data[key] is not None:
            if knob:
                stated[knob] = key
            return data[key]
        return default

    knobs = reader(data, path, get, notes)
    zero, offload = _read_deepspeed(data.get("deepspeed"), path, notes)
    if zero is not None:
        stated["zero_stage"] = stated["offload"] = "deepspeed"
    knobs.update(zero_stage=zero or 0, offload=offload, allocator="default")
    optimizer_key = OPTIMIZER_KEYS[fmt]
    raw_optim = get(optimizer_key, "adamw_torch", "optimizer")
    if raw_optim not in OPTIMIZERS:
        raise AutofitError(f"{path}: {optimizer_key} {raw_optim!r} is not modelled by autofit; it models "
                           f"{', '.join(sorted(OPTIMIZERS))}")
    knobs["optimizer"] = OPTIMIZERS[raw_optim]
    if knobs["zero_stage"] and knobs["optimizer"] != "adamw_torch":
        notes.append(f"{optimizer_key} {raw_optim}: DeepSpeed ZeRO runs its own Adam; modelled as adamw_torch")
        knobs["optimizer"] = "adamw_torch"
    specs = knob_specs()
    try:
        knobs = {k: specs[k].parse(knobs[k]) for k in KNOBS}
    except AutofitError as exc:
        raise AutofitError(f"{path}: {exc}") from None
    model_ref = data.get("base_model") if fmt == "axolotl" else data.get("model_name_or_path")
    return TrainerFile(path=path, format=fmt, data=data, text=text, knobs=knobs, stated=stated,
                       model_ref=str(model_ref) if model_ref else None, is_json=is_json, notes=notes)


def _read_llamafactory(data, path, get, notes) -> dict[str, Any]:
    method = get("finetuning_type", "lora", "lora_rank")
    if method not in ("lora", "full"):
        raise AutofitError(f"{path}: finetuning_type {method!r} is not modelled by autofit (lora or full)")
    rank = _int(get("lora_rank", 8, "lora_rank"), "lora_rank", path) if method == "lora" else 0
    bits = get("quantization_bit", None, "quantization")
    quant = {None: "none", 4: "nf4", 8: "int8"}.get(bits)
    if quant is None:
        raise AutofitError(f"{path}: quantization_bit {bits!r} is not modelled (4 or 8)")
    if quant == "nf4" and data.get("quantization_type", "nf4") != "nf4":
        notes.append(f"quantization_type {data['quantization_type']}: modelled as nf4 (same bytes per weight)")
    attn = get("flash_attn", "auto", "attn_implementation")
    if attn == "fa2":
        notes.append("flash_attn fa2: modelled as sdpa (same memory order: no attention matrix)")
    return {"per_device_train_batch_size": _int(get("per_device_train_batch_size", 8, "per_device_train_batch_size"),
                                                "per_device_train_batch_size", path),
            "gradient_accumulation_steps": _int(get("gradient_accumulation_steps", 1, "gradient_accumulation_steps"),
                                                "gradient_accumulation_steps", path),
            "seq_len": _int(get("cutoff_len", 2048, "seq_len"), "cutoff_len", path), "lora_rank": rank,
            "quantization": quant,
            "gradient_checkpointing": not _bool(get("disable_gradient_checkpointing", False, "gradient_checkpointing"),
                                                "disable_gradient_checkpointing", path),
            "attn_implementation": "eager" if attn in ("disabled", "eager") else "sdpa"}


def _read_axolotl(data, path, get, notes) -> dict[str, Any]:
    adapter = get("adapter", None, "lora_rank")
    four = _bool(get("load_in_4bit", False, "quantization"), "load_in_4bit", path)
    eight = _bool(get("load_in_8bit", False, "quantization"), "load_in_8bit", path)
    if adapter not in (None, "lora", "qlora"):
        raise AutofitError(f"{path}: adapter {adapter!r} is not modelled by autofit (lora, qlora or none)")
    rank = _int(get("lora_r", 8, "lora_rank"), "lora_r", path) if adapter else 0
    quant = "nf4" if (four or adapter == "qlora") else "int8" if eight else "none"
    attn = get("attn_implementation", None, "attn_implementation")
    if attn is None:
        attn = "eager" if data.get("eager_attention") else "sdpa"
    if attn == "flash_attention_2" or data.get("flash_attention"):
        notes.append("flash attention 2: modelled as sdpa (same memory order: no attention matrix)")
        attn = "sdpa"
    return {"per_device_train_batch_size": _int(get("micro_batch_size", 1, "per_device_train_batch_size"),
                                                "micro_batch_size", path),
            "gradient_accumulation_steps": _int(get("gradient_accumulation_steps", 1, "gradient_accumulation_steps"),
                                                "gradient_accumulation_steps", path),
            "seq_len": _int(get("sequence_len", 512, "seq_len"), "sequence_len", path), "lora_rank": rank,
            "quantization": quant,
            "gradient_checkpointing": bool(get("gradient_checkpointing", False, "gradient_checkpointing")),
            "attn_implementation": attn}


def _read_hf(data, path, get, notes) -> dict[str, Any]:
    seq_key = "max_seq_length" if "max_seq_length" in data else "max_length"
    peft = bool(data.get("use_peft")) or "lora_r" in data
    rank = _int(get("lora_r", 16, "lora_rank"), "lora_r", path) if peft else 0
    if not peft:
        notes.append("no use_peft / lora_r: full fine-tuning (lora_rank 0)")
    four = _bool(get("load_in_4bit", False, "quantization"), "load_in_4bit", path)
    eight = _bool(get("load_in_8bit", False, "quantization"), "load_in_8bit", path)
    attn = get("attn_implementation", "sdpa", "attn_implementation")
    return {"per_device_train_batch_size": _int(get("per_device_train_batch_size", 8, "per_device_train_batch_size"),
                                                "per_device_train_batch_size", path),
            "gradient_accumulation_steps": _int(get("gradient_accumulation_steps", 1, "gradient_accumulation_steps"),
                                                "gradient_accumulation_steps", path),
            "seq_len": _int(get(seq_key, 1024, "seq_len"), seq_key, path), "lora_rank": rank,
            "quantization": "nf4" if four else "int8" if eight else "none",
            "gradient_checkpointing": _bool(get("gradient_checkpointing", False, "gradient_checkpointing"),
                                            "gradient_checkpointing", path),
            "attn_implementation": "eager" if attn == "eager" else "sdpa"}


def _read_deepspeed(value: Any, path: Path, notes: list[str]) -> tuple[int | None, str]:
    """(ZeRO stage, offload) from the DeepSpeed config a trainer file names (a path, relative to the file too, or
    an inline mapping); (None, "none") without one."""
    if value in (None, ""):
        return None, "none"
    if isinstance(value, dict):
        config = value
    else:
        ds_path = Path(str(value)).expanduser()
        if not ds_path.is_file() and (path.parent / ds_path).is_file():
            ds_path = path.parent / ds_path
        try:
            config = json.loads(ds_path.read_text())
        except FileNotFoundError:
            raise AutofitError(f"{path}: deepspeed config {value} not found") from None
        except (OSError, json.JSONDecodeError) as exc:
            raise AutofitError(f"{path}: cannot read deepspeed config {value}: {exc}") from None
    zero = config.get("zero_optimization") or {}
    stage = zero.get("stage", 0)
    if stage not in (0, 1, 2, 3):
        raise AutofitError(f"{path}: deepspeed zero_optimization.stage {stage!r} is not 0-3")

    def on_cpu(section: str) -> bool:
        device = (zero.get(section) or {}).get("device", "none")
        if device == "nvme":
            notes.append(f"{section} to nvme: modelled as cpu offload")
        return device in ("cpu", "nvme")

    offload = "all" if on_cpu("offload_param") else "optimizer" if on_cpu("offload_optimizer") else "none"
    return stage, offload


# ---------------------------------------------------------------------------------------------------------------
# writing a recommendation back into the user's file

def changed_keys(trainer: TrainerFile, config: dict[str, Any], deepspeed_path: str | None) -> dict[str, Any]:
    """Key -> new value (None = remove the key) in the file's own format, for every knob whose value differs from
    what the file means."""
    fmt, old = trainer.format, trainer.knobs
    diff = {k for k in KNOBS if config.get(k) != old.get(k) and k != "allocator"}
    keys: dict[str, Any] = {}
    if "per_device_train_batch_size" in diff:
        batch_key = "micro_batch_size" if fmt == "axolotl" else "per_device_train_batch_size"
        keys[batch_key] = config["per_device_train_batch_size"]
    if "gradient_accumulation_steps" in diff:
        keys["gradient_accumulation_steps"] = config["gradient_accumulation_steps"]
    if "seq_len" in diff:
        seq_key = {"llamafactory": "cutoff_len", "axolotl": "sequence_len"}.get(
            fmt, "max_seq_length" if "max_seq_length" in trainer.data else "max_length")
        keys[seq_key] = config["seq_len"]
    rank, quant = config["lora_rank"], config["quantization"]
    if {"lora_rank", "quantization"} & diff:
        if fmt == "llamafactory":
            keys["finetuning_type"] = "lora" if rank else "full"
            keys["lora_rank"] = rank or None
            keys["quantization_bit"] = {"none": None, "nf4": 4, "int8": 8}[quant]
            if quant == "nf4" and "quantization_type" in trainer.data:
                keys["quantization_type"] = "nf4"
        elif fmt == "axolotl":
            keys["adapter"] = None if not rank else "qlora" if quant == "nf4" else "lora"
            keys["lora_r"] = rank or None
            keys["load_in_4bit"] = True if quant == "nf4" else None
            keys["load_in_8bit"] = True if quant == "int8" else None
            if rank and "lora_target_linear" not in trainer.data and "lora_target_modules" not in trainer.data:
                keys["lora_target_linear"] = True
        else:
            keys["use_peft"] = True if rank else None
            keys["lora_r"] = rank or None
            keys["load_in_4bit"] = True if quant == "nf4" else None
            keys["load_in_8bit"] = True if quant == "int8" else None
    if "gradient_checkpointing" in diff:
        if fmt == "llamafactory":
            keys["disable_gradient_checkpointing"] = None if config["gradient_checkpointing"] else True
        else:
            keys["gradient_checkpointing"] = config["gradient_checkpointing"]
    if {"zero_stage", "offload"} & diff:
        keys["deepspeed"] = deepspeed_path if config["zero_stage"] else None
    if "optimizer" in diff:
        keys[OPTIMIZER_KEYS[fmt]] = HF_OPTIMIZERS[config["optimizer"]]
    if "attn_implementation" in diff:
        if fmt == "llamafactory":
            keys["flash_attn"] = "sdpa" if config["attn_implementation"] == "sdpa" else "disabled"
        else:
            keys["attn_implementation"] = config["attn_implementation"]
            for legacy in ("flash_attention", "sdp_attention", "eager_attention"):
                if legacy in trainer.data:
                    keys[legacy] = None
    return {k: v for k, v in keys.items() if trainer.data.get(k) != v}


def _scalar(value: Any) -> str:
    text = yaml.safe_dump(value, default_flow_style=True, width=10_000).strip()
    return text.removesuffix("\n...").removesuffix("...").strip()


def apply_changes(trainer: TrainerFile, keys: dict[str, Any], why: str) -> str:
    """The user's file text with `keys` set (None removes), everything else kept. YAML: changed lines marked
    `# autofit: was OLD`, removed keys commented out, new keys appended. JSON has no comments: the keys are set."""
    if trainer.is_json:
        data = {k: v for k, v in {**trainer.data, **keys}.items() if v is not None}
        return json.dumps(data, indent=2) + "\n"
    lines = trainer.text.splitlines()
    remaining = dict(keys)
    for i, line in enumerate(lines):
        match = re.match(r"^([A-Za-z_][\w.-]*)\s*:(\s*)(.*)$", line)
        if not match or match.group(1) not in remaining:
            continue
        key = match.group(1)
        value = remaining.pop(key)
        old = trainer.data.get(key)
        if isinstance(old, (dict, list)):
            raise AutofitError(f"{trainer.path}: {key} is a nested value; autofit only rewrites scalar keys")
        if value is None:
            lines[i] = f"# {key}: {_scalar(old)}  # autofit: removed ({why})"
        else:
            lines[i] = f"{key}: {_scalar(value)}  # autofit: was {_scalar(old)}"
    if remaining:
        added = [f"{k}: {_scalar(v)}  # autofit: added" for k, v in remaining.items() if v is not None]
        if added:
            lines += ["", f"### autofit: added ({why})", *added]
    text = "\n".join(lines) + "\n"
    expected = {k: v for k, v in {**trainer.data, **keys}.items() if v is not None}
    if yaml.safe_load(text) != expected:  # a key on several lines, an anchor...: never write a wrong file
        raise AutofitError(f"{trainer.path}: could not rewrite the file line by line (a key spans several lines?)")
    return text


def output_name(trainer: TrainerFile) -> str:
    name = FORMAT_FILES[trainer.format]
    return name.removesuffix(".yaml") + ".json" if trainer.is_json else name


def from_attrs(data: dict[str, Any]) -> TrainerFile:
    """The TrainerFile a study stored for `search --from` (its text is re-parsed, not re-read from disk)."""
    text = data["text"]
    parsed = json.loads(text) if data["is_json"] else yaml.safe_load(text)
    return TrainerFile(path=Path(data["path"]), format=data["format"], data=parsed, text=text, knobs=data["knobs"],
                       stated={}, model_ref=None, is_json=data["is_json"])
