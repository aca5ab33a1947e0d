"""The trace against real CPU training steps, architecture by architecture, measured independently.

    python bench/validate_cpu_matrix.py   # every architecture, writes docs/validation/cpu-architectures.md
    python bench/validate_cpu_matrix.py --only gemma2 qwen2  # a few, printed only (--out to write)

For each decoder architecture transformers builds from a config (tiny sizes: 4 layers, hidden 64, vocab 512,
tied and untied embeddings, mixture-of-experts, sliding-window and soft-capped attention) and each method
(LoRA, QLoRA nf4, full fine-tuning; gradient checkpointing on and off) it compares

- the trace probe's peak (autofit.probes._trace.traced_peak_bytes, bytes unrounded as the CPU allocator counts
  them; the search's own figure adds the CUDA allocator's 512-byte rounding), with
- the peak of one warm real training step on the CPU, measured without any autofit code: the model built the
  way a user's script builds it (transformers from_config; for QLoRA its linear layers but the head replaced by
  bitsandbytes NF4 layers, as transformers' bitsandbytes loader leaves a model; peft LoRA on all linear layers;
  transformers' non-reentrant checkpointing; torch AdamW), and its live bytes read from torch.profiler's memory
  events (every allocation and free of PyTorch's
  CPU allocator, summed over the allocations made since the model was built).

and the trace's parameter count with the real model's. The suite runs a subset (tests/test_architectures.py).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import platform
import sys
import time
import warnings
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DOC = REPO / "docs" / "validation" / "cpu-architectures.md"

BASE = dict(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=4, num_attention_heads=4,
            num_key_value_heads=2, head_dim=16, max_position_embeddings=512, pad_token_id=0, bos_token_id=1,
            eos_token_id=1)


@dataclass(frozen=True)
class Arch:
    """One row group of the matrix: a model type at tiny sizes, with what makes it interesting."""

    label: str
    model_type: str
    overrides: dict = field(default_factory=dict, hash=False)
    features: str = ""

    def config(self) -> dict:
        values = {**BASE, **self.overrides}
        return {"model_type": self.model_type, **{k: v for k, v in values.items() if v is not None}}


ARCHITECTURES = [
    Arch("llama", "llama", dict(tie_word_embeddings=False), "untied"),
    Arch("llama (tied)", "llama", dict(tie_word_embeddings=True), "tied (Llama-3.2-1B/3B)"),
    Arch("mistral", "mistral", dict(sliding_window=32), "sliding window"),
    Arch("mixtral", "mixtral", dict(num_local_experts=4, num_experts_per_tok=2), "MoE 4 experts top-2"),
    Arch("qwen2", "qwen2", dict(tie_word_embeddings=True), "tied"),
    Arch("qwen2_moe", "qwen2_moe", dict(num_experts=4, num_experts_per_tok=2, moe_intermediate_size=32,
                                        shared_expert_intermediate_size=64), "MoE + shared expert"),
    Arch("qwen3", "qwen3", dict(tie_word_embeddings=True), "tied, q/k norm"),
    Arch("qwen3_moe", "qwen3_moe", dict(num_experts=4, num_experts_per_tok=2, moe_intermediate_size=32), "MoE"),
    Arch("gemma", "gemma", {}, "tied"),
    Arch("gemma2", "gemma2", dict(sliding_window=32, attn_logit_softcapping=50.0, final_logit_softcapping=30.0,
                                  layer_types=["sliding_attention", "full_attention"] * 2),
         "tied, soft-capped, sliding/full alternating, no SDPA (eager)"),
    Arch("gemma3_text", "gemma3_text", dict(sliding_window=32, final_logit_softcapping=30.0,
                                            layer_types=["sliding_attention", "full_attention"] * 2),
         "tied, sliding/full alternating, soft-capped logits"),
    Arch("phi", "phi", dict(head_dim=None), "partial rotary, biases"),
    Arch("phi3", "phi3", {}, "fused qkv / gate_up"),
    Arch("glm", "glm", dict(attention_bias=True, partial_rotary_factor=0.5), "fused gate_up, qkv bias"),
    Arch("glm4", "glm4", dict(attention_bias=True, partial_rotary_factor=0.5), "sandwich norms"),
    Arch("gpt_neox", "gpt_neox", dict(head_dim=None), "parallel residual, fused qkv"),
    Arch("gpt_bigcode", "gpt_bigcode", dict(head_dim=None, n_embd=64, n_layer=4, n_head=4, n_positions=512),
         "multi-query, tied, learned positions"),
    Arch("falcon", "falcon", dict(head_dim=None), "multi-query, parallel attention, tied"),
    Arch("olmo2", "olmo2", {}, "q/k norm, post-norms"),
    Arch("cohere", "cohere", dict(logit_scale=0.0625), "tied, parallel block, logit scale"),
    Arch("starcoder2", "starcoder2", dict(sliding_window=32), "tied, sliding window, biases"),
    Arch("stablelm", "stablelm", dict(head_dim=None), "partial rotary, LayerNorm"),
    Arch("granite", "granite", {}, "scaled residuals and logits"),
    Arch("deepseek_v3", "deepseek_v3", dict(head_dim=8, n_routed_experts=4, num_experts_per_tok=2,
                                            moe_intermediate_size=32, first_k_dense_replace=1, q_lora_rank=32,
                                            kv_lora_rank=16, qk_rope_head_dim=8, qk_nope_head_dim=8,
                                            v_head_dim=16, n_group=1, topk_group=1),
         "MLA attention, MoE after a dense layer"),
    Arch("qwen3_next", "qwen3_next", dict(num_experts=4, num_experts_per_tok=2, moe_intermediate_size=32,
                                          shared_expert_intermediate_size=32, linear_num_key_heads=2,
                                          linear_num_value_heads=4, linear_key_head_dim=16, linear_value_head_dim=16,
                                          layer_types=["linear_attention", "full_attention"] * 2),
         "hybrid linear/full attention, MoE"),
    Arch("gpt_oss", "gpt_oss", dict(num_local_experts=4, num_experts_per_tok=2, sliding_window=32,
                                    layer_types=["sliding_attention", "full_attention"] * 2),
         "MoE, attention sinks, sliding/full alternating"),
    Arch("falcon_h1", "falcon_h1", dict(mamba_d_ssm=64, mamba_n_heads=4, mamba_d_head=16, mamba_n_groups=1,
                                        mamba_d_state=16), "hybrid attention + Mamba-2"),
]

# (label, knobs): tiny steps (2 x 64 tokens, under bitsandbytes' 512-row dequantizing threshold)
METHODS = [
    ("LoRA r8", dict(lora_rank=8, quantization="none")),
    ("QLoRA nf4 r8", dict(lora_rank=8, quantization="nf4")),
    ("full", dict(lora_rank=0, quantization="none")),
]
STEP = dict(per_device_train_batch_size=2, seq_len=64, gradient_accumulation_steps=1, zero_stage=0, offload="none",
            optimizer="adamw_torch", allocator="default")


# -- the independent measurement: plain transformers / peft / torch, torch.profiler's allocator events ----------

@contextlib.contextmanager
def _quiet():
    import logging

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loggers = [logging.getLogger(n) for n in ("transformers", "peft", "bitsandbytes", "torch")]
        levels = [lg.level for lg in loggers]
        for lg in loggers:
            lg.setLevel(logging.ERROR)
        try:
            yield
        finally:
            for lg, level in zip(loggers, levels, strict=False):
                lg.setLevel(level)


@contextlib.contextmanager
def _gpu_autocast_answer():
    """peft's bitsandbytes LoRA layers ask torch.is_autocast_enabled() without a device (= CUDA) whether to cast
    inputs to the fp32 adapters; a CPU step standing in for a GPU step answers with the CPU's autocast."""
    import torch

    original = torch.is_autocast_enabled
    torch.is_autocast_enabled = lambda device_type=None: original("cpu" if device_type is None else device_type)
    try:
        yield
    finally:
        torch.is_autocast_enabled = original


