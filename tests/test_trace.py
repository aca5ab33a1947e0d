"""The trace probe's physics, on real transformers / peft / bitsandbytes code under fake tensors."""

import pytest

from autofit.gpus import get_gpu
from autofit.models import ModelSpec, resolve_model
from autofit.probes import ProbeContext, TraceProbe
from autofit.probes._perf import PerfModel
from autofit.probes._trace import _extrapolate, trace_at_depth
from autofit.runtime import runtime_constants
from autofit.space import SearchSpace
from autofit.units import GIB
from autofit.trials import Outcome

CTX = ProbeContext(usable_budget_bytes=1000 * GIB, gpu=get_gpu("h100"))
TINY = resolve_model("glm-tiny")


def small_glm(layers=4):
    """A small GLM (a few million parameters) whose sizes make per-category differences visible."""
    config = dict(TINY.config, vocab_size=4096, hidden_size=256, intermediate_size=704, num_hidden_layers=layers,
                  num_attention_heads=8, num_key_value_heads=2, head_dim=32)
    return ModelSpec(name=f"glm-small-{layers}", config=config, hf_ref="glm-small")


def base(**changes):
    return SearchSpace.load().default_config().replace(gradient_accumulation_steps=1, **changes)


def probe(model, **changes):
    return TraceProbe().run(model, base(**changes), CTX)


MODEL = small_glm()


def test_peak_grows_with_batch_and_seq_len():
    peaks = [probe(MODEL, per_device_train_batch_size=b).peak_memory_gib for b in (1, 2, 4)]
    assert peaks[0] < peaks[1] < peaks[2]
    peaks = [probe(MODEL, seq_len=s).peak_memory_gib for s in (256, 512, 1024)]
    assert peaks[0] < peaks[1] < peaks[2]


def test_checkpointing_cuts_activations():
    on = probe(MODEL, gradient_checkpointing=True, per_device_train_batch_size=4)
    off = probe(MODEL, gradient_checkpointing=False, per_device_train_batch_size=4)
    assert on.breakdown_gib["activations"] < 0.5 * off.breakdown_gib["activations"]
    assert on.peak_memory_gib < off.peak_memory_gib
    assert on.tokens_per_s < off.tokens_per_s  # recomputation costs time


def test_lora_state_grows_with_rank():
    states = [probe(MODEL, lora_rank=r) for r in (8, 32, 64)]
    opt = [s.breakdown_gib["optimizer"] for s in states]
    trainable = [s.details["trainable_params"] for s in states]
    assert opt[0] < opt[1] < opt[2] and trainable[0] < trainable[1] < trainable[2]
    assert states[0].peak_memory_gib < states[2].peak_memory_gib
    # AdamW keeps two fp32 moments per fp32 LoRA parameter: 8 bytes each (plus allocator rounding)
    assert opt[2] * GIB == pytest.approx(8 * trainable[2], rel=0.05)


def test_eager_attention_costs_more_than_sdpa():
    assert probe(MODEL, attn_implementation="eager", seq_len=1024).peak_memory_gib > \
        probe(MODEL, attn_implementation="sdpa", seq_len=1024).peak_memory_gib


def test_8bit_optimizer_state_is_smaller():
    adam = probe(MODEL, lora_rank=64).breakdown_gib["optimizer"]
    eight = probe(MODEL, lora_rank=64, optimizer="adamw_8bit").breakdown_gib["optimizer"]
    assert eight < 0.5 * adam


def test_extrapolation_matches_a_whole_trace():
    perf = PerfModel.for_gpu(get_gpu("h100"), runtime_constants())
    config = base(per_device_train_batch_size=2, seq_len=256)
    whole = trace_at_depth(small_glm(4), config, 4, 512)
    one = trace_at_depth(small_glm(4), config, 1, 512)
    two = trace_at_depth(small_glm(4), config, 2, 512)
    guess = _extrapolate(one, two, 4)
    for name, record in whole.phases.items():
        if name == "init" or name.endswith(".middle"):  # middle layers' backward: bounded by first and last
            continue
        assert guess.phases[name].peak_bytes == pytest.approx(record.peak_bytes, rel=0.01), name
        priced, expected = perf.price(guess.phases[name].ops), perf.price(record.ops)
        for part, seconds in expected.items():
            assert priced[part] == pytest.approx(seconds, rel=0.01, abs=1e-9), (name, part)
    peak = max(r.peak_bytes for n, r in whole.phases.items() if n != "init")
    assert max(r.peak_bytes for n, r in guess.phases.items() if n != "init") == pytest.approx(peak, rel=0.001)
    assert guess.trainable_params == whole.trainable_params


GLM = resolve_model("glm4-9b")
CTX24 = ProbeContext(usable_budget_bytes=int(21.8 * GIB), gpu=get_gpu("rtx4090"))
COMMON = dict(per_device_train_batch_size=1, seq_len=2048, gradient_checkpointing=True, gradient_accumulation_steps=1,
              optimizer="adamw_torch")


@pytest.fixture(scope="module")
def glm_runs():
    space = SearchSpace.load()
    runs = {}
    for name, changes in {"full": dict(lora_rank=0, quantization="none"), "lora": dict(lora_rank=16, quantization="none"),
                          "qlora": dict(lora_rank=16, quantization="nf4")}.items():
        runs[name] = TraceProbe().run(GLM, space.default_config().replace(**COMMON, **changes), CTX24)
    return runs


