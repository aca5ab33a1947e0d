"""Model presets in autofit/data/models/*.json: shape of the files, and that each
config builds (on the meta device, no memory) into a model whose parameter count
equals the published count recorded in the file."""

import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

MODELS_DIR = Path(__file__).resolve().parents[1] / "autofit" / "data" / "models"
PRESET_FILES = sorted(MODELS_DIR.glob("*.json"))
REQUIRED_KEYS = {"name", "hf_id", "description", "params", "source", "config"}

GLM4_9B_PARAMS = 9_399_951_360


def _load(path):
    with open(path) as f:
        return json.load(f)


def _meta_param_count(config):
    cfg = transformers.AutoConfig.for_model(**config)
    with torch.device("meta"):
        model = transformers.AutoModelForCausalLM.from_config(cfg)
    return sum(p.numel() for p in model.parameters())


def test_presets_exist():
    names = {p.stem for p in PRESET_FILES}
    expected = {
        "glm4-9b", "glm-tiny", "llama3.1-8b", "llama3.1-70b", "qwen2.5-7b",
        "qwen2.5-14b", "qwen2.5-32b", "qwen2.5-72b", "qwen3-8b", "mistral-7b",
        "gemma2-9b", "phi3-mini",
    }
    assert expected <= names, f"missing presets: {sorted(expected - names)}"


@pytest.mark.parametrize("path", PRESET_FILES, ids=lambda p: p.stem)
def test_preset_schema(path):
    data = _load(path)
    assert set(data) == REQUIRED_KEYS
    assert data["name"] == path.stem
    assert data["hf_id"] is None or isinstance(data["hf_id"], str)
    assert isinstance(data["description"], str) and data["description"]
    assert isinstance(data["source"], str) and data["source"]
    assert isinstance(data["params"], int) and not isinstance(data["params"], bool)
    assert data["params"] > 0
    config = data["config"]
    assert isinstance(config, dict)
    assert isinstance(config.get("model_type"), str)
    for key in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads"):
        assert isinstance(config.get(key), int), key


@pytest.mark.parametrize("path", PRESET_FILES, ids=lambda p: p.stem)
def test_preset_param_count(path):
    data = _load(path)
    assert _meta_param_count(data["config"]) == data["params"]


def test_glm4_9b_param_count_literal():
    data = _load(MODELS_DIR / "glm4-9b.json")
    assert data["params"] == GLM4_9B_PARAMS
    assert data["config"]["model_type"] == "glm"
    assert _meta_param_count(data["config"]) == GLM4_9B_PARAMS
