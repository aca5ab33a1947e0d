"""GPU validation: the trace probe's predictions against real probes, configuration by configuration.

    python bench/validate_gpu.py                          # on a GPU: llama3.2-1b and glm4-9b, --probe cuda
    python bench/validate_gpu.py --probe cpu --model tests/data/glm-20m --limit 4   # how CI runs it

Runs a fixed list of configurations (LoRA, QLoRA, int8, full fine-tuning with checkpointing, several batch
sizes and sequence lengths, one ZeRO-offload case) through the trace probe and the real probe (no
screening), and writes a markdown table to docs/validation/<gpu>.md: predicted peak, measured
max_memory_allocated and max_memory_reserved, error %, predicted and measured tokens/s, GPU name and
library versions. The budget is the whole card (or --gpu-mem), so nothing is skipped.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from autofit.budget import make_budget
from autofit.gpus import detect_gpu, get_gpu
from autofit.models import resolve_model
from autofit.outputs import atomic_write, library_versions
from autofit.probes import CpuProbe, CudaProbe, ProbeContext, TraceProbe
from autofit.space import SearchSpace

BASE = dict(gradient_accumulation_steps=1, zero_stage=0, offload="none", optimizer="adamw_torch",
            attn_implementation="sdpa", allocator="default")
# (label, knobs) per model; seq lengths are scaled down by --seq-scale for small CPU runs
CONFIGS = [
    ("LoRA r16 b1 s2048 ckpt", dict(lora_rank=16, quantization="none", per_device_train_batch_size=1, seq_len=2048, gradient_checkpointing=True)),
    ("LoRA r16 b4 s2048 ckpt", dict(lora_rank=16, quantization="none", per_device_train_batch_size=4, seq_len=2048, gradient_checkpointing=True)),
    ("LoRA r64 b2 s4096 ckpt", dict(lora_rank=64, quantization="none", per_device_train_batch_size=2, seq_len=4096, gradient_checkpointing=True)),
    ("LoRA r16 b1 s1024 no-ckpt", dict(lora_rank=16, quantization="none", per_device_train_batch_size=1, seq_len=1024, gradient_checkpointing=False)),
    ("QLoRA r16 b1 s2048 ckpt", dict(lora_rank=16, quantization="nf4", per_device_train_batch_size=1, seq_len=2048, gradient_checkpointing=True)),
    ("QLoRA r16 b8 s1024 ckpt 8bit-opt", dict(lora_rank=16, quantization="nf4", per_device_train_batch_size=8, seq_len=1024, gradient_checkpointing=True, optimizer="adamw_8bit")),
    ("int8 r16 b2 s2048 ckpt", dict(lora_rank=16, quantization="int8", per_device_train_batch_size=2, seq_len=2048, gradient_checkpointing=True)),
    ("LoRA r16 b2 s2048 eager", dict(lora_rank=16, quantization="none", per_device_train_batch_size=2, seq_len=2048, gradient_checkpointing=True, attn_implementation="eager")),
    ("full b1 s2048 ckpt 8bit-opt", dict(lora_rank=0, quantization="none", per_device_train_batch_size=1, seq_len=2048, gradient_checkpointing=True, optimizer="adamw_8bit")),
    ("full b2 s1024 ckpt adamw ga2", dict(lora_rank=0, quantization="none", per_device_train_batch_size=2, seq_len=1024, gradient_checkpointing=True, gradient_accumulation_steps=2)),
    ("full ZeRO-2 offload b1 s2048 ckpt", dict(lora_rank=0, quantization="none", per_device_train_batch_size=1, seq_len=2048, gradient_checkpointing=True, zero_stage=2, offload="optimizer")),
]
SMALL_MODEL_ONLY = ("full ZeRO-2 offload", "full b2 s1024 ckpt adamw")  # too large for 9B on one 80 GB card


def rows_for(model_name: str, big: bool, seq_scale: float, cuda: bool):
    space = SearchSpace.load().default_config()
    for label, knobs in CONFIGS:
        if big and label.startswith(SMALL_MODEL_ONLY):
            continue
        if not cuda and "ZeRO" in label:  # host and device memory are one on the CPU: nothing to measure
            continue
        config = space.replace(**{**BASE, **knobs})
        config = config.replace(seq_len=max(16, int(config.seq_len * seq_scale)))
        yield label, config


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--probe", choices=["cuda", "cpu"], default="cuda")
    parser.add_argument("--model", action="append", help="model(s) to validate (default: llama3.2-1b and glm4-9b)")
    parser.add_argument("--gpu-mem", help="budget per card (default: the whole card; 1GB for --probe cpu)")
    parser.add_argument("--seq-scale", type=float, default=None, help="scale sequence lengths (default 1; cpu 1/16)")
    parser.add_argument("--limit", type=int, help="only the first N configurations per model")
    parser.add_argument("--out", help="markdown file (default docs/validation/<gpu>.md)")
    parser.add_argument("--timeout", type=float, default=None, help="per-probe timeout, seconds")
    args = parser.parse_args()

    cuda = args.probe == "cuda"
    models = args.model or ["llama3.2-1b", "glm4-9b"]
    if cuda:
        import torch

        if not torch.cuda.is_available():
            print("bench/validate_gpu.py: no CUDA GPU visible; use --probe cpu", file=sys.stderr)
            return 2
        device_name = torch.cuda.get_device_name(0)
        total_gib = torch.cuda.mem_get_info()[1] / 2**30
        gpu = detect_gpu() or get_gpu("h100")
        budget = make_budget(args.gpu_mem or f"{total_gib:.2f}GB", headroom=0.0, measure=True)
        real = CudaProbe(timeout_s=args.timeout, warmup_steps=1, measured_steps=2)
    else:
        device_name = f"CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)"
        gpu = get_gpu("h100")
        budget = make_budget(args.gpu_mem or "1GB", headroom=0.0, runtime_reserve=False)
        real = CpuProbe(timeout_s=args.timeout, warmup_steps=1, measured_steps=1)
    seq_scale = args.seq_scale or (1.0 if cuda else 1 / 16)
    context = ProbeContext(usable_budget_bytes=budget.usable_bytes, gpu=gpu)
    tracer = TraceProbe()
    lines = []
    misses = 0
    measured_rows = 0
    started = time.perf_counter()
    for name in models:
        model = resolve_model(name)
        big = model.params > 5e9
        for i, (label, config) in enumerate(rows_for(name, big, seq_scale, cuda)):
            if args.limit is not None and i >= args.limit:
                break
            predicted = tracer.run(model, config, context)
            measured = real.run(model, config, context)
            alloc, reserved = measured.peak_allocated_gib, measured.peak_reserved_gib
            err = None if not alloc else 100 * (predicted.peak_memory_gib - alloc) / alloc
            if err is not None and measured.state == "ok":
                measured_rows += 1
                misses += abs(err) > 5
            fmt = lambda v, f="{:.2f}": "" if v is None else f.format(v)  # noqa: E731
            lines.append(f"| {model.name} | {label} (seq {config.seq_len}) | {measured.state} | "
                         f"{predicted.peak_memory_gib:.2f} | {fmt(alloc)} | {fmt(reserved)} | {fmt(err, '{:+.1f}')} | "
                         f"{predicted.tokens_per_s:,.0f} | {fmt(measured.tokens_per_s, '{:,.0f}')} |")
            print(lines[-1], flush=True)
    versions = ", ".join(f"{k} {v}" for k, v in library_versions().items())
    within = f"{measured_rows - misses}/{measured_rows}" if measured_rows else "0/0"
    doc = [f"# Trace probe against real probes: {device_name}", "",
           f"Run {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC with `python {' '.join(sys.argv)}` "
           f"in {time.perf_counter() - started:.0f} s. Budget {budget.usable_gib:.2f} GiB; predicted tokens/s "
           f"are roofline estimates for {gpu.name}. Versions: {versions}.", "",
           f"Predicted peak within 5% of measured max_memory_allocated: {within} rows.", "",
           *([] if cuda else ["On the CPU, measured memory is live tensor bytes and measured tokens/s is CPU throughput "
                              "(seq lengths scaled by 1/16), not comparable with the GPU roofline prediction; "
                              "ZeRO/offload rows are left out (host and device memory are one).", ""]),
           "| model | configuration | state | predicted peak GiB | measured allocated GiB | measured reserved GiB "
           "| error % | predicted tokens/s | measured tokens/s |",
           "|---|---|---|---:|---:|---:|---:|---:|---:|", *lines, ""]
    slug = "cpu" if not cuda else device_name.lower().replace("nvidia", "").strip().replace(" ", "-")
    out = Path(args.out or f"docs/validation/{slug}.md")
    atomic_write(out, "\n".join(doc))
    print(f"wrote {out}: {within} rows within 5%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
