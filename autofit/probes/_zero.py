"""DeepSpeed ZeRO partitioning and CPU offload: the part of a training step that a single-process trace
cannot see, modelled here and only here.

The trace runs the step as plain PyTorch on one device: bf16 weights, torch AdamW state in the
parameters' dtype, foreach temporaries. With zero_stage > 0 DeepSpeed changes that as in the ZeRO paper
(Rajbhandari et al., 2020, section 3): with bf16 training it keeps an fp32 master copy of each trainable
parameter plus Adam's two fp32 moments (12 bytes per trainable parameter) and runs a fused Adam without
foreach temporaries. Over a data-parallel world of N GPUs:
  stage 1: optimizer state / N
  stage 2: + gradients / N
  stage 3: + parameters / N, plus a working set of gathered parameters (the layer being computed and the
           one prefetched: two layers' weights)
  offload=optimizer: optimizer state (and the fp32 gradients it consumes) live on the CPU; the GPU keeps a
           reduce bucket of gradients (DeepSpeed's "auto" reduce_bucket_size = hidden_size^2 elements)
  offload=all (stage 3): parameters also live on the CPU; the GPU keeps the working set only.
Activations, logits and backward temporaries are unchanged: ZeRO does not partition them.

Time: collectives move 2 bytes per element over the GPU-to-GPU link, added to the GPU's compute (no overlap
of collectives with kernels is assumed); offload moves gradients and parameters over the host link and runs
Adam on the CPU at host-memory speed. The host's own time (kernel launches, ZeRO-3's module hooks) runs
ahead of the GPU and overlaps both the kernels and the transfers issued during the micro-steps
(zero_transfer_seconds, PerfModel.price): it shows as overhead only beyond their sum. All of it is an estimate
and is labelled as such.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..gpus import GpuSpec
from ..knobs import TrainingConfig

MASTER_AND_MOMENTS_BYTES = 12  # fp32 master weight + exp_avg + exp_avg_sq per trainable parameter
BF16_BYTES = 2


@dataclass(frozen=True)
class ModelSizes:
    """Sizes of the traced model that the ZeRO model partitions (for the full depth)."""

    trainable_params: float
    total_params: float
    layer_weight_bytes: float  # one decoder layer's weights as stored (quantized or bf16)
    hidden_size: int
    weight_bytes: float = 0.0  # all weights as stored (what ZeRO-3 gathers or brings in from the host)


def apply_zero(breakdown: dict[str, float], phase: str, config: TrainingConfig, sizes: ModelSizes,
               gpus: int) -> dict[str, float]:
    """The per-category bytes of a traced phase peak as they would be under `config`'s ZeRO stage and offload."""
    if config.zero_stage == 0:
        return dict(breakdown)
    n = max(1, gpus)
    out = dict(breakdown)
    stage, offload = config.zero_stage, config.offload
    # optimizer state: DeepSpeed's fp32 master weights and moments replace torch AdamW's state
    out["optimizer"] = 0.0 if offload != "none" else MASTER_AND_MOMENTS_BYTES * sizes.trainable_params / n
    if phase.endswith(".opt"):
        out["other"] = 0.0  # DeepSpeed's fused / CPU Adam makes no foreach temporaries
    # gradients
    if offload != "none":
        out["gradients"] = min(breakdown["gradients"], BF16_BYTES * sizes.hidden_size**2)
    elif stage >= 2:
        out["gradients"] = breakdown["gradients"] / n
    # parameters
    working_set = 2 * sizes.layer_weight_bytes
    if stage == 3:
        if offload == "all":
            out["weights"] = min(breakdown["weights"], working_set)
        else:
            out["weights"] = breakdown["weights"] / n + (working_set if n > 1 else 0.0)
    return out


# DeepSpeed's fused Adam on the fp32 master copy, per trainable parameter per step: master weight, exp_avg and
# exp_avg_sq read and written (24 B), the fp32 gradient read (4 B), the bf16 weight written back (2 B)
GPU_ADAM_BYTES = 30
# ZeRO-1/2 per micro-step: each bf16 gradient read (2 B) and added into its fp32 partition (4 B read, 4 B written)
GRAD_ACCUMULATE_BYTES = 10


def zero_transfer_seconds(config: TrainingConfig, sizes: ModelSizes, gpu: GpuSpec, gpus: int,
                          constants: dict) -> tuple[float, float]:
    """Seconds per optimizer step of DeepSpeed's collectives and host transfers, split into those issued during
    the micro-steps (ZeRO-3's parameter gathers, ZeRO-2/3's gradient reduce-scatters, offload=all's parameter
    fetches) and those at the optimizer step (ZeRO-1's reduce-scatter, the updated parameters' all-gather,
    offloaded gradients and parameters). The first kind run on the GPU's side streams while the host is still
    launching the micro-step's kernels and hooks, so the host's time overlaps them (PerfModel.price)."""
    if config.zero_stage == 0:
        return 0.0, 0.0
    n = max(1, gpus)
    ga = config.gradient_accumulation_steps
    peer = gpu.peer_link_gbs * 1e9 * constants["collective_efficiency"]
    host = gpu.host_link_gbs * 1e9
    part = sizes.trainable_params / n
    # ZeRO-3 fetches parameters for the forward, the backward and, with checkpointing, the recompute
    gathers = 3 if config.gradient_checkpointing else 2
    weights = sizes.weight_bytes or BF16_BYTES * sizes.total_params
    during, at_step = 0.0, 0.0
    if n > 1:
        share = (n - 1) / n
        grad_bytes = BF16_BYTES * sizes.trainable_params * share
        # ZeRO-2/3 reduce-scatter gradients in every micro-step's backward, ZeRO-1 once per step
        if config.zero_stage >= 2:
            during += ga * grad_bytes / peer
        else:
            at_step += grad_bytes / peer
        at_step += grad_bytes / peer  # all-gather the updated parameters
        if config.zero_stage == 3:
            during += ga * gathers * weights * share / peer
    if config.offload != "none":
        at_step += 2 * BF16_BYTES * part / host  # gradients to the host, updated parameters back
    if config.offload == "all":
        during += ga * gathers * weights / n / host  # each rank's parameter share comes in from the host
    return during, at_step


def zero_step_time_parts(config: TrainingConfig, sizes: ModelSizes, gpu: GpuSpec, gpus: int,
                         constants: dict) -> dict[str, float]:
    """Seconds per optimizer step that DeepSpeed spends instead of (optimizer) or on top of (the rest) the traced
    plain-PyTorch step: its Adam (fused on the GPU, or DeepSpeedCPUAdam with offload) under "optimizer", gradient
    accumulation into fp32 partitions under "elementwise", collectives and host transfers under
    "offload_communication". The caller drops the traced optimizer time when zero_stage > 0."""
    parts = {"offload_communication": 0.0, "optimizer": 0.0, "elementwise": 0.0}
    if config.zero_stage == 0:
        return parts
    n = max(1, gpus)
    ga = config.gradient_accumulation_steps
    device = gpu.bandwidth_gbs * 1e9 * constants["bandwidth_efficiency"]
    part = sizes.trainable_params / n
    if config.offload != "none":
        parts["optimizer"] = part * constants["cpu_adam_bytes_per_param"] / (constants["cpu_adam_bandwidth_gbs"] * 1e9)
    else:
        parts["optimizer"] = part * GPU_ADAM_BYTES / device
        if config.zero_stage <= 2:
            parts["elementwise"] = ga * part * GRAD_ACCUMULATE_BYTES / device
    parts["offload_communication"] = sum(zero_transfer_seconds(config, sizes, gpu, gpus, constants))
    return parts
