"""The report's look: colours of states, categories and parts, plotly's config, and the CSS/JS in static/."""

from __future__ import annotations

import json
from importlib.resources import files

from ..trials import Outcome

CATEGORY_COLORS = {"weights": "#4c78a8", "gradients": "#f58518", "optimizer": "#54a24b", "activations": "#e45756",
                   "logits": "#b279a2", "other": "#9d9da0"}
# Outcome is a str: these look up by the stored value as well. "running": Optuna's state of a trial without one.
STATE_COLORS = {Outcome.OK: "#2f7ed8", Outcome.OOM: "#8c8c8c", Outcome.OOM_PREDICTED: "#b5b5b5",
                Outcome.OOM_INFERRED: "#d0d0d0", Outcome.INVALID: "#9467bd", Outcome.FAILED: "#d62728",
                Outcome.TIMEOUT: "#a0522d", Outcome.LOST: "#bcbd22", Outcome.INTERRUPTED: "#e5a50a",
                "running": "#17becf"}
# states whose colour is light: their chip's text is dark
LIGHT_STATES = frozenset({Outcome.OOM_PREDICTED, Outcome.OOM_INFERRED, Outcome.LOST})
QUANT_COLORS = {"none": "#4c78a8", "int8": "#f58518", "nf4": "#54a24b"}
TIME_COLORS = {"matmul": "#4c78a8", "dequantization": "#e45756", "attention": "#f58518", "elementwise": "#72b7b2",
               "optimizer": "#54a24b", "recompute": "#b279a2", "offload_communication": "#eeca3b",
               "overhead": "#9d9da0"}
PLOTLY_CONFIG = {"displaylogo": False, "responsive": True,
                 "toImageButtonOptions": {"format": "png", "scale": 2}}
FONT = "system-ui, -apple-system, Segoe UI, Roboto, sans-serif"


def _static(name: str) -> str:
    return (files(__package__) / "static" / name).read_text(encoding="utf-8")


CSS = _static("report.css")
JS = _static("report.js")
DRAW_JS = _static("draw-figures.js").replace("__PLOTLY_CONFIG__", json.dumps(PLOTLY_CONFIG))
