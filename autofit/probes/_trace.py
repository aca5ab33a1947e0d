"""The trace probe: a full training step of the real model on fake tensors, every byte counted.

The model is built from its config on the meta device (no weights, no downloads); bitsandbytes replaces
its linear layers when the configuration quantizes (transformers' own replace_with_bnb_linear, lm_head
kept in bf16), peft adds LoRA to all linear layers (adapters in fp32, as peft's autocast_adapter_dtype
does), and the whole thing is materialized under FakeTensorMode. Two optimizer steps then run under bf16
autocast with the real torch / bitsandbytes optimizer: the first, on zero gradients, only creates the
optimizer state; the second is traced whole (forward, loss, backward, optimizer step; with gradient
accumulation, its second micro-step also starts with gradients held).
`StepTracker` records the peak of each phase and what was live at that peak.

All decoder layers of a model are alike, so the step is traced at two small depths (one and two periods
of the model's layer pattern) and every phase's bytes and time are extrapolated linearly to the real
depth; models of three layers or fewer are traced whole. The backward's peak is kept apart for the decoder layer
backpropagated first (what the loss left, every layer's saved inputs) and the one backpropagated last (every other
layer's gradients): each is linear in the depth, their maximum is not. The test suite checks the extrapolation
against a whole trace, and bench/validate_cpu_matrix.py the trace against real CPU steps of many architectures.

Parameters the model shares (tied embeddings) are re-tied after materializing and checked against the model
built on meta; transformers' packed-sequence detection, which cannot read fake position ids, is answered as a
real run of unpacked batches answers it.

What a trace cannot see is modelled in one place each: ZeRO and offload (_zero.py), the CUDA runtime
reserve (autofit/budget.py), allocator rounding and kernel workspaces (_memtrack.py).
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
import warnings
from dataclasses import replace
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from .. import cache as disk_cache
from ..gpus import GpuSpec
from ..knobs import TrainingConfig, traced_config
from ..memory_categories import CATEGORIES
from ..models import ModelSpec
from ..runtime import runtime_constants
from ..units import GIB
from ..trials import DetailKey, Outcome
from ._base import Probe, ProbeContext, ProbeResult
from ._perf import TIME_PARTS, OpKey, PerfModel, add_parts
from ._records import PhaseRecord, StepTrace
from ._training import (add_lora, cuda_autocast_view, make_optimizer, meta_model, parameter_sharing,
                        restore_parameter_sharing)
from ._zero import ModelSizes, apply_zero, zero_step_time_parts, zero_transfer_seconds

if TYPE_CHECKING:
    from ._memtrack import StepTracker


def _layer_period(config: dict) -> int:
    """Length of the repeating pattern of decoder layer types (1 when all layers are alike)."""
    types = config.get("layer_types")
    if not types:
        return 1
    for period in range(1, len(types) + 1):
        if all(types[i] == types[i % period] for i in range(len(types))):
            return period
    return len(types)


def _quiet():
    stack = contextlib.ExitStack()
    stack.enter_context(warnings.catch_warnings())
    warnings.simplefilter("ignore")
    for name in ("transformers", "peft", "bitsandbytes"):
        logger = logging.getLogger(name)
        old = logger.level
        logger.setLevel(logging.ERROR)
        stack.callback(logger.setLevel, old)
    return stack


def _build_model(model: ModelSpec, config: TrainingConfig, depth: int):
    """The model at `depth` layers on the meta device, quantized and LoRA-wrapped as `config` says."""
    overrides: dict[str, Any] = {"num_hidden_layers": depth}
    if model.config.get("layer_types"):
        overrides["layer_types"] = list(model.config["layer_types"])[:depth]
    return add_lora(meta_model(model, config, **overrides), config)


@contextlib.contextmanager
def _unpacked_batches():
    """transformers decides whether a batch holds packed sequences by reading position ids, and on fake tensors
    (it cannot read them) assumes it may: it then builds a full attention mask, and SDPA with a mask repeats the
    KV heads of grouped-query attention, neither of which a real run does. A synthetic batch is one sequence per
    row, so answer what the real check finds: not packed."""
    import transformers.masking_utils as masking

    original = masking.find_packed_sequence_indices
    masking.find_packed_sequence_indices = lambda position_ids: None
    try:
        yield
    finally:
        masking.find_packed_sequence_indices = original


def _decoder_layers(net, depth: int) -> list:
    """The model's decoder layers in forward order (the classes transformers keeps whole across devices,
    _no_split_modules), or [] when they cannot be told apart."""
    base = net.get_base_model() if hasattr(net, "get_base_model") else net
    names = set(getattr(base, "_no_split_modules", None) or [])
    layers = [m for m in base.modules() if type(m).__name__ in names]
    return layers if len(layers) == depth else []


def _backward_position(index: int, depth: int) -> str:
    """Which part of the backward starts when the gradient reaches decoder layer `index`'s output: the layer
    backpropagated first (the top one), the one backpropagated last (layer 0, with the embeddings after it), or one
    in between. The peak of each is linear in the depth: the first holds what the loss left and the inputs every
    layer saved, the last the gradients of every other layer; a phase's peak over the whole backward is their
    maximum, which is not linear in the depth, so the two are extrapolated separately."""
    if index == depth - 1:
        return "first"
    return "last" if index == 0 else "middle"


def _mark_layer_backward(net, depth: int, tracker: StepTracker, micro: list[int]) -> list:
    """Forward hooks that start a sub-phase of the backward (`<backward>.first|middle|last`) when the gradient
    reaches each decoder layer's output. Only the outputs of the traced forward are hooked, not the forward a
    checkpointed layer recomputes during the backward. Returns the hook handles."""
    def hook_for(index: int):
        def forward_hook(module, args, output):
            tensor = output[0] if isinstance(output, (tuple, list)) else output
            forward = f"s2.m{micro[0]}.forward"
            if tracker.phase_name == forward and getattr(tensor, "requires_grad", False):
                name = f"s2.m{micro[0]}.backward.{_backward_position(index, depth)}"
                tensor.register_hook(lambda grad: tracker.start_phase(name, "other"))
        return forward_hook

    return [layer.register_forward_hook(hook_for(i)) for i, layer in enumerate(_decoder_layers(net, depth))]


def _fold_backward_parts(phases: dict[str, PhaseRecord], micro_steps: int) -> dict[str, PhaseRecord]:
    """Each backward's ops, FLOPs and bytes moved summed into its main record (its parts keep only their memory
    peaks); with one layer, the layer backpropagated first is also the last."""
    phases = dict(phases)
    for micro in range(micro_steps):
        head = f"s2.m{micro}.backward"
        parts = [n for n in phases if n.startswith(head + ".")]
        if not parts:
            continue
        total = phases[head]
        ops = dict(total.ops)
        for n in parts:
            for op, count in phases[n].ops.items():
                ops[op] = ops.get(op, 0.0) + count
        phases[head] = replace(total, ops=ops, flops=total.flops + sum(phases[n].flops for n in parts),
                               bytes_moved=total.bytes_moved + sum(phases[n].bytes_moved for n in parts))
        for n in parts:
            phases[n] = replace(phases[n], ops={}, flops=0.0, bytes_moved=0.0)
        if f"{head}.first" in phases and f"{head}.last" not in phases:
            phases[f"{head}.last"] = replace(phases[f"{head}.first"], breakdown=dict(phases[f"{head}.first"].breakdown))
    return phases


def _materialize_quantized(net) -> None:
    """Give each bitsandbytes layer fake quantized weights, exactly as bitsandbytes lays them out."""
    import bitsandbytes as bnb
    import torch

    for module in net.modules():
        if isinstance(module, bnb.nn.Linear4bit):
            weight = torch.empty(module.out_features, module.in_features, dtype=torch.bfloat16)
            packed, state = bnb.functional.quantize_4bit(weight, blocksize=64, compress_statistics=True,
                                                         quant_type="nf4", quant_storage=torch.uint8)
            # a plain Parameter: Params4bit cannot wrap a FakeTensor; forward only needs .quant_state
            param: Any = torch.nn.Parameter(packed, requires_grad=False)  # Any: bitsandbytes' attributes added
            param.quant_state = state
            module.weight = param
            module.quant_state = state
        elif isinstance(module, bnb.nn.Linear8bitLt):
            weight = torch.empty(module.out_features, module.in_features, dtype=torch.float16)
            cb, scb, _ = bnb.functional.int8_vectorwise_quant(weight)
            param = torch.nn.Parameter(cb, requires_grad=False)
            param.CB, param.SCB = cb, scb
            module.weight = param


def _make_optimizer(name: str, params):
    from torch._subclasses.fake_tensor import unset_fake_temporarily

    if name == "adamw_torch":
        return make_optimizer(name, params, "cpu")
    # bitsandbytes builds its quantization maps with data-dependent ops at construction: build them for real
    with unset_fake_temporarily():
        return make_optimizer(name, params, "cpu")


def _prime_bitsandbytes() -> None:
    """bitsandbytes builds its quantization maps with data-dependent ops: build them on real tensors."""
    import bitsandbytes as bnb
    import torch

    bnb.functional.quantize_4bit(torch.zeros(64, 64, dtype=torch.bfloat16), blocksize=64,
                                 compress_statistics=True, quant_type="nf4")


def trace_at_depth(model: ModelSpec, config: TrainingConfig, depth: int, round_bytes: int) -> StepTrace:
    """Trace two optimizer steps of `config` on the model cut to `depth` decoder layers."""
    import torch
    from torch._subclasses.fake_tensor import FakeTensorMode

    from ._memtrack import StepTracker  # imports torch: only a trace needs it, not a trace read from the cache

    started = time.perf_counter()
    with _quiet():
        net = _build_model(model, config, depth)
        sharing = parameter_sharing(net)
        if config.quantization != "none" or config.optimizer != "adamw_torch":
            _prime_bitsandbytes()
        tracker = StepTracker(vocab_size=model.vocab_size, round_bytes=round_bytes)
        batch, seq, ga = config.per_device_train_batch_size, config.seq_len, config.gradient_accumulation_steps
        with FakeTensorMode(allow_non_fake_inputs=True), tracker, _unpacked_batches():
            net.to_empty(device="cpu")
            restore_parameter_sharing(net, sharing)  # to_empty() unties tied embeddings: a second lm_head otherwise
            _materialize_quantized(net)
            if config.gradient_checkpointing:
                net.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
                if config.is_lora:
                    net.enable_input_require_grads()  # what peft/LLaMA-Factory do so checkpointed LoRA gets grads
            net.train()
            params = list(net.parameters())
            trainable = [p for p in params if p.requires_grad]
            weight_bytes = sum(p.numel() * p.element_size() for p in params)
            for p in trainable:
                p.register_post_accumulate_grad_hook(lambda param: tracker.retag(param.grad, "gradients"))
            optimizer = _make_optimizer(config.optimizer, trainable)
            ids = torch.randint(0, model.vocab_size, (batch, seq))
            micro_traced = min(ga, 2)
            current_micro = [0]
            hooks = _mark_layer_backward(net, depth, tracker, current_micro)
            # Step 1 only has to create the optimizer state: an optimizer step on zero gradients creates
            # exactly the tensors a real first step would, without tracing a forward and backward.
            tracker.start_phase("s1.opt", "gradients")
            for p in trainable:
                p.grad = torch.zeros_like(p)
            tracker.start_phase("s1.opt", "other")
            optimizer.step()
            tracker.retag_phase_survivors("optimizer")
            optimizer.zero_grad(set_to_none=True)
            # Step 2, the one measured: with accumulation, its second micro-step starts with gradients held.
            for micro in range(micro_traced):
                current_micro[0] = micro
                tracker.start_phase(f"s2.m{micro}.forward", "activations")
                with cuda_autocast_view():  # forward and the backward's checkpoint recomputation alike
                    with torch.autocast("cpu", dtype=torch.bfloat16):
                        loss = net(input_ids=ids, labels=ids).loss / ga  # outputs (logits) dropped, as Trainer does
                    tracker.start_phase(f"s2.m{micro}.backward", "other")
                    loss.backward()
                    del loss
            tracker.start_phase("s2.opt", "other")
            optimizer.step()
            tracker.retag_phase_survivors("optimizer")
            optimizer.zero_grad(set_to_none=True)
            for handle in hooks:
                handle.remove()
            phases = _fold_backward_parts(tracker.phases, micro_traced)
    return StepTrace(depth=depth, phases=phases, trainable_params=float(sum(p.numel() for p in trainable)),
                     total_params=float(sum(p.numel() for p in params)), weight_bytes=float(weight_bytes),
                     micro_steps_traced=micro_traced, wall_s=time.perf_counter() - started, depths_traced=(depth,))


def _extrapolate(a: StepTrace, b: StepTrace, depth: int) -> StepTrace:
    """Every quantity of traces `a` and `b` (two depths) continued linearly to `depth`."""
    scale = (depth - a.depth) / (b.depth - a.depth)

    def line(x: float, y: float) -> float:
        return x + (y - x) * scale

    phases = {}
    for name, pa in a.phases.items():
        if name not in b.phases:  # a backward's middle layers: their peaks lie between its first and last
            continue
        pb = b.phases[name]
        breakdown = {c: line(pa.breakdown.get(c, 0), pb.breakdown.get(c, 0)) for c in CATEGORIES}
        # op counts continue linearly too: per-layer ops double from one period to two, the rest stay; an op
        # whose size grows with depth (a foreach over all parameters) mixes its two sizes linearly
        ops = {op: line(pa.ops.get(op, 0.0), pb.ops.get(op, 0.0)) for op in pa.ops.keys() | pb.ops.keys()}
        phases[name] = PhaseRecord(peak_bytes=sum(breakdown.values()), breakdown=breakdown,
                                   flops=line(pa.flops, pb.flops), bytes_moved=line(pa.bytes_moved, pb.bytes_moved),
                                   ops={op: n for op, n in ops.items() if n})
    return StepTrace(depth=depth, phases=phases, trainable_params=line(a.trainable_params, b.trainable_params),
                     total_params=line(a.total_params, b.total_params),
                     weight_bytes=line(a.weight_bytes, b.weight_bytes), micro_steps_traced=a.micro_steps_traced,
                     wall_s=a.wall_s + b.wall_s, depths_traced=(a.depth, b.depth))


@lru_cache(maxsize=512)
def _trace_cached(model_json: str, name: str, config: TrainingConfig, round_bytes: int) -> StepTrace:
    """The trace, from this process's memory, else from the on-disk cache (autofit/cache.py), else traced."""
    key = {"model": model_json, "name": name, "config": config.to_dict(), "round_bytes": round_bytes}
    stored = disk_cache.get("trace", key)
    if stored is not None:
        try:
            return StepTrace.from_json(stored)
        except (KeyError, TypeError, ValueError):  # an entry of another layout: trace again
            pass
    trace = _trace_uncached(model_json, name, config, round_bytes)
    disk_cache.put("trace", key, trace.to_json())
    return trace