def test_glm4_9b_full_finetuning(glm_runs):
    full = glm_runs["full"]
    assert full.breakdown_gib["weights"] == pytest.approx(9_399_951_360 * 2 / GIB, rel=0.01)  # ~17.5 GiB of bf16
    assert full.peak_memory_gib > 40 and full.state == Outcome.OOM


def test_glm4_9b_qlora_weights_are_about_6_gib(glm_runs):
    weights = glm_runs["qlora"].breakdown_gib["weights"]
    assert 5.5 < weights < 7.0  # 4-bit linears + bf16 embeddings and head + LoRA
    lora_weights = glm_runs["lora"].breakdown_gib["weights"]
    embed_and_head = 2 * 151552 * 4096 * 2 / GIB
    # nf4 linears take about a quarter of their bf16 bytes, plus quantization constants
    ratio = (weights - embed_and_head) / (lora_weights - embed_and_head)
    assert 0.25 < ratio < 0.32


def test_glm4_9b_peaks_are_ordered(glm_runs):
    assert glm_runs["qlora"].peak_memory_gib < glm_runs["lora"].peak_memory_gib < glm_runs["full"].peak_memory_gib
    assert glm_runs["qlora"].state == Outcome.OK
    for run in glm_runs.values():
        assert run.estimated and run.probe == "trace" and run.tokens_per_s > 0


def test_zero3_offload_moves_state_off_the_gpu():
    config = base(lora_rank=0, quantization="none")
    plain = TraceProbe().run(MODEL, config, CTX)
    zero3 = TraceProbe().run(MODEL, config.replace(zero_stage=3, offload="all"), CTX)
    zero2 = TraceProbe().run(MODEL, config.replace(zero_stage=2, offload="optimizer"), CTX)
    assert zero3.breakdown_gib["optimizer"] == 0 and zero2.breakdown_gib["optimizer"] == 0
    assert zero3.breakdown_gib["weights"] < plain.breakdown_gib["weights"]
    assert zero3.peak_memory_gib < plain.peak_memory_gib
    assert zero3.tokens_per_s < plain.tokens_per_s  # PCIe traffic and CPU Adam cost time
    # on 4 GPUs ZeRO-2 partitions gradients and optimizer state
    four = ProbeContext(usable_budget_bytes=CTX.usable_budget_bytes, gpu=CTX.gpu, gpus=4)
    z2_one = TraceProbe().run(MODEL, config.replace(zero_stage=2), CTX)
    z2_four = TraceProbe().run(MODEL, config.replace(zero_stage=2), four)
    assert z2_four.breakdown_gib["optimizer"] == pytest.approx(z2_one.breakdown_gib["optimizer"] / 4, rel=0.01)


@pytest.mark.parametrize("quantization, layer", [("nf4", "Linear4bit"), ("int8", "Linear8bitLt")])
def test_quantized_models_get_peft_bitsandbytes_lora_layers(quantization, layer):
    """As for a model transformers loaded with a BitsAndBytesConfig: peft's own bitsandbytes LoRA layers."""
    from peft.tuners.lora import bnb as lora_bnb

    from autofit.probes._training import add_lora, meta_model

    net = add_lora(meta_model(small_glm(2), base(quantization=quantization, lora_rank=8)),
                   base(quantization=quantization, lora_rank=8))
    wrapped = {type(m) for name, m in net.named_modules() if name.endswith(("q_proj", "down_proj"))}
    assert wrapped == {getattr(lora_bnb, layer)}


def test_cuda_autocast_view_answers_for_the_cpu_autocast():
    import torch

    from autofit.probes._training import cuda_autocast_view

    with cuda_autocast_view():
        assert torch.is_autocast_enabled() is False
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert torch.is_autocast_enabled() is True  # what peft sees on the GPU under autocast
            assert torch.is_autocast_enabled("cuda") is False
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.is_autocast_enabled() is False  # restored: plain torch asks about CUDA


def test_trace_cache_key_leaves_out_trace_invariant_knobs():
    """Knobs knobs.yaml marks trace_invariant, and accumulation beyond its trace_max, share one cached trace;
    a knob that changes the traced step does not."""
    from autofit.knobs import knob_specs
    from autofit.probes._trace import trace_step

    assert {n for n, s in knob_specs().items() if s.trace_invariant} == {"zero_stage", "offload", "allocator"}
    config = base(seq_len=256).replace(gradient_accumulation_steps=2)
    first = trace_step(MODEL, config)
    assert trace_step(MODEL, config.replace(zero_stage=3, offload="all", allocator="expandable")) is first
    assert trace_step(MODEL, config.replace(gradient_accumulation_steps=8)) is first
    assert trace_step(MODEL, config.replace(gradient_accumulation_steps=1)) is not first
    assert trace_step(MODEL, config.replace(seq_len=512)) is not first


def test_lora_alpha_is_one_fact_for_probes_and_exports():
    import yaml

    from autofit.exports import ExportContext, render_llamafactory
    from autofit.probes._training import add_lora, meta_model

    config = base(lora_rank=8, seq_len=256)
    net = add_lora(meta_model(MODEL, config), config)
    scales = {m.scaling["default"] for m in net.modules() if isinstance(getattr(m, "scaling", None), dict)}
    assert scales == {config.lora_alpha / config.lora_rank} == {2.0}
    ctx = ExportContext("m", "m", None, config, 1.0, 1.0, "trace", True, "24GB", 20.0)
    assert yaml.safe_load(render_llamafactory(ctx))["lora_alpha"] == config.lora_alpha