def _hf_config(config: dict):
    import transformers

    values = dict(config)
    return transformers.AutoConfig.for_model(values.pop("model_type"), **values, use_cache=False)


def _quantize_nf4(net) -> None:
    """Every linear layer but the output head replaced by a bitsandbytes NF4 layer (double quantization, bf16
    compute) whose weight is the layer's own weight quantized, as transformers' bitsandbytes loader leaves a model
    (it marks the model is_loaded_in_4bit, which makes peft use its bitsandbytes LoRA layers). Done in memory:
    loading a checkpoint on the CPU keeps file buffers a GPU load would not."""
    import bitsandbytes as bnb
    import torch

    head = net.get_output_embeddings()
    for module in list(net.modules()):
        for name, child in list(module.named_children()):
            if type(child) is not torch.nn.Linear or child is head:
                continue
            layer = bnb.nn.Linear4bit(child.in_features, child.out_features, bias=child.bias is not None,
                                      compute_dtype=torch.bfloat16, compress_statistics=True, quant_type="nf4",
                                      quant_storage=torch.uint8, device="meta")
            layer.weight = bnb.nn.Params4bit(child.weight.data, requires_grad=False, quant_type="nf4",
                                             compress_statistics=True, quant_storage=torch.uint8,
                                             module=layer)._quantize("cpu")
            if child.bias is not None:
                layer.bias = torch.nn.Parameter(child.bias.data, requires_grad=False)
            setattr(module, name, layer)
    net.is_loaded_in_4bit, net.is_quantized, net.quantization_method = True, True, "bitsandbytes"


