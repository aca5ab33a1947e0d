"""autofit: find the fastest way to fine-tune an LLM on the GPU memory you have.

Public surface: the knobs and configurations, search spaces, models, probes, the search, the estimate.
Names are imported on first use (PEP 562), so `autofit --help` and the light commands never import torch.
"""

from __future__ import annotations

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version
from typing import Any

try:
    __version__ = version("autofit")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

# public name -> the module that defines it
_EXPORTS = {
    "AutofitError": ".errors", "InvalidConfigError": ".errors",
    "KNOBS": ".knobs", "TrainingConfig": ".knobs", "knob_specs": ".knobs",
    "ModelSpec": ".models", "preset_names": ".models", "resolve_model": ".models",
    "Probe": ".probes", "ProbeContext": ".probes", "ProbeResult": ".probes", "TraceProbe": ".probes",
    "get_probe": ".probes",
    "SearchSpace": ".space",
    "GIB": ".units", "parse_size": ".units",
}

__all__ = [*_EXPORTS, "__version__"]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'autofit' has no attribute {name!r}")
    value = getattr(import_module(module, __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
