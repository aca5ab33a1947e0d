"""GPU validation: the trace probe's predictions against real probes, configuration by configuration.

    python bench/validate_gpu.py                          # on a GPU: llama3.2-1b and glm4-9b, --probe cuda
    python bench/validate_gpu.py --probe cpu --model tests/data/glm-20m --limit 2   # how CI runs it

Runs a fixed list of configurations (LoRA, QLoRA, int8, full fine-tuning with checkpointing, several batch
sizes and sequence lengths, two ZeRO-offload cases: full ZeRO-2, QLoRA ZeRO-3) through the trace probe and the
real probe (no screening), and writes a markdown table to docs/validation/<gpu>.md: predicted peak, measured
max_memory_allocated and max_memory_reserved, error %, predicted and measured tokens/s, GPU name and library
versions, and the tokens/s estimate's error against the measurement (GPU runs only: on the CPU the
measurement is CPU throughput). The budget is the whole card (or --gpu-mem), so nothing is skipped.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

from autofit.budget import make_budget
from autofit.gpus import cuda_device_info, detect_gpu, get_gpu
from autofit.models import resolve_model
from autofit.documents import library_versions
from autofit.outputs import atomic_write
from autofit.probes import CpuProbe, CudaProbe, ProbeContext, TraceProbe
from autofit.space import SearchSpace
from autofit.trials import DetailKey, Outcome

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
    ("QLoRA ZeRO-3 offload all b2 s2048 ckpt", dict(lora_rank=16, quantization="nf4", per_device_train_batch_size=2, seq_len=2048, gradient_checkpointing=True, zero_stage=3, offload="all")),
]
# full fine-tuning of 9B with torch AdamW or ZeRO-2 does not fit one 80 GB card; one QLoRA ZeRO-3 row is enough
SMALL_MODEL_ONLY = ("full ZeRO-2 offload", "full b2 s1024 ckpt adamw", "QLoRA ZeRO-3")


def rows_for(models: list, seq_scale: float, cuda: bool):
    """(model, label, config) for every row: all plain rows of every model first, then the ZeRO rows (DeepSpeed
    may JIT-build its optimizer op on first use, the slowest probe of the run)."""
    space = SearchSpace.load().default_config()
    plain, zero = [], []
    for model in models:
        big = model.params > 5e9
        for label, knobs in CONFIGS:
            if big and label.startswith(SMALL_MODEL_ONLY):
                continue
            if not cuda and "ZeRO" in label:  # host and device memory are one on the CPU: nothing to measure
                continue
            config = space.replace(**{**BASE, **knobs})
            config = config.replace(seq_len=max(16, int(config.seq_len * seq_scale)))
            (zero if config.zero_stage else plain).append((model, label, config))
    return plain + zero


def _fmt(value, spec="{:.2f}"):
    return "" if value is None else spec.format(value)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--probe", choices=["cuda", "cpu"], default="cuda")
    parser.add_argument("--model", action="append", help="model(s) to validate (default: llama3.2-1b and glm4-9b)")
    parser.add_argument("--gpu-mem", help="budget per card (default: the whole card; 1GB for --probe cpu)")
    parser.add_argument("--seq-scale", type=float, default=None, help="scale sequence lengths (default 1; cpu 1/16)")
    parser.add_argument("--limit", type=int, help="only the first N configurations per model")
    parser.add_argument("--out", help="markdown file (default docs/validation/<gpu>.md)")
    parser.add_argument("--timeout", type=float, default=None, help="per-probe timeout, seconds")
    parser.add_argument("--deadline-min", type=float, default=None,
                        help="start no new row after this many minutes; rows left are listed as not run")
    args = parser.parse_args()

    cuda = args.probe == "cuda"
    if cuda:
        import torch

        if not torch.cuda.is_available():
            print("bench/validate_gpu.py: no CUDA GPU visible; use --probe cpu", file=sys.stderr)
            return 2
        info = cuda_device_info()  # read in a child: this process holds no CUDA context while probes run
        device_name, total_gib = info["name"], info["total_bytes"] / 2**30
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
    models = [resolve_model(name) for name in (args.model or ["llama3.2-1b", "glm4-9b"])]
    rows = rows_for(models, seq_scale, cuda)
    if args.limit is not None:  # the first N rows of each model
        per_model: Counter = Counter()
        kept = []
        for row in rows:
            per_model[row[0].name] += 1
            if per_model[row[0].name] <= args.limit:
                kept.append(row)
        rows = kept
    slug = "cpu" if not cuda else device_name.lower().replace("nvidia", "").strip().replace(" ", "-")
    out = Path(args.out or f"docs/validation/{slug}.md")
    tracer = TraceProbe()
    lines: list[str] = []
    notes: list[str] = []
    errors: list[float] = []
    speed_errors: list[float] = []  # tokens/s: estimate against measurement, GPU runs only
    started = time.perf_counter()

    def write(done: bool) -> str:
        within = sum(abs(e) <= 5 for e in errors)
        summary = f"{within}/{len(errors)}" if errors else "0/0"
        versions = ", ".join(f"{k} {v}" for k, v in library_versions().items())
        doc = [f"# Trace probe against real probes: {device_name}", "",
               f"Run {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC with `python {' '.join(sys.argv)}` "
               f"in {time.perf_counter() - started:.0f} s{'' if done else ' (still running when written)'}. "
               f"Budget {budget.usable_gib:.2f} GiB (CUDA runtime reserve {budget.reserve_bytes / 2**30:.2f} GiB, "
               f"{budget.reserve_source}); predicted tokens/s are performance-model estimates for {gpu.name} "
               "(autofit/probes/_perf.py). "
               f"Versions: {versions}.", "",
               f"Predicted peak within 5% of measured max_memory_allocated: {summary} rows measured ok.", "",
               *([f"Estimated tokens/s against measured: median |error| {statistics.median(map(abs, speed_errors)):.1f}%"
                  f" over {len(speed_errors)} rows measured ok.", ""] if speed_errors else []),
               *([] if cuda else ["On the CPU, measured memory is live tensor bytes and measured tokens/s is CPU "
                                  "throughput (seq lengths scaled by 1/16), not comparable with the GPU "
                                  "estimate (no tokens/s error is given); ZeRO/offload rows are left out (host and device memory are one).", ""]),
               "probe s: the real probe's wall time, process start, model build and steps included (build s: "
               "building the model alone). reserve GiB: device memory the probe's process held outside PyTorch's "
               "allocator (CUDA context, library workspaces; NVML), cuda probes only.", "",
               "| model | configuration | state | predicted peak GiB | measured allocated GiB | measured reserved GiB "
               "| error % | predicted tokens/s | measured tokens/s | tokens/s error % | probe s (build s) "
               "| reserve GiB |",
               "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|", *lines, "", *notes]
        atomic_write(out, "\n".join(doc) + "\n")
        return summary

    for model, label, config in rows:
        if args.deadline_min is not None and time.perf_counter() - started > 60 * args.deadline_min:
            lines.append(f"| {model.name} | {label} (seq {config.seq_len}) | not run (deadline) | | | | | | | | | |")
            continue
        predicted = tracer.run(model, config, context)
        measured = real.run(model, config, context)
        alloc, reserved = measured.peak_allocated_gib, measured.peak_reserved_gib
        err = None if not alloc else 100 * (predicted.peak_memory_gib - alloc) / alloc
        if err is not None and measured.state == Outcome.OK:
            errors.append(err)
        speed_err = None
        if cuda and measured.state == Outcome.OK and measured.tokens_per_s:
            speed_err = 100 * (predicted.tokens_per_s - measured.tokens_per_s) / measured.tokens_per_s
            speed_errors.append(speed_err)
        build = measured.details.get("build_s")
        reserve = measured.details.get(DetailKey.RUNTIME_RESERVE_BYTES)
        lines.append(f"| {model.name} | {label} (seq {config.seq_len}) | {measured.state} | "
                     f"{predicted.peak_memory_gib:.2f} | {_fmt(alloc)} | {_fmt(reserved)} | {_fmt(err, '{:+.1f}')} | "
                     f"{predicted.tokens_per_s:,.0f} | {_fmt(measured.tokens_per_s, '{:,.0f}')} | {_fmt(speed_err, '{:+.1f}')} | "
                     f"{measured.duration_s:.1f} ({_fmt(build, '{:.1f}')}) | "
                     f"{_fmt(None if reserve is None else reserve / 2**30)} |")
        if measured.error and measured.state != Outcome.OK:
            notes.append(f"- {model.name} / {label}: {measured.state}: "
                         + " / ".join(measured.error.strip().splitlines()[-3:]))
        print(lines[-1], flush=True)
        write(done=False)
    summary = write(done=True)
    print(f"wrote {out}: {summary} rows within 5%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