def _real_model(config: dict, lora_rank: int, lora_alpha: int, quantization: str, attn: str, checkpointing: bool):
    import peft
    import torch
    import transformers

    net = transformers.AutoModelForCausalLM.from_config(_hf_config(config), dtype=torch.bfloat16,
                                                        attn_implementation=attn)
    if quantization == "nf4":
        _quantize_nf4(net)
    if lora_rank:
        net = peft.get_peft_model(net, peft.LoraConfig(r=lora_rank, lora_alpha=lora_alpha, lora_dropout=0.0,
                                                       target_modules="all-linear", task_type="CAUSAL_LM"))
    if checkpointing:
        # preserve_rng_state off: the CPU RNG state each checkpointed layer saves (5,056 bytes) is host memory on
        # a GPU, which the trace does not count; with dropout 0 nothing else changes
        net.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False,
                                                                         "preserve_rng_state": False})
        if lora_rank:
            net.enable_input_require_grads()
    net.train()
    return net


def _live_bytes_peak(prof, window: str) -> tuple[int, int, int]:
    """(live bytes when `window` starts, peak live bytes inside it, peak kernel scratch inside it) from the
    profiler's allocation events: a running sum of every allocation made during profiling and of the frees of
    those allocations. Kernel scratch, a block an op allocates and frees inside itself (oneDNN's packed GEMM
    operands on the CPU; no tensor a fake-tensor trace or another op sees), is summed apart."""
    from torch._C._profiler import _EventType

    allocations, start, end = [], None, None
    stack = [(event, None) for event in prof.profiler.kineto_results.experimental_event_tree()]
    while stack:
        event, parent = stack.pop()
        if event.tag == _EventType.Allocation:
            owner = None if parent is None else (parent.name, parent.start_time_ns, parent.end_time_ns)
            allocations.append((event.start_time_ns, len(allocations), event.extra_fields, owner))
            continue
        if event.name == window:
            start, end = event.start_time_ns, event.end_time_ns
        stack.extend((child, event) for child in event.children)
    if start is None:
        raise RuntimeError(f"no {window!r} range in the profile")
    allocations.sort(key=lambda a: (a[0], a[1]))  # by time; ties in the tree's order
    made_by: dict[int, tuple] = {}
    scratch_ids = set()
    for _, number, fields, owner in allocations:  # a block freed by the op that made it is scratch
        if fields.alloc_size > 0:
            made_by[fields.ptr] = (owner, number)
        elif fields.ptr in made_by:
            maker, made = made_by.pop(fields.ptr)
            if owner is not None and maker == owner:
                scratch_ids.add(made)
    sizes: dict[int, tuple[int, bool]] = {}
    live = scratch = 0
    at_start = peak = scratch_peak = None
    for time_ns, number, fields, _ in allocations:
        if at_start is None and time_ns >= start:
            at_start, peak, scratch_peak = live, live, 0
        if fields.alloc_size > 0:
            is_scratch = number in scratch_ids
            sizes[fields.ptr] = (fields.alloc_size, is_scratch)
            if is_scratch:
                scratch += fields.alloc_size
            else:
                live += fields.alloc_size
        elif fields.ptr in sizes:  # a block allocated before profiling started is not ours
            size, is_scratch = sizes.pop(fields.ptr)
            if is_scratch:
                scratch -= size
            else:
                live -= size
        if start <= time_ns <= end:
            peak, scratch_peak = max(peak, live), max(scratch_peak, scratch)
    return at_start or 0, peak or 0, scratch_peak or 0


@dataclass
class Measured:
    peak_bytes: int
    start_bytes: int  # live at the start of the warm step: weights, optimizer state, buffers, the batch
    params: int
    scratch_bytes: int = 0  # peak of blocks CPU kernels allocate and free inside one op (not in peak_bytes)