def _trace_uncached(model_json: str, name: str, config: TrainingConfig, round_bytes: int) -> StepTrace:
    model = ModelSpec(name=name, config=json.loads(model_json), hf_ref=name)
    depth = model.num_layers
    period = _layer_period(model.config)
    # the first period differs from the rest (DeepSeek's dense first layers): extrapolate from two and three
    first = 2 if _first_period_differs(model_json, name, config.attn_implementation, period) else 1
    if depth <= 3 or depth <= (first + 1) * period:
        return trace_at_depth(model, config, depth, round_bytes)
    small = trace_at_depth(model, config, first * period, round_bytes)
    large = trace_at_depth(model, config, (first + 1) * period, round_bytes)
    return _extrapolate(small, large, depth)


@lru_cache(maxsize=64)
def _first_period_differs(model_json: str, name: str, attn_implementation: str, period: int) -> bool:
    """Whether a decoder layer of the first period has other parameters (names, shapes) than its twin one period
    later, on the model built on meta at two periods."""
    from ..space import SearchSpace

    model = ModelSpec(name=name, config=json.loads(model_json), hf_ref=name)
    config = SearchSpace.load().default_config().replace(quantization="none", lora_rank=0,
                                                         attn_implementation=attn_implementation)
    overrides: dict[str, Any] = {"num_hidden_layers": 2 * period}
    if model.config.get("layer_types"):
        overrides["layer_types"] = list(model.config["layer_types"])[:2 * period]
    with _quiet():
        net = meta_model(model, config, **overrides)
    layers = _decoder_layers(net, 2 * period)
    if not layers:
        return False

    def shapes(layer):
        return [(name, tuple(p.shape)) for name, p in layer.named_parameters()]

    return any(shapes(layers[i]) != shapes(layers[i + period]) for i in range(period))


