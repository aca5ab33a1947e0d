"""Exact memory across architectures: the trace against a real CPU step measured by torch.profiler (no autofit code
in the measurement), tied weights kept tied, and attention implementations a model class cannot run."""

import json

import pytest

from autofit.errors import AutofitError
from autofit.models import ModelSpec, attention_support, count_parameters
from autofit.space import SearchSpace

from conftest import load_script

matrix = load_script("bench/validate_cpu_matrix.py")
ARCH = {a.label: a for a in matrix.ARCHITECTURES}

# one row per architecture family: (architecture, method, gradient checkpointing)
FAMILIES = [
    ("llama (tied)", "LoRA r8", True),  # dense GQA, tied embeddings
    ("qwen2", "QLoRA nf4 r8", False),  # tied, bitsandbytes NF4 + peft bnb LoRA
    ("mixtral", "full", True),  # mixture of experts
    ("gemma2", "LoRA r8", False),  # soft-capping, eager attention only, sliding/full alternating
    ("gemma3_text", "QLoRA nf4 r8", True),  # sliding/full alternating layer types
    ("phi", "full", False),  # partial rotary, biases, LayerNorm
    ("gpt_bigcode", "LoRA r8", True),  # multi-query, learned positions
    ("deepseek_v3", "LoRA r8", True),  # multi-head latent attention, MoE after a dense first layer
    ("falcon", "full", True),  # the backward's peak moves from its start to its end between 2 and 4 layers
]


# each row runs real training steps on the CPU under torch.profiler: slow, but for the first family, which keeps the
# independent measurement in the fast lane (-m "not slow")
FAMILY_PARAMS = [pytest.param(*row, id=f"{row[0]}-{row[1]}-{row[2]}", marks=[pytest.mark.slow] if i else [])
                 for i, row in enumerate(FAMILIES)]


@pytest.mark.parametrize("label,method,checkpointing", FAMILY_PARAMS)
def test_trace_matches_an_independently_measured_cpu_step(label, method, checkpointing):
    row = matrix.run_row(ARCH[label], method, checkpointing)
    assert not row.error, row.error
    assert row.params_exact, (row.traced.params, row.measured.params)
    assert abs(row.error_pct) <= 1.0, (row.traced.peak_bytes, row.measured.peak_bytes)


def _spec_of(label, **changes):
    return ModelSpec(name=label, config={**ARCH[label].config(), **changes}, hf_ref=label)


def _config(**changes):
    return SearchSpace.load().default_config().replace(
        **{**matrix.STEP, "lora_rank": 0, "quantization": "none", "gradient_checkpointing": False,
           "attn_implementation": "sdpa", **changes})


def test_tied_embeddings_are_counted_once():
    from autofit.probes._trace import traced_peak_bytes

    tied, untied = _spec_of("llama (tied)"), _spec_of("llama")
    _, tied_trace = traced_peak_bytes(tied, _config())
    _, untied_trace = traced_peak_bytes(untied, _config())
    assert tied_trace.total_params == count_parameters(tied)
    hidden, vocab = tied.config["hidden_size"], tied.config["vocab_size"]
    assert untied_trace.total_params - tied_trace.total_params == hidden * vocab
    # full fine-tuning: one bf16 matrix less of weights, of gradients and of each Adam moment
    s2 = tied_trace.phases["s2.opt"].breakdown, untied_trace.phases["s2.opt"].breakdown
    assert s2[1]["weights"] - s2[0]["weights"] == pytest.approx(2 * hidden * vocab, abs=2048)
    assert s2[1]["optimizer"] - s2[0]["optimizer"] == pytest.approx(4 * hidden * vocab, abs=2048)


def test_a_model_that_loses_a_shared_parameter_is_refused(monkeypatch):
    """The check after materializing: a model whose own tie_weights does not restore what it shared."""
    import torch
    import transformers

    from autofit.probes._training import parameter_sharing, restore_parameter_sharing

    with torch.device("meta"):
        net = transformers.AutoModelForCausalLM.from_config(_spec_of("llama (tied)").hf_config())
    sharing = parameter_sharing(net)
    assert ("lm_head.weight", "model.embed_tokens.weight") in [tuple(sorted(g)) for g in sharing.groups]
    net.to_empty(device="cpu")
    monkeypatch.setattr(type(net), "tie_weights", lambda self, *a, **k: None)
    with pytest.raises(AutofitError, match="no longer shared"):
        restore_parameter_sharing(net, sharing)


def test_attention_support_comes_from_the_model_class():
    assert attention_support(_spec_of("gemma2"), ("sdpa", "eager")) == {"sdpa": False, "eager": True}
    assert attention_support(_spec_of("llama"), ("sdpa", "eager")) == {"sdpa": True, "eager": True}


def test_search_leaves_out_attention_the_model_cannot_run():
    from autofit.budget import make_budget
    from autofit.gpus import get_gpu
    from autofit.probes import TraceProbe
    from autofit.search import SearchPlan

    model = _spec_of("gemma2", max_position_embeddings=8192)

    def plan(pins):
        return SearchPlan(model=model, space=SearchSpace.load().pinned(pins), pins=pins,
                          budget=make_budget("24GB", None), gpu=get_gpu("h100"), gpu_source="named",
                          probe=TraceProbe(), trials=2, storage="sqlite:///:memory:", study_name="t")

    searched = plan({})
    assert {c.attn_implementation for c in searched.candidates.configs} == {"eager"}
    assert any("sdpa left out" in note and "Gemma2ForCausalLM" in note for note in searched.notes)
    with pytest.raises(AutofitError, match="attn_implementation=sdpa is not supported by Gemma2ForCausalLM"):
        plan({"attn_implementation": "sdpa"})


def test_estimate_cli_on_a_gemma2_config(cli, tmp_path):
    folder = tmp_path / "gemma2"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({**ARCH["gemma2"].config(), "max_position_embeddings": 8192}))
    done = cli("estimate", "--model", folder, "--gpu-mem", "24GB", "--json")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["config"]["attn_implementation"] == "eager" and "sdpa left out" in data["notes"][0]
    pinned = cli("estimate", "--model", folder, "--gpu-mem", "24GB", "--set", "attn_implementation=sdpa")
    assert pinned.returncode == 2 and pinned.stdout == ""
    assert pinned.stderr.strip().splitlines() == [
        "autofit: error: attn_implementation=sdpa is not supported by Gemma2ForCausalLM (gemma2); "
        "use --set attn_implementation=eager"]


def test_a_model_the_trace_cannot_run_is_a_one_line_error(cli, tmp_path):
    """peft refuses LoRA on all linear layers of a Mamba hybrid (falcon_h1): `autofit estimate` says so in one
    line, exit 2, nothing on stdout."""
    folder = tmp_path / "falcon-h1"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({**ARCH["falcon_h1"].config(), "max_position_embeddings": 8192}))
    done = cli("estimate", "--model", folder, "--gpu-mem", "24GB", "--set", "lora_rank=16")
    assert done.returncode == 2 and done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("autofit: error: cannot trace falcon-h1 (model_type falcon_h1): "
                                                   "ValueError: [PEFT:PeftType.LORA]"), lines


@pytest.mark.parametrize("quantization", ["none", "nf4"])
def test_real_probe_builds_tied_models_tied(quantization):
    """The cpu/cuda probes' build path (random init per module, then quantization) keeps lm_head the embedding."""
    from autofit.probes._training import build_model

    net = build_model(_spec_of("llama (tied)"), _config(lora_rank=8, quantization=quantization), "cpu")
    base = net.get_base_model()
    assert base.get_output_embeddings().weight is base.get_input_embeddings().weight
