"""Probes: one interface (`Probe`: a configuration in, peak memory and tokens/s out), several backends."""

from ._base import FAILED, INVALID, OK, OOM, TIMEOUT, Probe, ProbeContext, ProbeResult
from ._trace import TraceProbe, trace_step

__all__ = ["Probe", "ProbeContext", "ProbeResult", "TraceProbe", "trace_step", "get_probe",
           "OK", "OOM", "INVALID", "FAILED", "TIMEOUT", "PROBE_KINDS"]

PROBE_KINDS = ("auto", "trace", "cuda", "cpu")


def get_probe(kind: str) -> Probe:
    """The probe for --probe KIND. auto = cuda when a CUDA GPU is visible, else trace; until the real cuda
    probe lands, auto is the trace probe everywhere."""
    from ..errors import AutofitError

    if kind == "auto":
        kind = "trace"
    if kind == "trace":
        return TraceProbe()
    if kind in ("cuda", "cpu"):
        raise AutofitError(f"--probe {kind}: real training probes are not available in this version; use --probe trace")
    raise AutofitError(f"unknown --probe {kind!r}; choose one of {', '.join(PROBE_KINDS)}")
