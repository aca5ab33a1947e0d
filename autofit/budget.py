"""The memory a configuration may use: --gpu-mem minus the CUDA runtime reserve minus headroom."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from .errors import AutofitError
from .runtime import runtime_constants
from .units import GIB, parse_size
from .validation import check_gpu_mem

if TYPE_CHECKING:
    from .probes import ProbeCapabilities


@dataclass(frozen=True)
class Budget:
    gpu_mem_text: str  # as the person wrote it, e.g. "24GB"
    gpu_mem_bytes: int
    reserve_bytes: int  # CUDA context and library workspaces, outside PyTorch's allocator
    reserve_source: str  # "measured" or "default"
    headroom: float  # share of gpu_mem kept free

    @property
    def usable_bytes(self) -> int:
        return int(self.gpu_mem_bytes - self.reserve_bytes - self.headroom * self.gpu_mem_bytes)

    @property
    def usable_gib(self) -> float:
        return self.usable_bytes / GIB

    @property
    def gpu_mem_gib(self) -> float:
        return self.gpu_mem_bytes / GIB


def measure_cuda_reserve() -> int | None:
    """Device memory the CUDA runtime takes outside PyTorch's allocator once a context, cuBLAS and a
    kernel have run, on GPU 0 (read in a child process); None without a CUDA GPU."""
    from .gpus import cuda_device_info

    info = cuda_device_info()
    return None if info is None else int(info["reserve_bytes"])


def make_budget(gpu_mem: str, headroom: float | None = None, measure: bool = False,
                runtime_reserve: bool = True) -> Budget:
    """The Budget for --gpu-mem and --headroom; the reserve is measured when `measure` and a GPU is present,
    and left out (`runtime_reserve` False) for CPU probes, which have no CUDA runtime."""
    total = parse_size(gpu_mem)
    check_gpu_mem(total, gpu_mem)
    constants = runtime_constants()
    headroom = constants["headroom"] if headroom is None else headroom
    if not 0 <= headroom < 1:  # NaN fails this too
        raise AutofitError(f"--headroom must be a fraction in [0, 1), got {headroom}")
    measured = measure_cuda_reserve() if measure else None
    if not runtime_reserve:
        reserve, source = 0, "none (CPU)"
    elif measured is not None:
        reserve, source = measured, "measured"
    else:
        reserve, source = int(constants["cuda_runtime_reserve_gib"] * GIB), "default"
    budget = Budget(gpu_mem_text=gpu_mem, gpu_mem_bytes=total, reserve_bytes=reserve, reserve_source=source,
                    headroom=headroom)
    if budget.usable_bytes <= 0:
        raise AutofitError(f"--gpu-mem {gpu_mem} leaves nothing usable after the CUDA runtime reserve "
                           f"({reserve / GIB:.2f} GiB) and headroom ({headroom:.0%})")
    return budget


def probe_budget(gpu_mem: str, headroom: float | None, capabilities: ProbeCapabilities) -> Budget:
    """The budget a probe searches under, as it declares: a runtime reserve or none (CPU), measured on the
    visible GPU or data/runtime.yaml's."""
    return make_budget(gpu_mem, headroom, measure=capabilities.measures_reserve,
                       runtime_reserve=capabilities.runtime_reserve)
