"""5. Knob effects: parallel coordinates, importances per objective, memory against batch and seq_len."""

from __future__ import annotations

from ..data import ReportData
from ..figures.collector import Figures
from ..figures.importance import importance_figure
from ..figures.memory import memory_figure
from ..figures.parallel import parallel_figure
from ..render import fragment, render


def knobs_section(data: ReportData, figures: Figures) -> str:
    def by_batch():
        return memory_figure(data, "per_device_train_batch_size", "batch size", "per-device batch size (sequences)")

    def by_seq():
        return memory_figure(data, "seq_len", "sequence length", "sequence length (tokens)")

    # drawn in page order: each figure's id carries its position
    parallel = figures.html(lambda: parallel_figure(data), "parallel coordinates")
    importance_tokens = figures.html(lambda: importance_figure(data, 0), "importance tokens")
    importance_memory = figures.html(lambda: importance_figure(data, 1), "importance memory")
    memory_batch = figures.html(by_batch, "memory batch")
    memory_seq_len = figures.html(by_seq, "memory seq_len")
    return render("knobs.html.j2", parallel=fragment(parallel), importance_tokens=fragment(importance_tokens),
                  importance_memory=fragment(importance_memory), memory_batch=fragment(memory_batch),
                  memory_seq_len=fragment(memory_seq_len))
