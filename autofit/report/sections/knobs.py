"""5. Knob effects: parallel coordinates, importances per objective, memory against batch and seq_len."""

from __future__ import annotations

from ..data import ReportData
from ..figures.collector import Figures
from ..figures.importance import importance_figure
from ..figures.memory import memory_figure
from ..figures.parallel import parallel_figure


def knobs_section(data: ReportData, figures: Figures) -> str:
    def by_batch():
        return memory_figure(data, "per_device_train_batch_size", "batch size", "per-device batch size (sequences)")

    def by_seq():
        return memory_figure(data, "seq_len", "sequence length", "sequence length (tokens)")

    return ("<section id='knobs'><h2>Knob effects</h2><p class='muted'>Which knobs buy speed and which cost memory. "
            "Hover a line of the parallel coordinates for its trial.</p>"
            f"{figures.html(lambda: parallel_figure(data), 'parallel coordinates')}"
            f"<div class='grid2'>{figures.html(lambda: importance_figure(data, 0), 'importance tokens')}"
            f"{figures.html(lambda: importance_figure(data, 1), 'importance memory')}</div>"
            "<p class='muted small'>The parallel coordinates and importances are Optuna's (importances: PED-ANOVA) "
            "over the configurations that fit, the trials Optuna counts as COMPLETE; out-of-memory trials are "
            "PRUNED in Optuna and appear below as crosses. Pinned knobs, and knobs with one value among those "
            "trials, are left out.</p>"
            f"<div class='grid2'>{figures.html(by_batch, 'memory batch')}{figures.html(by_seq, 'memory seq_len')}"
            f"</div></section>")
