"""A short real training run of one configuration, as our users' trainers run it. Runs inside the probe's
child process (autofit/probes/_child.py), on the GPU or on the CPU.

The model is built from its config on the meta device, materialized on the device with random weights
(transformers' own init; no weight files), quantized layer by layer through bitsandbytes when the
configuration says so (nf4 with double quantization and bf16 compute, or LLM.int8), given LoRA on all
linear layers through peft, gradient checkpointing through transformers (non-reentrant, input grads enabled
for PEFT), bf16 mixed precision through accelerate (DeepSpeed's bf16 engine when zero_stage > 0), and the
named optimizer. Warm-up steps, then measured optimizer steps, each with the configuration's accumulation
micro-steps, on synthetic batches of exactly seq_len tokens.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from typing import Any

from ..knobs import TrainingConfig
from ..models import ModelSpec
from ..trials import DetailKey


@dataclass
class StepTimes:
    warmup_s: list[float] = field(default_factory=list)
    measured_s: list[float] = field(default_factory=list)


def meta_model(model: ModelSpec, config: TrainingConfig, **overrides: Any):
    """The model on the meta device (no memory, no weights), its linear layers replaced by bitsandbytes ones
    through transformers' own replace_with_bnb_linear when `config` quantizes (lm_head stays bf16). Shared by
    the trace probe and the real probes, so both build exactly the same model."""
    import torch
    import transformers

    # ids outside a shrunk or synthetic vocab break init; no KV cache while training
    hf_config = model.hf_config(**{"use_cache": False, "pad_token_id": None, "bos_token_id": None,
                                   "eos_token_id": None, **overrides})
    with torch.device("meta"):
        net = transformers.AutoModelForCausalLM.from_config(hf_config, dtype=torch.bfloat16,
                                                            attn_implementation=config.attn_implementation)
    if config.quantization != "none":
        from transformers.integrations.bitsandbytes import replace_with_bnb_linear

        quant = transformers.BitsAndBytesConfig(
            load_in_4bit=config.quantization == "nf4", load_in_8bit=config.quantization == "int8",
            bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=torch.bfloat16)
        replace_with_bnb_linear(net, modules_to_not_convert=["lm_head"], quantization_config=quant)
        # marked as transformers' bitsandbytes quantizers mark a model they load: peft then wraps these layers in
        # its bitsandbytes LoRA layers (lora.bnb.Linear4bit / Linear8bitLt), exactly as for our users
        setattr(net, "is_loaded_in_4bit" if config.quantization == "nf4" else "is_loaded_in_8bit", True)
        net.is_quantized, net.quantization_method = True, "bitsandbytes"
    return net


@dataclass(frozen=True)
class ParameterSharing:
    """Which parameters a model shares (tied input/output embeddings, shared experts: one Parameter under
    several names) and how many distinct parameter elements it has, read from the model as built on meta."""

    groups: tuple[tuple[str, ...], ...]
    count: int


def parameter_sharing(net) -> ParameterSharing:
    """The sharing of `net` as it stands (call on the meta-built model, before materializing it)."""
    names_by_param: dict[int, list[str]] = {}
    for name, param in net.named_parameters(remove_duplicate=False):
        names_by_param.setdefault(id(param), []).append(name)
    return ParameterSharing(groups=tuple(tuple(n) for n in names_by_param.values() if len(n) > 1),
                            count=logical_parameter_count(net))


def logical_parameter_count(net) -> int:
    """Distinct parameter elements, a quantized linear weight counted as its in x out elements (packed, a 4-bit
    weight holds half as many bytes as elements), so the count is the same before and after quantizing."""
    quantized_weights = {}
    for module in net.modules():
        if type(module).__name__ in ("Linear4bit", "Linear8bitLt") and hasattr(module, "in_features"):
            quantized_weights[id(module.weight)] = module.in_features * module.out_features
    return sum(quantized_weights.get(id(p), p.numel()) for p in net.parameters())


def restore_parameter_sharing(net, expected: ParameterSharing) -> None:
    """Re-tie what materializing untied, with the model's own tie_weights(): `to_empty()` gives each module a
    new Parameter, so a tied lm_head would otherwise be a second vocab x hidden matrix (and, trained, a second
    gradient and Adam state). Then check that every group the meta-built model shared is one Parameter again
    and that the parameter count is the model's own; raise AutofitError naming what differs."""
    from ..errors import AutofitError

    base = net.get_base_model() if hasattr(net, "get_base_model") else net
    if expected.groups and hasattr(base, "tie_weights"):
        base.tie_weights()
    params = dict(net.named_parameters(remove_duplicate=False))
    broken = [group for group in expected.groups if len({id(params.get(name)) for name in group}) != 1]
    count = logical_parameter_count(net)
    if broken or count != expected.count:
        what = f"parameters {', '.join(' = '.join(g) for g in broken)} are no longer shared; " if broken else ""
        raise AutofitError(f"{type(base).__name__}: materializing the model changed it: {what}"
                           f"{count:,} parameters instead of the model's {expected.count:,}")


