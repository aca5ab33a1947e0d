"""Measure eager PyTorch's host time per op, and bitsandbytes' per 4-bit op, independently of published.csv.

    python bench/throughput/host_overhead.py [--runs N] [--threads N]

The performance model's host constants (runtime.yaml cpu_op_overhead_us, bnb_op_overhead_us) bound a step from
below when kernels are small: the host (Python, dispatcher, autograd, peft's and bitsandbytes' Python layers)
then takes longer than the GPU. Fitting them on the calibration set left them pinned by one source only (Qwen's
short-sequence rows), so they are measured here instead, independently of that set: a tiny model (hidden 64, 4
layers, so every kernel's arithmetic is negligible) runs real LoRA training steps on the CPU with the cpu
probe's own model builder and step loop (transformers + peft + bitsandbytes + accelerate, the code a GPU run
goes through, minus the CUDA launch; without the probe's memory tracker, whose Python hook on every op would be
counted), and autofit's trace of the same configuration counts the ops of the step as the performance model
counts them.

  cpu_op_overhead_us = measured step time (bf16 LoRA) / ops in the step
  bnb_op_overhead_us = (measured step time (nf4 QLoRA) - its non-bitsandbytes ops x cpu_op_overhead_us)
                       / bitsandbytes ops (4-bit matmuls and dequantizations)

The CPU's tiny kernels stand in for cudaLaunchKernel's host time (a few us per launch, NVIDIA's figure), which a
GPU run pays instead; the figures are those of the machine that ran this (a training host's faster cores would
give less), so runtime.yaml takes the eager figure from published microbenchmarks and from here the ratio of a
bitsandbytes op to an eager op (`bnb_to_eager_ratio`), in which the machine's speed cancels to first order. The
fastest of --runs measured steps (after 3 warm-up steps): on a shared machine other jobs only ever add time.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
from pathlib import Path
from typing import Any

import torch

from autofit.models import resolve_model
from autofit.probes import trace_step
from autofit.probes._perf import BNB_KINDS
from autofit.probes._trace import micro_step_ops
from autofit.probes._training import build_model, run_steps
from autofit.space import SearchSpace

TINY = {"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "hidden_size": 64, "intermediate_size": 128,
        "num_hidden_layers": 4, "num_attention_heads": 4, "num_key_value_heads": 4, "vocab_size": 256,
        "max_position_embeddings": 512, "tie_word_embeddings": False, "torch_dtype": "bfloat16"}


def op_counts(trace) -> tuple[float, float]:
    """(non-bitsandbytes ops, bitsandbytes ops) of one optimizer step of a traced configuration (no accumulation)."""
    micro = micro_step_ops(trace)
    quantized = sum(n for op, n in micro.items() if op.kind in BNB_KINDS)
    regular = sum(micro.values()) - quantized + sum(trace.phases["s2.opt"].ops.values())
    return regular, quantized


def measure(runs: int, threads: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "config.json").write_text(json.dumps(TINY))
        model = resolve_model(tmp)
        base = SearchSpace.load().default_config().replace(
            per_device_train_batch_size=1, gradient_accumulation_steps=1, seq_len=32, lora_rank=8,
            gradient_checkpointing=True, zero_stage=0, offload="none", optimizer="adamw_torch",
            attn_implementation="sdpa")
        torch.set_num_threads(threads)
        out: dict[str, dict[str, Any]] = {}
        for quantization in ("none", "nf4"):
            config = base.replace(quantization=quantization)
            regular, quantized = op_counts(trace_step(model, config))
            net = build_model(model, config, "cpu")
            times = run_steps(net, config, "cpu", model.vocab_size, warmup=3, measured=runs).measured_s
            out[quantization] = {"regular_ops": regular, "bnb_ops": quantized, "step_s": min(times),
                                 "median_step_s": statistics.median(times), "step_s_runs": times}
    cpu_us = out["none"]["step_s"] / out["none"]["regular_ops"] * 1e6
    nf4 = out["nf4"]
    bnb_us = (nf4["step_s"] - nf4["regular_ops"] * cpu_us * 1e-6) / nf4["bnb_ops"] * 1e6
    return {"cpu_op_overhead_us": round(cpu_us, 1), "bnb_op_overhead_us": round(bnb_us, 1),
            "bnb_to_eager_ratio": round(bnb_us / cpu_us, 2), "runs": out,
            "machine": f"{platform.machine()} {platform.processor() or ''}".strip(), "threads": threads}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15, help="measured steps per configuration (the fastest is kept)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads in this process")
    args = parser.parse_args()
    print(json.dumps(measure(args.runs, args.threads), indent=2))


if __name__ == "__main__":
    main()
