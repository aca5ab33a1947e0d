"""Target GPU specs (data/gpus.yaml) and the choice of a card for throughput estimates."""

from __future__ import annotations

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


@cache
def gpu_specs() -> dict[str, GpuSpec]:
    data = yaml.safe_load(resources.files("autofit").joinpath("data/gpus.yaml").read_text())
    return {key: GpuSpec(key=key, **{**entry, "match": tuple(entry["match"])}) for key, entry in data.items()}


def get_gpu(key: str) -> GpuSpec:
    specs = gpu_specs()
    if key.lower() not in specs:
        raise AutofitError(f"unknown --gpu {key!r}; known cards: {', '.join(specs)}")
    return specs[key.lower()]


def detect_gpu() -> GpuSpec | None:
    """The spec of the CUDA GPU present, if any and known."""
    import torch

    if not torch.cuda.is_available():
        return None
    device_name = torch.cuda.get_device_name(0)
    for spec in gpu_specs().values():
        if any(m in device_name for m in spec.match):
            return spec
    return None


def default_gpu_for_budget(gpu_mem_bytes: int) -> GpuSpec:
    """A sensible card for a budget when none is named or present: the smallest listed card that has at
    least the budget, preferring the common one of each size (24 GB -> RTX 4090, 80 GB -> H100)."""
    preferred = ["rtx4090", "a100-40gb", "l40s", "h100", "h200"]
    specs = gpu_specs()
    for key in preferred:
        if specs[key].memory_gib * GIB >= gpu_mem_bytes * 0.99:
            return specs[key]
    return specs["h200"]
