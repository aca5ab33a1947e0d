"""Probes: one interface (`Probe`: a configuration in, peak memory and tokens/s out), several backends."""

from ..trials import EVALUATED
from ._base import (DEVICE_ONLY_KNOBS, FAILED, INTERRUPTED, INVALID, LOST, OK, OOM, OOM_PREDICTED, TIMEOUT, Probe,
                    ProbeCapabilities, ProbeContext, ProbeResult)
from ._real import (CPU_CAPABILITIES, CUDA_CAPABILITIES, ChildProcessProbe, CpuProbe, CudaProbe, ScreenedProbe,
                    default_timeout_s)
from ._trace import TraceProbe, trace_step

__all__ = ["Probe", "ProbeCapabilities", "CPU_CAPABILITIES", "CUDA_CAPABILITIES", "DEVICE_ONLY_KNOBS",
           "ProbeContext", "ProbeResult", "TraceProbe", "ChildProcessProbe", "CpuProbe", "CudaProbe",
           "ScreenedProbe",
           "default_timeout_s", "trace_step", "get_probe",
           "OK", "OOM", "INVALID", "FAILED", "TIMEOUT", "OOM_PREDICTED", "LOST", "INTERRUPTED", "EVALUATED",
           "PROBE_KINDS"]

PROBE_KINDS = ("auto", "trace", "cuda", "cpu")


def get_probe(kind: str, timeout_s: float | None = None, screen_margin: float | None = 0.10,
              cpu_threads: int | None = None) -> Probe:
    """The probe for --probe KIND. auto = cuda when a CUDA GPU is visible, else trace. Real probes (cuda,
    cpu) are screened by the trace probe unless `screen_margin` is None (--no-screen); either way each
    probed trial keeps the trace's prediction. `cpu_threads`: torch threads per CPU probe (default: every core;
    with several workers each gets its share, as oversubscribed threads make CPU timings meaningless)."""
    from ..errors import AutofitError
    from ..gpus import cuda_available

    if kind == "auto":
        kind = "cuda" if cuda_available() else "trace"
    if kind == "trace":
        return TraceProbe()
    if ":" in kind:  # package.module:Class - a Probe of one's own
        import importlib

        module_name, _, class_name = kind.partition(":")
        try:
            cls = getattr(importlib.import_module(module_name), class_name)
        except (ImportError, AttributeError) as exc:
            raise AutofitError(f"--probe {kind}: cannot load it ({exc})") from None
        if not (isinstance(cls, type) and issubclass(cls, Probe)):
            raise AutofitError(f"--probe {kind}: not a subclass of autofit.Probe")
        return cls()
    if kind in ("cuda", "cpu"):
        if kind == "cuda":
            if not cuda_available():
                raise AutofitError("--probe cuda: no CUDA GPU is visible; use --probe trace or --probe cpu")
        real = CudaProbe(timeout_s=timeout_s) if kind == "cuda" else CpuProbe(timeout_s=timeout_s, threads=cpu_threads)
        return ScreenedProbe(real, screen_margin)
    raise AutofitError(f"unknown --probe {kind!r}; choose one of {', '.join(PROBE_KINDS)} or package.module:Class")
