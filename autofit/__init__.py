"""autofit: find the fastest way to fine-tune an LLM on the GPU memory you have.

Public surface: the knobs and configurations, search spaces, models, probes, the search, the estimate.
"""

from importlib.metadata import PackageNotFoundError, version

from .errors import AutofitError, InvalidConfigError
from .knobs import KNOBS, TrainingConfig, knob_specs
from .models import ModelSpec, preset_names, resolve_model
from .probes import Probe, ProbeContext, ProbeResult, TraceProbe, get_probe
from .space import SearchSpace
from .units import GIB, parse_size

try:
    __version__ = version("autofit")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

__all__ = ["AutofitError", "InvalidConfigError", "KNOBS", "TrainingConfig", "knob_specs", "ModelSpec",
           "preset_names", "resolve_model", "Probe", "ProbeContext", "ProbeResult", "TraceProbe", "get_probe",
           "SearchSpace", "GIB", "parse_size", "__version__"]
