"""Target GPU specs (data/gpus.yaml) and the choice of a card for throughput estimates."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from functools import cache
from importlib import resources

import yaml

from .errors import AutofitError
from .units import GIB


@dataclass(frozen=True)
class GpuSpec:
    key: str
    name: str
    memory_gib: float
    bf16_tflops: float
    bandwidth_gbs: float
    host_link_gbs: float
    peer_link_gbs: float
    match: tuple[str, ...]
    # Share of bf16 peak that FlashAttention-2's forward reaches on this card, where it differs from
    # runtime.yaml's attention_forward_efficiency (judged on the A100); None: runtime.yaml's figure.
    flash_attention_share: float | None = None
    # Share of bf16_tflops that large bf16 GEMMs (fp32 accumulate, as torch.matmul runs them) were measured to
    # reach on this card, where published measurements exist; None: runtime.yaml's gemm_max_efficiency.
    gemm_share: float | None = None


@cache
def gpu_specs() -> dict[str, GpuSpec]:
    data = yaml.safe_load(resources.files("autofit").joinpath("data/gpus.yaml").read_text())
    return {key: GpuSpec(key=key, **{**entry, "match": tuple(entry["match"])}) for key, entry in data.items()}


def get_gpu(key: str) -> GpuSpec:
    specs = gpu_specs()
    if key.lower() not in specs:
        raise AutofitError(f"unknown --gpu {key!r}; known cards: {', '.join(specs)}")
    return specs[key.lower()]


# Run in a child process: a context, the cuBLAS handle and its workspace, as every probe's process pays them.
_READ_DEVICE = """
import json, torch
a = torch.ones(256, 256, device="cuda", dtype=torch.bfloat16)
(a @ a).sum().item()
free, total = torch.cuda.mem_get_info()
print(json.dumps({"name": torch.cuda.get_device_name(0), "total_bytes": total,
                  "reserve_bytes": total - free - torch.cuda.memory_reserved()}))
"""


# what a Linux machine has when an NVIDIA (or ROCm) driver is loaded; without any of them torch sees no GPU
_GPU_DRIVER_PATHS = ("/proc/driver/nvidia/version", "/dev/nvidiactl", "/dev/kfd")


def _no_gpu_driver() -> bool:
    """True on Linux when no GPU driver is loaded, so torch cannot see a GPU: then the answer needs no torch
    import (seconds on a small machine). Elsewhere only torch can tell."""
    return sys.platform.startswith("linux") and not any(os.path.exists(p) for p in _GPU_DRIVER_PATHS)


def cuda_available() -> bool:
    """Whether torch sees a CUDA GPU (asks the driver; creates no context)."""
    if _no_gpu_driver():
        return False
    import torch

    return torch.cuda.is_available()


def cuda_device_count() -> int:
    if _no_gpu_driver():
        return 0
    import torch

    return torch.cuda.device_count()


@cache
def cuda_device_info() -> dict | None:
    """Name, total memory and CUDA runtime reserve (device memory in use outside PyTorch's allocator once a
    context, cuBLAS and a kernel have run) of CUDA GPU 0, or None without a CUDA GPU. Read in a short child
    process so that this one never holds a CUDA context: a search's own context would otherwise come out of
    every probe's memory on the card."""
    if not cuda_available():
        return None
    try:
        proc = subprocess.run([sys.executable, "-c", _READ_DEVICE], capture_output=True, text=True, timeout=300)
    except subprocess.TimeoutExpired:
        raise AutofitError("a CUDA GPU is visible but reading it took over 300 s") from None
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise AutofitError(f"a CUDA GPU is visible but could not be read: {last}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def cuda_device_name() -> str | None:
    """The name of CUDA GPU 0, or None without one: from NVML where it is installed (no CUDA context, works on
    a full or exclusive-mode card), else from torch."""
    if not cuda_available():
        return None
    import torch

    try:
        import pynvml

        name = pynvml.nvmlDeviceGetName(torch.cuda._get_pynvml_handler(0))  # private; maps CUDA_VISIBLE_DEVICES
        return name.decode() if isinstance(name, bytes) else name
    except Exception:  # noqa: BLE001 - no pynvml, or NVML cannot see the device
        return torch.cuda.get_device_name(0)


def detect_gpu() -> GpuSpec | None:
    """The spec of the CUDA GPU present, if any and known."""
    name = cuda_device_name()
    if name is None:
        return None
    # The longest matching substring wins: "A10" is also in "NVIDIA A100-SXM4-80GB", "L4" in "NVIDIA L40S".
    found = [(len(m), spec) for spec in gpu_specs().values() for m in spec.match if m in name]
    return max(found, key=lambda pair: pair[0])[1] if found else None


def default_gpu_for_budget(gpu_mem_bytes: int) -> GpuSpec:
    """A sensible card for a budget when none is named or present: the smallest listed card that has at
    least the budget, preferring the common one of each size (24 GB -> RTX 4090, 80 GB -> H100)."""
    preferred = ["rtx4090", "a100-40gb", "l40s", "h100", "h200"]
    specs = gpu_specs()
    for key in preferred:
        if specs[key].memory_gib * GIB >= gpu_mem_bytes * 0.99:
            return specs[key]
    return specs["h200"]
