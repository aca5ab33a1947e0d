"""Memory sizes: one parser and one formatter, used everywhere.

GPU memory is sold and reported (nvidia-smi) in binary units, so autofit reads "GB" and "G" as GiB:
24GB = 24 x 2^30 bytes. MB and MiB both mean 2^20 bytes, TB 2^40.
"""

from __future__ import annotations

import math
import re

from .errors import AutofitError

GIB = 1024**3
_UNITS = {"": GIB, "g": GIB, "gb": GIB, "gib": GIB, "m": 1024**2, "mb": 1024**2, "mib": 1024**2,
          "t": 1024**4, "tb": 1024**4, "tib": 1024**4}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")


def parse_size(text: str) -> int:
    """Bytes in a size such as 24GB, 24GiB, 24G, 80gb, 16384MiB or 24576MB (GB = GiB)."""
    text = str(text)
    match = _SIZE.match(text) if len(text) <= 40 else None  # no card needs 40 characters; 400 digits overflow
    unit = match.group(2).lower() if match else None
    if not match or unit not in _UNITS:
        shown = text if len(text) <= 40 else text[:37] + "..."
        raise AutofitError(f"malformed memory size {shown!r}: use e.g. 24GB, 24GiB, 80gb or 16384MiB (GB means GiB)")
    size = float(match.group(1)) * _UNITS[unit]
    if size <= 0:
        raise AutofitError(f"memory size must be positive, got {text!r}")
    if not math.isfinite(size):
        raise AutofitError(f"memory size {text!r} is too large")
    return int(size)


def size_label(text: str) -> str:
    """A size as written for folder names: 24GB stays 24GB, 24576MB becomes 24GB, 1.5G becomes 1.5GB."""
    value = parse_size(text) / GIB
    return f"{value:g}GB"