@contextlib.contextmanager
def cuda_autocast_view():
    """While active, `torch.is_autocast_enabled()` asked without a device (which means CUDA) answers for the CPU's
    autocast. peft's bitsandbytes LoRA layers ask it to decide whether to cast activations to the adapters' fp32;
    on the GPU the answer is yes, so a CPU run (trace or real CPU probe) standing in for the GPU must see the same."""
    import torch

    original = torch.is_autocast_enabled

    def is_autocast_enabled(device_type=None):
        return original("cpu") if device_type is None else original(device_type)

    torch.is_autocast_enabled = is_autocast_enabled
    try:
        yield
    finally:
        torch.is_autocast_enabled = original


def add_lora(net, config: TrainingConfig):
    """peft LoRA on all linear layers at the configuration's rank and lora_alpha, adapters in fp32."""
    if not config.is_lora:
        return net
    import peft

    lora = peft.LoraConfig(r=config.lora_rank, lora_alpha=config.lora_alpha, lora_dropout=0.0,
                           target_modules="all-linear", task_type="CAUSAL_LM")
    return peft.get_peft_model(net, lora)


def build_model(model: ModelSpec, config: TrainingConfig, device: str):
    """The model on `device`, random weights, quantized and LoRA-wrapped as `config` says. A quantized model is
    built the way a quantizing loader builds it: one linear layer at a time in bf16, quantized at once, so the
    whole model never sits on the device in bf16 (a 32B QLoRA model must build on a 24 GB card)."""
    import bitsandbytes as bnb
    import torch

    net = meta_model(model, config)
    sharing = parameter_sharing(net)
    quantized = [m for m in net.modules() if isinstance(m, (bnb.nn.Linear4bit, bnb.nn.Linear8bitLt))]
    std = getattr(net.config, "initializer_range", 0.02)
    with torch.no_grad():
        for module in quantized:  # random bf16 weight, quantized before the next layer is made
            weight = torch.empty(module.weight.shape, dtype=torch.bfloat16, device=device).normal_(0.0, std)
            params: bnb.nn.Params4bit | bnb.nn.Int8Params
            if isinstance(module, bnb.nn.Linear4bit):
                params = bnb.nn.Params4bit(weight, requires_grad=False, quant_type="nf4", compress_statistics=True,
                                           quant_storage=torch.uint8, module=module)
            else:
                params = bnb.nn.Int8Params(weight.to(torch.float16), requires_grad=False, has_fp16_weights=False)
            del weight
            module.weight = params._quantize(device)
            if module.bias is not None:
                module.bias = torch.nn.Parameter(torch.zeros(module.bias.shape, dtype=torch.bfloat16, device=device),
                                                 requires_grad=False)
            # init_weights below leaves it alone (a plain flag; torch types Module attributes as Tensor | Module)
            module._is_hf_initialized = True  # type: ignore[assignment]
        done = set(map(id, quantized))
        for module in net.modules():
            if id(module) not in done:
                module.to_empty(device=device, recurse=False)
        net.init_weights()  # random weights for the rest, and the real rotary buffers (it also ties weights)
    restore_parameter_sharing(net, sharing)
    net = add_lora(net, config)
    if config.gradient_checkpointing:
        net.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        if config.is_lora:
            net.enable_input_require_grads()
    net.train()
    return net


def make_optimizer(name: str, params, device: str):
    """The optimizer the knob names: torch AdamW with foreach (what torch picks on CUDA), bitsandbytes 8-bit
    AdamW, or its paged variant (CUDA unified memory; on the CPU its unpaged twin, the same 8-bit state)."""
    import torch

    if name == "adamw_torch":
        return torch.optim.AdamW(params, lr=1e-5, foreach=True)
    import bitsandbytes as bnb

    if name == "paged_adamw_8bit" and device.startswith("cuda"):
        return bnb.optim.PagedAdamW8bit(params, lr=1e-5)
    return bnb.optim.AdamW8bit(params, lr=1e-5)


DEEPSPEED_INSTALL = 'pip install "autofit[deepspeed]"'


def deepspeed_missing(config: TrainingConfig) -> str | None:
    """Why a real run of `config` cannot start here: ZeRO needs DeepSpeed, an optional dependency (the trace
    probe models ZeRO without it). None when DeepSpeed is not needed or is installed."""
    import importlib.util

    if config.zero_stage == 0 or importlib.util.find_spec("deepspeed") is not None:
        return None
    return f"ZeRO stage {config.zero_stage} needs DeepSpeed, which is not installed: {DEEPSPEED_INSTALL}"


