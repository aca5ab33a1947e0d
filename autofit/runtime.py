"""Constants for what a trace cannot see (data/runtime.yaml)."""

from __future__ import annotations

from functools import cache
from importlib import resources

import yaml


@cache
def runtime_constants() -> dict[str, float]:
    return yaml.safe_load(resources.files("autofit").joinpath("data/runtime.yaml").read_text())