def trace_step(model: ModelSpec, config: TrainingConfig, gpu: GpuSpec | None = None) -> StepTrace:
    """The traced (extrapolated) training step of `config`. Knobs that do not change what is traced (ZeRO,
    offload, the allocator: knobs.yaml trace_invariant) and gradient accumulation beyond two micro-steps (it only
    repeats them: trace_max) are left out of the cache key, as are the number of GPUs and the card (priced
    afterwards, by the performance model)."""
    return _traced(model, traced_config(config), int(runtime_constants()["allocator_round_bytes"]))


def _traced(model: ModelSpec, config: TrainingConfig, round_bytes: int) -> StepTrace:
    """The cached trace; a model transformers, peft or bitsandbytes cannot run on fake tensors is an
    AutofitError naming the model type and the first line of the reason (one line, no traceback)."""
    from ..errors import AutofitError

    try:
        return _trace_cached(json.dumps(model.config, sort_keys=True), model.name, config, round_bytes)
    except AutofitError:
        raise
    except Exception as exc:  # noqa: BLE001 - any library error while building or stepping the model
        reason = (str(exc).strip().splitlines() or [""])[0][:300]
        raise AutofitError(f"cannot trace {model.name} (model_type {model.config.get('model_type')}): "
                           f"{type(exc).__name__}: {reason}") from None


