"""4. Memory breakdown and time breakdown of the Pareto configurations."""

from __future__ import annotations

from ..data import ReportData
from ..figures.breakdown import breakdown_figure
from ..figures.collector import Figures
from ..figures.step_time import time_figure


def breakdown_section(data: ReportData, figures: Figures) -> str:
    return ("<section id='breakdown'><h2>Memory breakdown</h2><p class='muted'>What fills memory at the peak of a "
            "training step: weights, gradients, optimizer state, saved activations, logits and loss, and other "
            "temporaries. It shows why a configuration fits and what would make it smaller.</p>"
            f"{figures.html(lambda: breakdown_figure(data), 'breakdown')}</section>")


def time_section(data: ReportData, figures: Figures) -> str:
    return ("<section id='time'><h2>Time breakdown</h2><p class='muted'>What the trace probe's performance model "
            "says a GPU spends each configuration's step on: GEMMs, 4/8-bit weight dequantization, attention, "
            "elementwise kernels, the optimizer, checkpointing's recompute, ZeRO/offload transfers, and host "
            "overhead when kernels are too small to keep the GPU busy. Lower is faster; it shows why one "
            f"configuration is estimated faster than another.</p>{figures.html(lambda: time_figure(data), 'time')}"
            "</section>")