def measure_real_step(config: dict, knobs: dict, attn: str) -> Measured:
    """One warm-up step, then one measured step of the real model on the CPU under torch.profiler."""
    import torch
    from torch.profiler import ProfilerActivity, profile, record_function

    from autofit.knobs import TrainingConfig

    lora_alpha = TrainingConfig.from_dict(knobs).lora_alpha
    gc.collect()
    with _quiet(), _gpu_autocast_answer(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        net = _real_model(config, knobs["lora_rank"], lora_alpha, knobs["quantization"], attn,
                          knobs["gradient_checkpointing"])
        gc.collect()  # loading leaves reference cycles holding tensors; a long training run collects them
        optimizer = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], lr=1e-5, foreach=True)
        ids = torch.randint(0, config["vocab_size"], (knobs["per_device_train_batch_size"], knobs["seq_len"]))

        def step(net: torch.nn.Module = net, optimizer: torch.optim.Optimizer = optimizer) -> None:
            with torch.autocast("cpu", dtype=torch.bfloat16):
                loss = net(input_ids=ids, labels=ids).loss
            loss.backward()
            del loss
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

        step()  # warm-up: creates the optimizer state
        with record_function("measured_step"):
            step()
        params = sum(p.numel() for p in net.parameters())
    start, peak, scratch = _live_bytes_peak(prof, "measured_step")
    del net, optimizer, prof
    gc.collect()
    return Measured(peak_bytes=peak, start_bytes=start, params=params, scratch_bytes=scratch)


# -- the trace ---------------------------------------------------------------------------------------------------

@dataclass
class Traced:
    peak_bytes: float
    params: float
    phase: str


def trace(config: dict, knobs: dict, label: str) -> Traced:
    from autofit.knobs import TrainingConfig
    from autofit.models import ModelSpec
    from autofit.probes._trace import traced_peak_bytes

    spec = ModelSpec(name=label, config=config, hf_ref=label)
    peak, step = traced_peak_bytes(spec, TrainingConfig.from_dict(knobs), round_bytes=1)
    phase = max((n for n in step.phases if n != "init"), key=lambda n: sum(step.phases[n].breakdown.values()))
    return Traced(peak_bytes=peak, params=step.total_params, phase=phase)


def attention_for(config: dict, label: str) -> str:
    """sdpa when the model's class supports it, else eager (what a search leaves in)."""
    from autofit.models import ModelSpec, attention_support

    support = attention_support(ModelSpec(name=label, config=config, hf_ref=label), ("sdpa", "eager"))
    return "sdpa" if support["sdpa"] else "eager"


# -- the matrix --------------------------------------------------------------------------------------------------

@dataclass
class Row:
    arch: Arch
    method: str
    checkpointing: bool
    attn: str = ""
    traced: Traced | None = None
    measured: Measured | None = None
    error: str = ""
    seconds: float = 0.0

    @property
    def error_pct(self) -> float | None:
        if self.traced is None or self.measured is None:
            return None
        return 100.0 * (self.traced.peak_bytes - self.measured.peak_bytes) / self.measured.peak_bytes

    @property
    def params_exact(self) -> bool | None:
        if self.traced is None or self.measured is None:
            return None
        return int(round(self.traced.params)) == self.measured.params


def run_row(arch: Arch, method: str, checkpointing: bool) -> Row:
    started = time.perf_counter()
    row = Row(arch=arch, method=method, checkpointing=checkpointing)
    config = arch.config()
    knobs = {**STEP, **dict(METHODS)[method], "gradient_checkpointing": checkpointing}
    try:
        row.attn = attention_for(config, arch.label)
        knobs["attn_implementation"] = row.attn
        row.traced = trace(config, knobs, arch.label)
        row.measured = measure_real_step(config, knobs, row.attn)
    except Exception as exc:  # noqa: BLE001 - a row that cannot run is reported with its reason
        row.error = f"{type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0][:200]}"
    row.seconds = time.perf_counter() - started
    return row


def _kib(value: float) -> str:
    return f"{value / 1024:,.1f}"