def deepspeed_engine(net, config: TrainingConfig, gpus: int):
    """A real DeepSpeed engine with the config ds_config.json would hold (batch values filled in)."""
    import os
    import socket

    try:
        import deepspeed
    except ImportError as exc:  # installed but broken (or removed after the parent looked): one line, not a trace
        raise ImportError(f"ZeRO stage {config.zero_stage} needs DeepSpeed, which cannot be imported ({exc}): "
                          f"{DEEPSPEED_INSTALL}") from None

    if "RANK" not in os.environ:  # one process without a launcher: a world of one
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        os.environ.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))

    from ..exports import ExportContext, deepspeed_config

    ctx = ExportContext(model_ref="", model_name="", template=None, config=config, peak_memory_gib=0.0,
                        tokens_per_s=0.0, probe="cuda", estimated=False, gpu_mem="", usable_budget_gib=0.0, gpus=gpus)
    ds = deepspeed_config(ctx)
    if ds is None:
        raise ValueError("deepspeed_engine needs zero_stage > 0")
    ds.update(train_micro_batch_size_per_gpu=config.per_device_train_batch_size,
              gradient_accumulation_steps=config.gradient_accumulation_steps,
              train_batch_size=config.per_device_train_batch_size * config.gradient_accumulation_steps * gpus,
              gradient_clipping=1.0, bf16={"enabled": True}, fp16={"enabled": False})
    ds.setdefault("optimizer", {"type": "AdamW", "params": {"lr": 1e-5}})
    ds["optimizer"]["params"] = {"lr": 1e-5}
    trainable = [p for p in net.parameters() if p.requires_grad]
    engine, _, _, _ = deepspeed.initialize(model=net, model_parameters=trainable, config=ds)
    return engine


def run_steps(net, config: TrainingConfig, device: str, vocab_size: int, warmup: int, measured: int,
              gpus: int = 1, on_built=None) -> StepTimes:
    """Warm-up then measured optimizer steps; returns each step's wall time (synchronized on CUDA)."""
    import torch

    cuda = device.startswith("cuda")
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    batch, seq, ga = config.per_device_train_batch_size, config.seq_len, config.gradient_accumulation_steps
    ids = torch.randint(0, vocab_size, (batch, seq), device=device)
    times = StepTimes()
    if config.zero_stage > 0:
        # ZeRO-1/2: the model sits whole on the GPU before initialize in a real run too, so the engine's buffers
        # and optimizer state count from here. ZeRO-3: a real run loads under zero.Init and never holds the whole
        # model; this probe built it whole, so it counts from after initialize has partitioned (and offloaded) it.
        if on_built and config.zero_stage < 3:
            on_built()
        engine = deepspeed_engine(net, config, gpus)
        if on_built and config.zero_stage == 3:
            on_built()

        def step():
            for _ in range(ga):
                loss = engine(input_ids=ids, labels=ids).loss
                engine.backward(loss)
                engine.step()
    else:
        from accelerate import Accelerator

        accelerator = Accelerator(mixed_precision="bf16", cpu=not cuda, gradient_accumulation_steps=ga)
        trainable = [p for p in net.parameters() if p.requires_grad]
        optimizer = make_optimizer(config.optimizer, trainable, device)
        net, optimizer = accelerator.prepare(net, optimizer)
        if on_built:
            on_built()

        def step():
            for _ in range(ga):
                with accelerator.accumulate(net):
                    loss = net(input_ids=ids, labels=ids).loss
                    accelerator.backward(loss)
                    del loss
                    optimizer.step()
                    optimizer.zero_grad(set_to_none=True)

    with contextlib.nullcontext() if cuda else cuda_autocast_view():
        for phase, count in ((times.warmup_s, warmup), (times.measured_s, measured)):
            for _ in range(count):
                sync()
                started = time.perf_counter()
                step()
                sync()
                phase.append(time.perf_counter() - started)
    return times


def is_oom(exc: BaseException) -> bool:
    """An out-of-memory error from torch, bitsandbytes or DeepSpeed."""
    import torch

    if isinstance(exc, torch.OutOfMemoryError):
        return True
    text = f"{type(exc).__name__}: {exc}".lower()
    return "out of memory" in text or "cuda_error_out_of_memory" in text or "outofmemory" in text


def summary(times: StepTimes, config: TrainingConfig, gpus: int) -> dict[str, Any]:
    import statistics

    step_s = statistics.median(times.measured_s)
    tokens = config.per_device_train_batch_size * config.seq_len * config.gradient_accumulation_steps * gpus
    return {"step_time_s": step_s, "tokens_per_s": tokens / step_s, DetailKey.MEASURED_STEPS_S: times.measured_s,
            "warmup_steps_s": times.warmup_s}
