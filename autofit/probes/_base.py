"""The probe interface: a configuration in, its peak memory and throughput out."""

from __future__ import annotations

import abc
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from ..gpus import GpuSpec
from ..knobs import TrainingConfig
from ..models import ModelSpec
from ..trials import Outcome

# the outcomes under their former names, for code written against autofit.probes; new code uses trials.Outcome
OK, OOM, INVALID, FAILED, TIMEOUT = Outcome.OK, Outcome.OOM, Outcome.INVALID, Outcome.FAILED, Outcome.TIMEOUT
OOM_PREDICTED, LOST, INTERRUPTED = Outcome.OOM_PREDICTED, Outcome.LOST, Outcome.INTERRUPTED


# knobs that change neither a trace's tensor bytes nor a CPU run: only a run on a CUDA device tells their values
# apart (the allocator's expandable segments cut fragmentation, not the bytes tensors hold)
DEVICE_ONLY_KNOBS = frozenset({"allocator"})


@dataclass(frozen=True)
class ProbeCapabilities:
    """What a probe can do, declared on its class (like Optuna's sampler hooks, with defaults): the search and
    the budget follow these, never the probe's name, so a probe given as --probe package.module:Class gets
    the behaviour it declares. The defaults describe an estimating probe that runs nothing on a device (the
    trace probe). Whether its figures are estimates is `Probe.estimated`."""

    device: Literal["none", "cpu", "cuda"] = "none"  # where it runs training steps; none: it estimates them
    # the usable budget leaves room for device memory outside the tensors (CUDA context, library workspaces);
    # on the CPU host and device memory are one, so there is none to leave
    runtime_reserve: bool = True
    measures_reserve: bool = False  # that reserve is measured on the visible GPU (else data/runtime.yaml's)
    # the DEVICE_ONLY_KNOBS it tells apart: searched only when the probe lists them, else held at the space's
    # default (unless --set pins them)
    device_knobs: frozenset[str] = frozenset()
    # knobs it cannot measure, held at the one value it can (unless --set pins them)
    fixed_knobs: Mapping[str, Any] = field(default_factory=dict)
    max_params: float | None = None  # the largest model (parameters) it accepts; None: any

    def unvaried_knobs(self) -> frozenset[str]:
        """Device-only knobs this probe cannot tell apart."""
        return DEVICE_ONLY_KNOBS - self.device_knobs


@dataclass(frozen=True)
class ProbeContext:
    """What a probe needs besides the configuration."""

    usable_budget_bytes: int  # memory a configuration may use (gpu-mem minus reserve and headroom)
    gpu: GpuSpec  # the card the throughput figure is for
    gpus: int = 1  # data-parallel world size ZeRO partitions over


@dataclass
class ProbeResult:
    """What one probe found. A trace's numbers are estimates (`estimated` True); a real probe's are measured."""

    state: Outcome  # ok | oom | failed | timeout (a screened probe: oom-predicted); a plain string is converted
    probe: str  # trace | cuda | cpu
    estimated: bool
    peak_memory_gib: float | None = None
    tokens_per_s: float | None = None
    step_time_s: float | None = None
    breakdown_gib: dict[str, float] = field(default_factory=dict)
    duration_s: float = 0.0
    error: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    # real probes: what was measured, and what the trace probe predicted for the same configuration
    peak_allocated_gib: float | None = None  # torch.cuda.max_memory_allocated (CPU: live tensor bytes)
    peak_reserved_gib: float | None = None  # torch.cuda.max_memory_reserved (CPU: same as allocated)
    predicted_peak_gib: float | None = None

    def __post_init__(self) -> None:
        self.state = Outcome(self.state)  # a probe of one's own may return "ok": one type from here on

    def figures(self) -> tuple[float, float]:
        """(peak GiB, tokens/s) of a result that has both, as every trace result has; ValueError otherwise."""
        if self.peak_memory_gib is None or self.tokens_per_s is None:
            raise ValueError(f"the {self.probe} probe's result ({self.state}) has no peak memory or tokens/s")
        return self.peak_memory_gib, self.tokens_per_s

    @property
    def prediction_error_pct(self) -> float | None:
        """(predicted - measured allocated) / measured allocated, in percent."""
        if self.predicted_peak_gib is None or not self.peak_allocated_gib:
            return None
        return 100.0 * (self.predicted_peak_gib - self.peak_allocated_gib) / self.peak_allocated_gib

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Probe(abc.ABC):
    """Measures (or, for the trace probe, estimates) one training configuration."""

    name: str = "probe"  # a label, stored with each trial and printed; no behaviour depends on it
    estimated: bool = False
    capabilities: ProbeCapabilities = ProbeCapabilities()  # immutable: one shared default is safe

    @abc.abstractmethod
    def run(self, model: ModelSpec, config: TrainingConfig, context: ProbeContext) -> ProbeResult:
        """Peak memory and tokens/s of `config`. Must not raise for an OOM: return state `oom`."""