def traced_peak_bytes(model: ModelSpec, config: TrainingConfig, round_bytes: int = 1) -> tuple[float, StepTrace]:
    """Peak live tensor bytes of one traced training step (zero_stage 0, the model's own depth) and the trace.
    `round_bytes` 1 counts bytes as the CPU allocator does (no block rounding): what bench/validate_cpu_matrix.py
    compares with a real CPU step; the probe itself rounds as the CUDA allocator does (runtime.yaml)."""
    if config.zero_stage:
        raise ValueError("traced_peak_bytes is for zero_stage 0")
    trace = _traced(model, traced_config(config), round_bytes)
    return max(sum(r.breakdown.values()) for name, r in trace.phases.items() if name != "init"), trace


def micro_step_ops(trace: StepTrace) -> dict[OpKey, float]:
    """The ops of the last traced micro-step, forward and backward together ({op: count})."""
    last = trace.micro_steps_traced - 1
    ops = dict(trace.phases[f"s2.m{last}.forward"].ops)
    for op, n in trace.phases[f"s2.m{last}.backward"].ops.items():
        ops[op] = ops.get(op, 0.0) + n
    return ops


def step_time_parts(trace: StepTrace, ga: int, perf: PerfModel, micro_step_host_s: float = 0.0,
                    micro_step_transfer_s: float = 0.0) -> dict[str, float]:
    """Seconds per optimizer step by part (_perf.TIME_PARTS), without ZeRO: the last traced micro-step
    (forward and backward priced together, since the host runs ahead of the GPU across both) repeated
    `ga` times, plus the optimizer step. `micro_step_host_s`: host time per micro-step the trace misses;
    `micro_step_transfer_s`: DeepSpeed's transfers per micro-step, which the host's time overlaps too."""
    return add_parts(perf.price(micro_step_ops(trace), micro_step_host_s, micro_step_transfer_s),
                     perf.price(trace.phases["s2.opt"].ops), scale=(float(ga), 1.0))


