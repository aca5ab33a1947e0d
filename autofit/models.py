"""Which model a search is about: a preset, a config.json (or a folder holding one), or a hub id that is
already in the local Hugging Face cache. Never touches the network and never reads weights."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from . import cache as disk_cache
from .errors import AutofitError

_PRESETS = resources.files("autofit").joinpath("data/models")


@dataclass(frozen=True)
class ModelSpec:
    """A model architecture: its transformers config (as a plain dict) and where it came from."""

    name: str  # preset name or a short name derived from the path / hub id
    config: dict[str, Any] = field(hash=False, compare=False)
    hf_ref: str  # what trainers should load: a hub id or a local path

    @property
    def model_type(self) -> str:
        return self.config["model_type"]

    @property
    def max_positions(self) -> int:
        return int(self.config.get("max_position_embeddings") or 2**31)

    @property
    def num_layers(self) -> int:
        return int(self.config["num_hidden_layers"])

    @property
    def vocab_size(self) -> int:
        return int(self.config["vocab_size"])

    @property
    def facts(self) -> dict[str, Any]:
        """Model facts that validity rules may reference as $name."""
        return {"max_position_embeddings": self.max_positions, "num_hidden_layers": self.num_layers}

    def hf_config(self, **overrides: Any):
        """A transformers PretrainedConfig for this model (overrides applied), ready for from_config."""
        import transformers

        values = {k: v for k, v in self.config.items() if k not in ("torch_dtype", "dtype", "architectures")}
        values.update(overrides)
        return transformers.AutoConfig.for_model(**values)

    @property
    def params(self) -> int:
        return count_parameters(self)

    @property
    def llamafactory_template(self) -> str:
        templates = yaml.safe_load(resources.files("autofit").joinpath("data/llamafactory_templates.yaml").read_text())
        return templates.get(self.model_type, "default")


@cache
def _count(name: str, config_json: str) -> int:
    def count() -> int:
        import torch
        import transformers

        spec = ModelSpec(name=name, config=json.loads(config_json), hf_ref=name)
        with torch.device("meta"):
            model = transformers.AutoModelForCausalLM.from_config(spec.hf_config())
        return sum(p.numel() for p in model.parameters())

    return disk_cache.get_or_compute("params", config_json, count, valid=lambda v: isinstance(v, int))


def count_parameters(spec: ModelSpec) -> int:
    """Parameters of the model built from its config on the meta device (no memory, no weights)."""
    return _count(spec.name, json.dumps(spec.config, sort_keys=True))


# attn_implementation knob value -> the PreTrainedModel class flag that says the class can run it
# (transformers' _sdpa_can_dispatch / _flash_attn_can_dispatch / _flex_attn_can_dispatch read the same flags)
_ATTENTION_FLAGS = {"eager": None, "sdpa": "_supports_sdpa", "flash_attention_2": "_supports_flash_attn",
                    "flex_attention": "_supports_flex_attn"}


def causal_lm_class(spec: ModelSpec):
    """The transformers class AutoModelForCausalLM builds for this model's config."""
    import transformers

    config = spec.hf_config()
    return transformers.AutoModelForCausalLM._model_mapping[type(config)]


@cache
def _attention_facts(config_json: str) -> dict[str, Any]:
    """{"class": the causal-LM class's name, "support": {attention implementation: whether the class runs it}};
    kept on disk, since finding the class imports the model's transformers package (seconds)."""
    def facts() -> dict[str, Any]:
        cls = causal_lm_class(ModelSpec(name="", config=json.loads(config_json), hf_ref=""))
        return {"class": cls.__name__,
                "support": {v: v == "eager" or (flag is not None and bool(getattr(cls, flag, False)))
                            for v, flag in _ATTENTION_FLAGS.items()}}

    return disk_cache.get_or_compute(
        "attention", config_json, facts,
        valid=lambda v: isinstance(v, dict) and set(v.get("support", {})) == set(_ATTENTION_FLAGS))


@cache
def known_model_types() -> frozenset[str]:
    """The model_type values this transformers has a config class for (kept on disk: the lookup imports
    transformers, seconds)."""
    def types() -> list[str]:
        from transformers import CONFIG_MAPPING

        return sorted(CONFIG_MAPPING.keys())

    return frozenset(disk_cache.get_or_compute("model-types", "CONFIG_MAPPING", types,
                                               valid=lambda v: isinstance(v, list) and bool(v)))


def causal_lm_class_name(spec: ModelSpec) -> str:
    return _attention_facts(json.dumps(spec.config, sort_keys=True))["class"]


def attention_support(spec: ModelSpec, values) -> dict[str, bool]:
    """For each attention implementation in `values`, whether the model's class can run it (eager always)."""
    support = _attention_facts(json.dumps(spec.config, sort_keys=True))["support"]
    return {v: v == "eager" or bool(support.get(v, False)) for v in values}


def preset_names() -> list[str]:
    return sorted(p.name[: -len(".json")] for p in _PRESETS.iterdir() if p.name.endswith(".json"))


def load_preset(name: str) -> ModelSpec:
    data = json.loads(_PRESETS.joinpath(f"{name}.json").read_text())
    return ModelSpec(name=data["name"], config=data["config"], hf_ref=data["hf_id"] or data["name"])


def _from_config_file(path: Path, name: str, hf_ref: str) -> ModelSpec:
    try:
        config = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise AutofitError(f"cannot read model config {path}: {exc}") from None
    except RecursionError:  # a hostile file of nested brackets
        raise AutofitError(f"cannot read model config {path}: nested too deeply") from None
    if not isinstance(config, dict) or "model_type" not in config:
        raise AutofitError(f"{path} is not a transformers config.json (no model_type)")
    check_config_values(config, str(path))
    spec = ModelSpec(name=name, config=config, hf_ref=hf_ref)
    try:
        spec.hf_config()
    except Exception as exc:  # transformers raises several types for a bad config
        raise AutofitError(f"cannot use model config {path}: {exc}") from None
    for key in ("vocab_size", "hidden_size", "num_hidden_layers"):
        if not isinstance(config.get(key), int):
            raise AutofitError(f"{path}: {key} missing or not an integer")
    return spec


def check_config_values(config: dict[str, Any], where: str) -> None:
    """Refuse config.json values no model can have (bounds in data/limits.yaml), before transformers sees them."""
    from .validation import check_model_config_values

    check_model_config_values(config, where)


def _cached_hub_config(repo_id: str) -> Path | None:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - transformers depends on huggingface_hub
        return None
    try:
        found = try_to_load_from_cache(repo_id, "config.json")
    except Exception:  # not a valid hub id either (e.g. a mistyped path "./no/such/dir")
        return None
    return Path(found) if isinstance(found, str) else None


def resolve_model(ref: str) -> ModelSpec:
    """The ModelSpec for --model: preset name, path to config.json or its folder, or a cached hub id."""
    if ref in preset_names():
        return load_preset(ref)
    path = Path(ref).expanduser()
    if path.is_dir() and (path / "config.json").is_file():
        return _from_config_file(path / "config.json", path.resolve().name, str(path.resolve()))
    if path.is_file():
        return _from_config_file(path, path.resolve().parent.name, str(path.resolve().parent))
    if "/" in ref and not path.exists():
        cached = _cached_hub_config(ref)
        if cached is not None:
            return _from_config_file(cached, ref.split("/")[-1].lower(), ref)
    raise AutofitError(
        f"unknown model {ref!r}: not a preset, a config.json path, or a hub id in the local Hugging Face cache; "
        f"presets: {', '.join(preset_names())}"
    )