def markdown(rows: list[Row], seconds: float) -> str:
    from autofit.documents import library_versions

    versions = ", ".join(f"{k} {v}" for k, v in library_versions().items())
    traced = [r for r in rows if r.error_pct is not None]
    within = sum(1 for r in traced if abs(r.error_pct) <= 1.0)
    exact = sum(1 for r in traced if r.params_exact)
    failed = [r for r in rows if r.error]
    lines = [
        "# Trace probe against real CPU steps, architecture by architecture",
        "",
        f"Run {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC with `python bench/validate_cpu_matrix.py` in "
        f"{seconds:.0f} s on {platform.machine()} ({platform.processor() or 'cpu'}), 2 cores shared with other work. "
        f"Versions: {versions}.",
        "",
        f"**{within}/{len(traced)} traced rows within 1% of the measured peak; parameter counts exact in "
        f"{exact}/{len(traced)}**; {len(failed)} rows could not run (reason in the last table).",
        "",
        "How it is measured: every architecture at tiny sizes (4 layers, hidden 64, 4 heads / 2 KV heads, vocab 512;"
        " MoE with 4 experts, top-2), batch 2 x 64 tokens, torch AdamW (foreach), bf16 autocast. *measured* is the"
        " peak live bytes of PyTorch's CPU allocator during one warm training step (forward, loss, backward,"
        " optimizer step, after a warm-up step), read from torch.profiler's memory events, with the model built as a"
        " user's script builds it (transformers `from_config`; QLoRA: each linear layer but the head replaced by a"
        " bitsandbytes NF4 layer holding its quantized weight, as transformers' loader leaves it;"
        " peft LoRA r8 on all linear layers;"
        " non-reentrant checkpointing): no autofit"
        " code in it. *traced* is the trace probe's peak for the same configuration (`traced_peak_bytes`, bytes"
        " unrounded; a search's figure also rounds each block to 512 bytes as the CUDA allocator does). *at start*"
        " is the measured live bytes when the step starts (weights, optimizer state, buffers, the batch)."
        " *kernel scratch* is the largest total of blocks a CPU kernel allocated and freed inside one op (oneDNN's"
        " packed GEMM operands: no tensor, and not in *measured*; a GPU's cuBLAS has its own workspace, in the CUDA"
        " runtime reserve). Checkpointing runs with `preserve_rng_state=False`: the CPU RNG state each checkpointed"
        " layer would save is host memory on a GPU."
        " Attention is SDPA unless the model's class has none (then eager, as a search leaves it).",
        "",
        "The profiler does not see memory outside PyTorch's allocator (oneDNN scratch), and the real step runs the"
        " same CPU attention kernel the trace runs on fake CPU tensors, so attention's own buffers are not checked"
        " independently here; on a GPU, `bench/validate_gpu.py` is the check.",
        "",
        "| model type | features | method | checkpointing | attention | traced KiB | measured KiB | error % |"
        " at start KiB | kernel scratch KiB | traced params | real params | params | peak phase | s |",
        "|---|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|---|---:|",
    ]
    for r in rows:
        if r.error:
            continue
        lines.append(
            f"| {r.arch.label} | {r.arch.features} | {r.method} | {'on' if r.checkpointing else 'off'} | {r.attn} | "
            f"{_kib(r.traced.peak_bytes)} | {_kib(r.measured.peak_bytes)} | {r.error_pct:+.2f} | "
            f"{_kib(r.measured.start_bytes)} | {_kib(r.measured.scratch_bytes)} | "
            f"{int(round(r.traced.params)):,} | {r.measured.params:,} | "
            f"{'exact' if r.params_exact else 'DIFFERS'} | {r.traced.phase} | {r.seconds:.1f} |")
    if failed:
        lines += ["", "Rows that could not run (the reason; `autofit estimate --model` on such a config prints one"
                      " `autofit: error:` line):", "", "| model type | method | checkpointing | reason |",
                  "|---|---|---|---|"]
        for r in failed:
            lines.append(f"| {r.arch.label} | {r.method} | {'on' if r.checkpointing else 'off'} | "
                         f"{r.error.replace('|', '/')} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", help="architecture labels or model types")
    parser.add_argument("--out", default=None, help=f"markdown file to write (default {DOC.relative_to(REPO)} "
                                                    "when every architecture runs)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    archs = [a for a in ARCHITECTURES if not args.only or a.label in args.only or a.model_type in args.only]
    started = time.perf_counter()
    rows: list[Row] = []
    for arch in archs:
        for method, _ in METHODS:
            for checkpointing in (True, False):
                row = run_row(arch, method, checkpointing)
                rows.append(row)
                verdict = row.error or f"{row.error_pct:+.2f}% params {'exact' if row.params_exact else 'DIFFER'}"
                print(f"{arch.label:14} {method:13} ckpt={'on ' if checkpointing else 'off'} {verdict} "
                      f"({row.seconds:.1f} s)", flush=True)
    seconds = time.perf_counter() - started
    out = Path(args.out) if args.out else (DOC if not args.only else None)
    if out is not None:
        from autofit.outputs import atomic_write

        out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(out, markdown(rows, seconds))
        print(f"wrote {out}")
    bad = [r for r in rows if r.error or abs(r.error_pct) > 1.0 or not r.params_exact]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    sys.exit(main())