def zero3_hook_host_s(trace: StepTrace, config: TrainingConfig, constants: dict) -> float:
    """Host seconds per micro-step that DeepSpeed ZeRO-3's module hooks add: before and after each module runs
    (forward, checkpointing's recompute, backward) it fetches and releases that module's partitioned
    parameters in Python. Counted per parameter-holding matmul module (each traced forward GEMM is one
    nn.Linear, LoRA adapters included); the norms and containers around them are folded into the constant."""
    if config.zero_stage != 3:
        return 0.0
    last = trace.micro_steps_traced - 1
    modules = sum(n for op, n in trace.phases[f"s2.m{last}.forward"].ops.items()
                  if op.kind in ("gemm", "gemm_4bit") and not op.recompute)
    passes = 3 if config.gradient_checkpointing else 2
    return modules * passes * float(constants["zero3_module_hook_us"]) * 1e-6


def model_sizes(trace: StepTrace, model: ModelSpec) -> ModelSizes:
    return ModelSizes(trainable_params=trace.trainable_params, total_params=trace.total_params,
                      layer_weight_bytes=trace.weight_bytes / max(1, model.num_layers),
                      hidden_size=int(model.config.get("hidden_size", 0)), weight_bytes=trace.weight_bytes)


def estimate_step_time(trace: StepTrace, model: ModelSpec, config: TrainingConfig, gpu: GpuSpec, gpus: int,
                       constants: dict) -> dict[str, float]:
    """Seconds per optimizer step by part on `gpu`: the traced step priced by the performance model, plus
    what ZeRO and offload add (_zero.py)."""
    sizes = model_sizes(trace, model)
    during_micro_steps, _ = zero_transfer_seconds(config, sizes, gpu, gpus, constants)
    ga = config.gradient_accumulation_steps
    traced = step_time_parts(trace, ga, PerfModel.for_gpu(gpu, constants), zero3_hook_host_s(trace, config, constants),
                             during_micro_steps / ga)
    if config.zero_stage > 0:
        traced["optimizer"] = 0.0  # DeepSpeed runs its own Adam, priced in _zero.py
    return add_parts(traced, zero_step_time_parts(config, sizes, gpu, gpus, constants))


