"""The sequence-length boundary, found by bisection on the trace, confirmed (and moved) by a real probe."""

from pathlib import Path

import pytest

from autofit.concessions import TraceCache
from autofit.gpus import get_gpu
from autofit.models import resolve_model
from autofit.probes import CpuProbe, Probe, ProbeContext, ProbeResult, ScreenedProbe
from autofit.seq_len_curve import CSV_COLUMNS, GRANULARITY, confirm_boundary, seq_len_curves
from autofit.space import SearchSpace
from autofit.units import GIB
from autofit.trials import Outcome

MODEL = resolve_model(str(Path(__file__).resolve().parent / "data" / "glm-20m"))
CTX = ProbeContext(usable_budget_bytes=int(0.30 * GIB), gpu=get_gpu("h100"))


def config(**changes):
    base = {"gradient_accumulation_steps": 1, "seq_len": 256, "per_device_train_batch_size": 1, "lora_rank": 8,
            "gradient_checkpointing": True, "quantization": "none"}
    return SearchSpace.load().default_config().replace(**{**base, **changes})


class FitsUpTo(Probe):
    """A real (not estimated) probe whose device holds `limit` tokens: what a real run can disagree with."""

    name, estimated = "fake-real", False

    def __init__(self, limit):
        self.limit, self.calls = limit, []

    def run(self, model, config, context):
        self.calls.append(config.seq_len)
        fits = config.seq_len <= self.limit
        return ProbeResult(state=Outcome.OK if fits else Outcome.OOM, probe=self.name, estimated=False,
                           peak_memory_gib=0.1 * config.seq_len / GRANULARITY, tokens_per_s=100.0 if fits else None)


def curve_for(cache, base):
    [curve] = seq_len_curves(cache, (0, base.to_dict()), [], MODEL.max_positions)
    return curve


def test_a_real_probe_moves_the_boundary_down_when_the_trace_was_optimistic():
    cache, base = TraceCache(MODEL, CTX), config()
    curve = curve_for(cache, base)
    traced = curve.longest_seq_len
    assert traced and traced >= 2 * GRANULARITY, curve.points  # the budget leaves room to move down
    assert curve.row()["confirmed"] == "estimated" and curve.row()["estimated"] is True
    probe = FitsUpTo(traced - GRANULARITY)
    confirm_boundary(curve, base, ScreenedProbe(probe, 0.10), cache, MODEL.max_positions)
    assert probe.calls == [traced, traced - GRANULARITY]  # the real one, not the screen, at the boundary first
    row = curve.row()
    assert row["longest_seq_len"] == traced - GRANULARITY and row["trace_longest_seq_len"] == traced
    assert row["confirmed"] == "moved" and row["estimated"] is False
    assert row["measured_peak_gib"] == round(0.1 * (traced - GRANULARITY) / GRANULARITY, 3)
    assert set(row) == set(CSV_COLUMNS)


def test_a_real_probe_moves_the_boundary_up_one_step_when_it_fits_beyond_the_estimate():
    cache, base = TraceCache(MODEL, CTX), config()
    curve = curve_for(cache, base)
    traced = curve.longest_seq_len
    probe = FitsUpTo(10 * traced)
    confirm_boundary(curve, base, probe, cache, MODEL.max_positions)
    assert probe.calls == [traced, traced + GRANULARITY]
    assert curve.longest_seq_len == traced + GRANULARITY and curve.confirmed == "moved"


@pytest.mark.slow  # real training steps on the CPU
def test_the_cpu_probe_confirms_the_traced_boundary():
    """The real CPU probe on the 20M test model: the trace's bytes match it within a few percent, so the
    boundary holds (or moves by one step) and what was measured is recorded against the estimate."""
    cache, base = TraceCache(MODEL, CTX), config()
    curve = curve_for(cache, base)
    traced = curve.longest_seq_len
    confirm_boundary(curve, base, CpuProbe(timeout_s=300, threads=1), cache, MODEL.max_positions)
    row = curve.row()
    assert row["trace_longest_seq_len"] == traced and row["confirmed"] in ("measured", "moved")
    assert abs(row["longest_seq_len"] - traced) <= GRANULARITY
    assert row["measured_peak_gib"] is not None and 0 < row["measured_peak_gib"] <= CTX.usable_budget_bytes / GIB
    assert f"{traced}:" in row["measured_probes"]
