"""The performance model: what a GPU spends a traced training step's time on (an estimate, always labelled so).

`StepTracker` (_memtrack.py) files every op of a traced step under an `OpKey`: its kind (GEMM, bitsandbytes
4-bit matmul, dequantization, attention forward/backward, elementwise, optimizer), whether it ran during
checkpointing's recompute, and what the kind needs to price it (M, N, K; FLOPs; bytes read and written;
kernel launches). Counts of identical keys are kept, so a phase is a small table and is extrapolated in
depth like every other quantity. `PerfModel.price` turns such a table into seconds per part on one card:

- GEMM: FLOPs / (peak x efficiency(M, N, K)), where each dimension d contributes d / (d + gemm_half_dim):
  tiles of a small or skinny GEMM (a LoRA adapter of rank 16, a batch of 256 tokens) leave the tensor cores
  idle, large ones approach gemm_max_efficiency (or the card's measured gemm_share, gpus.yaml); never faster
  than its bytes at memory bandwidth.
- bitsandbytes 4-bit matmul: dequantization of the whole weight (4-bit codes and absmax read, bf16 weight
  written) and then a bf16 GEMM, as its CUDA path does for training-sized inputs; explicit dequantizations
  (the backward's dequantize_4bit, double quantization's dequantize_blockwise, int8 weights scaled to bf16)
  are priced alike: bytes at the bandwidth those kernels reach (dequant_bandwidth_efficiency). An int8 layer
  is traced as bitsandbytes runs it off the GPU and in its backward: int8 codes scaled to a 16-bit weight, then
  a bf16 GEMM; its CUDA forward (activations quantized row-wise, an int8 GEMM, outlier columns in 16 bits, the
  int32 result scaled back) moves about as many bytes, which is what this prices.
- attention (sdpa / flash): causal FLOPs at the share of peak that flash kernels reach, forward and backward
  apart (a card's flash_attention_share in gpus.yaml replaces the forward share, the backward in proportion:
  FlashAttention-2 reaches 35% of an H100's peak); eager attention is the GEMMs and softmax it is made of.
- elementwise, norm, rope, loss and copies: bytes at bandwidth_efficiency.
- optimizer: the optimizer step's ops (foreach AdamW, bitsandbytes 8-bit), bytes at bandwidth.
- overhead: PyTorch eager dispatch costs cpu_op_overhead_us of host time per op, and a bitsandbytes op
  (4-bit matmul, dequantization) bnb_op_overhead_us, since each runs through peft's and bitsandbytes' Python
  layers (quant-state checks, double-quantization statistics). The host runs ahead of the GPU, so a
  micro-step takes max(GPU time, host time); what the host adds beyond the GPU is overhead.
Recompute (ops re-run by gradient checkpointing in the backward) is reported as its own part.
Constants live in autofit/data/runtime.yaml, the card's figures in autofit/data/gpus.yaml.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from ..gpus import GpuSpec

# op kinds that run through bitsandbytes' Python layers (their host time is bnb_op_overhead_us, not cpu_op_overhead_us)
BNB_KINDS = ("gemm_4bit", "dequant")
TIME_PARTS = ("matmul", "dequantization", "attention", "elementwise", "optimizer", "recompute",
              "offload_communication", "overhead")


class OpKey(NamedTuple):
    """What pricing one op needs. Dimensions are 0 where the kind does not use them."""

    kind: str  # gemm | gemm_4bit | dequant | attn_fwd | attn_bwd | elementwise | optimizer
    recompute: bool
    m: int = 0
    n: int = 0
    k: int = 0
    flops: float = 0.0
    bytes_moved: float = 0.0
    launches: int = 1


@dataclass(frozen=True)
class PerfModel:
    """One card and the constants of the model (see the module docstring)."""

    peak_flops: float  # dense bf16 tensor FLOP/s (datasheet)
    bandwidth: float  # memory bytes/s (datasheet)
    gemm_max_efficiency: float
    gemm_half_dim: float
    attention_forward_efficiency: float
    attention_backward_efficiency: float
    bandwidth_efficiency: float
    dequant_bandwidth_efficiency: float
    kernel_launch_us: float
    cpu_op_overhead_us: float
    bnb_op_overhead_us: float

    @classmethod
    def for_gpu(cls, gpu: GpuSpec, constants: dict) -> PerfModel:
        values = {name: float(constants[name]) for name in PERF_CONSTANTS}
        if gpu.gemm_share is not None:  # measured on this card (gpus.yaml) rather than judged for all
            values["gemm_max_efficiency"] = float(gpu.gemm_share)
        share = gpu.flash_attention_share
        if share is not None:  # a card where FA2 reaches another share of peak (Hopper): backward in proportion
            values["attention_backward_efficiency"] *= share / values["attention_forward_efficiency"]
            values["attention_forward_efficiency"] = float(share)
        return cls(peak_flops=gpu.bf16_tflops * 1e12, bandwidth=gpu.bandwidth_gbs * 1e9, **values)

    # -- one op ---------------------------------------------------------------------------------------
    def gemm_efficiency(self, m: float, n: float, k: float) -> float:
        h = self.gemm_half_dim
        return self.gemm_max_efficiency * (m / (m + h)) * (n / (n + h)) * (k / (k + h))

    def gemm_seconds(self, m: float, n: float, k: float, bytes_moved: float) -> float:
        if min(m, n, k) <= 0:
            return bytes_moved / (self.bandwidth * self.bandwidth_efficiency)
        compute = 2.0 * m * n * k / (self.peak_flops * self.gemm_efficiency(m, n, k))
        return max(compute, bytes_moved / (self.bandwidth * self.bandwidth_efficiency))

    def dequant_seconds(self, bytes_moved: float) -> float:
        return bytes_moved / (self.bandwidth * self.dequant_bandwidth_efficiency)

    def attention_seconds(self, flops: float, bytes_moved: float, backward: bool) -> float:
        eff = self.attention_backward_efficiency if backward else self.attention_forward_efficiency
        return max(flops / (self.peak_flops * eff), bytes_moved / (self.bandwidth * self.bandwidth_efficiency))

    def elementwise_seconds(self, bytes_moved: float) -> float:
        return bytes_moved / (self.bandwidth * self.bandwidth_efficiency)

    def op_seconds(self, op: OpKey) -> tuple[str, float, float]:
        """(part, GPU seconds of its kernels, of which dequantization) of one op, launches included."""
        launch = op.launches * self.kernel_launch_us * 1e-6
        if op.kind == "gemm":
            return "matmul", self.gemm_seconds(op.m, op.n, op.k, op.bytes_moved) + launch, 0.0
        if op.kind == "gemm_4bit":
            # weight codes (0.5 B) + absmax read, bf16 weight written (2 B), then read again by the GEMM
            dequant = self.dequant_seconds(2.5 * op.n * op.k)
            gemm = self.gemm_seconds(op.m, op.n, op.k, op.bytes_moved + 2.0 * op.n * op.k)
            return "matmul", gemm + dequant + 2 * launch, dequant
        if op.kind == "dequant":
            seconds = self.dequant_seconds(op.bytes_moved) + launch
            return "dequantization", seconds, seconds
        if op.kind in ("attn_fwd", "attn_bwd"):
            return "attention", self.attention_seconds(op.flops, op.bytes_moved, op.kind == "attn_bwd") + launch, 0.0
        if op.kind == "optimizer":
            return "optimizer", self.elementwise_seconds(op.bytes_moved) + launch, 0.0
        return "elementwise", self.elementwise_seconds(op.bytes_moved) + launch, 0.0

    # -- a phase --------------------------------------------------------------------------------------
    def price(self, ops: dict[OpKey, float], extra_host_s: float = 0.0, transfer_s: float = 0.0) -> dict[str, float]:
        """Seconds per part (TIME_PARTS) of a phase given as {op: count}; `extra_host_s` is host time that
        the trace does not see (DeepSpeed ZeRO-3's module hooks), overlapped with the GPU like the rest;
        `transfer_s`: the phase's collectives and host transfers (priced by the caller, not returned here),
        during which the host also runs ahead."""
        parts = dict.fromkeys(TIME_PARTS, 0.0)
        host_s = extra_host_s
        for op, count in ops.items():
            part, seconds, dequant = self.op_seconds(op)
            quantized = op.kind in BNB_KINDS
            host_s += count * (self.bnb_op_overhead_us if quantized else self.cpu_op_overhead_us) * 1e-6
            if op.recompute:
                parts["recompute"] += count * seconds
                continue
            if dequant:  # a fused 4-bit matmul: its dequantization is shown as such
                parts["dequantization"] += count * dequant
                seconds -= dequant
            parts[part] += count * seconds
        gpu = sum(parts.values())
        parts["overhead"] = max(0.0, host_s - gpu - transfer_s)
        return parts


# The runtime.yaml names of PerfModel's constants (everything but the card's own figures).
PERF_CONSTANTS = ("gemm_max_efficiency", "gemm_half_dim", "attention_forward_efficiency",
                  "attention_backward_efficiency", "bandwidth_efficiency", "dequant_bandwidth_efficiency",
                  "kernel_launch_us", "cpu_op_overhead_us", "bnb_op_overhead_us")


def add_parts(*parts: dict[str, float], scale: tuple[float, ...] | None = None) -> dict[str, float]:
    """Sum of part dicts, each optionally scaled."""
    total = dict.fromkeys(TIME_PARTS, 0.0)
    for i, p in enumerate(parts):
        s = 1.0 if scale is None else scale[i]
        for name, value in p.items():
            total[name] = total.get(name, 0.0) + s * value
    return total