class TraceProbe(Probe):
    """Peak memory and tokens/s of a configuration from a traced step on fake tensors (no GPU needed).
    Peak memory is what torch.cuda.max_memory_allocated would report; tokens/s is the performance model's
    estimate (_perf.py), with the step's time split by part in details["time_breakdown_s"]."""

    name = "trace"
    estimated = True

    def run(self, model: ModelSpec, config: TrainingConfig, context: ProbeContext) -> ProbeResult:
        started = time.perf_counter()
        trace = trace_step(model, config, context.gpu)
        sizes = model_sizes(trace, model)
        best_phase, best = None, None
        for name, record in trace.phases.items():
            if name == "init":  # materializing fake weights is not how a trainer loads them; skip it
                continue
            adjusted = apply_zero(record.breakdown, name, config, sizes, context.gpus)
            if best is None or sum(adjusted.values()) >= sum(best.values()):  # ties: the later phase
                best_phase, best = name, adjusted
        if best is None:
            raise ValueError(f"trace of {model.name} recorded no phase after init")
        peak = sum(best.values())
        parts = estimate_step_time(trace, model, config, context.gpu, context.gpus, runtime_constants())
        step_s = sum(parts.values())
        tokens = config.per_device_train_batch_size * config.seq_len * config.gradient_accumulation_steps
        tokens_per_s = tokens * max(1, context.gpus) / step_s
        state = Outcome.OK if peak <= context.usable_budget_bytes else Outcome.OOM
        return ProbeResult(
            state=state, probe=self.name, estimated=True, peak_memory_gib=peak / GIB,
            tokens_per_s=tokens_per_s, step_time_s=step_s,
            breakdown_gib={c: best[c] / GIB for c in CATEGORIES}, duration_s=time.perf_counter() - started,
            error=None if state == Outcome.OK else f"estimated peak {peak / GIB:.2f} GiB exceeds the usable budget "
                                           f"{context.usable_budget_bytes / GIB:.2f} GiB",
            details={"peak_phase": best_phase, "depths_traced": list(trace.depths_traced),
                     "trainable_params": int(trace.trainable_params), "gpu": context.gpu.key,
                     "step_flops": _step_flops(trace, config.gradient_accumulation_steps),
                     DetailKey.TIME_BREAKDOWN_S: {p: round(parts[p], 6) for p in TIME_PARTS}})


def _step_flops(trace: StepTrace, ga: int) -> float:
    last = trace.micro_steps_traced - 1
    micro = trace.phases[f"s2.m{last}.forward"].flops + trace.phases[f"s2.m{last}.backward"].flops
    return ga * micro + trace.phases["s2.opt"].flops
