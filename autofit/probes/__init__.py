"""Probes: one interface (`Probe`: a configuration in, peak memory and tokens/s out), several backends."""

from ._base import (EVALUATED, FAILED, INTERRUPTED, INVALID, LOST, OK, OOM, OOM_PREDICTED, TIMEOUT, Probe,
                    ProbeContext, ProbeResult)
from ._trace import TraceProbe, trace_step

__all__ = ["Probe", "ProbeContext", "ProbeResult", "TraceProbe", "trace_step", "get_probe",
           "OK", "OOM", "INVALID", "FAILED", "TIMEOUT", "OOM_PREDICTED", "LOST", "INTERRUPTED", "EVALUATED",
           "PROBE_KINDS"]

PROBE_KINDS = ("auto", "trace", "cuda", "cpu")


def get_probe(kind: str) -> Probe:
    """The probe for --probe KIND. auto = cuda when a CUDA GPU is visible, else trace; until the real cuda
    probe lands, auto is the trace probe everywhere."""
    from ..errors import AutofitError

    if kind == "auto":
        kind = "trace"
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
        raise AutofitError(f"--probe {kind}: real training probes are not available in this version; use --probe trace")
    raise AutofitError(f"unknown --probe {kind!r}; choose one of {', '.join(PROBE_KINDS)} or package.module:Class")
