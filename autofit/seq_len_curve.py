"""The sequence-length curve: for the recommendation and each other strategy on the front (LoRA bf16, QLoRA,
full + ZeRO, ...), the longest seq_len that fits the budget, found by bisection on the trace probe (each trace is
cheap and cached). A common way to debug an OOM in LLaMA-Factory is to raise cutoff_len and watch where memory
bends; this does it up front. Every figure is an estimate. Written to seq-len.csv and plotted in the report.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .concessions import TraceCache
from .knobs import TrainingConfig
from .probes import Probe, ProbeResult
from .trials import Outcome

GRANULARITY = 256  # seq_len is searched in multiples of this
MAX_OTHER_STRATEGIES = 2  # beyond the recommendation: each strategy costs about eight traces
MAX_CONFIRM_PROBES = 3  # real probes spent confirming one boundary (the boundary, one step above or below)
CSV_COLUMNS = ["strategy", "trial", "recommended", "longest_seq_len", "peak_memory_gib", "tokens_per_s", "capped_at",
               "estimated", "traces", "confirmed", "trace_longest_seq_len", "measured_peak_gib", "measured_probes"]


def strategy_of(config: dict[str, Any]) -> str:
    """A short name for how a configuration trains: method, quantization, ZeRO/offload, checkpointing."""
    if config["lora_rank"] == 0:
        method = "full"
    elif config["quantization"] == "nf4":
        method = "QLoRA nf4"
    elif config["quantization"] == "int8":
        method = "LoRA int8"
    else:
        method = "LoRA bf16"
    parts = [method]
    if config["zero_stage"]:
        offload = f" offload {config['offload']}" if config["offload"] != "none" else ""
        parts.append(f"ZeRO-{config['zero_stage']}{offload}")
    parts.append("checkpointing" if config["gradient_checkpointing"] else "no checkpointing")
    return ", ".join(parts)


@dataclass
class SeqLenCurve:
    strategy: str
    trial: int | None
    recommended: bool
    longest_seq_len: int | None  # None: not even GRANULARITY tokens fit
    peak_memory_gib: float | None  # at longest_seq_len
    tokens_per_s: float | None
    capped_at: int | None  # the model's max positions, when the curve reached it
    points: list[tuple[int, float, bool]] = field(default_factory=list)  # (seq_len, peak GiB, fits), traced
    # confirmed by a real probe (cpu/cuda) at the boundary: the measured runs, and the trace's boundary before
    confirmed: str | None = None  # None: estimated only; "measured": the real probe agrees; "moved": it did not
    trace_longest_seq_len: int | None = None
    measured: list[tuple[int, float | None, str]] = field(default_factory=list)  # (seq_len, measured GiB, state)

    @property
    def measured_peak_gib(self) -> float | None:
        """The measured peak at the (confirmed) longest seq_len, when a real probe ran there and it fit."""
        return next((peak for seq_len, peak, state in self.measured if seq_len == self.longest_seq_len
                     and state == Outcome.OK), None)

    def row(self) -> dict[str, Any]:
        return {"strategy": self.strategy, "trial": self.trial, "recommended": self.recommended,
                "longest_seq_len": self.longest_seq_len, "peak_memory_gib": self.peak_memory_gib,
                "tokens_per_s": self.tokens_per_s, "capped_at": self.capped_at,
                "estimated": self.confirmed is None, "traces": len(self.points),
                "confirmed": self.confirmed or "estimated", "trace_longest_seq_len": self.trace_longest_seq_len,
                "measured_peak_gib": self.measured_peak_gib,
                "measured_probes": "; ".join(f"{n}:{state}" + (f" {peak:.3f} GiB" if peak is not None else "")
                                             for n, peak, state in self.measured)}


def _rounded(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def longest_fitting(cache: TraceCache, config: TrainingConfig, max_len: int) -> tuple[int | None, list]:
    """The longest multiple of GRANULARITY up to `max_len` at which `config` fits: double from its own seq_len
    until it does not fit, then bisect to a step of max(GRANULARITY, 1/16 of the fitting length)."""
    points: list[tuple[int, float, bool]] = []

    def fits(seq_len: int) -> bool:
        result = cache.run(config.replace(seq_len=seq_len))
        points.append((seq_len, round(result.peak_memory_gib or 0.0, 3), result.state == Outcome.OK))
        return result.state == Outcome.OK

    top = max(GRANULARITY, max_len // GRANULARITY * GRANULARITY)
    start = min(top, max(GRANULARITY, config.seq_len // GRANULARITY * GRANULARITY))
    low: int | None
    high: int | None
    low, high = (start, None) if fits(start) else (None, start)
    while low is None:  # shrink until something fits
        assert high is not None  # invariant: each step leaves low or high set
        if high <= GRANULARITY:
            return None, points
        candidate = max(GRANULARITY, high // 2 // GRANULARITY * GRANULARITY)
        low, high = (candidate, high) if fits(candidate) else (None, candidate)
    while high is None:  # grow until something does not fit, or the model's limit
        if low >= top:
            return low, points
        candidate = min(top, low * 2)
        low, high = (candidate, None) if fits(candidate) else (low, candidate)
    while high - low > max(GRANULARITY, low // 16):
        middle = (low + high) // 2 // GRANULARITY * GRANULARITY
        if middle <= low:
            break
        low, high = (middle, high) if fits(middle) else (low, middle)
    return low, points


def seq_len_curves(cache: TraceCache, recommended: tuple[int, dict] | None, front: list[tuple[int, dict]],
                   max_len: int) -> list[SeqLenCurve]:
    """Curves for the recommendation and up to MAX_OTHER_STRATEGIES other strategies of the front (the fastest
    trial of each strategy)."""
    chosen: list[tuple[int, dict, bool]] = []
    seen: set[str] = set()
    if recommended is not None:
        chosen.append((*recommended, True))
        seen.add(strategy_of(recommended[1]))
    for number, config in front:  # fastest first
        name = strategy_of(config)
        if name not in seen and len(chosen) < MAX_OTHER_STRATEGIES + (recommended is not None):
            seen.add(name)
            chosen.append((number, config, False))
    curves = []
    for number, config, is_rec in chosen:
        typed = TrainingConfig.from_dict(config)
        longest, points = longest_fitting(cache, typed, max_len)
        at = cache.run(typed.replace(seq_len=longest)).figures() if longest else None
        label = f"{strategy_of(config)}, batch {config['per_device_train_batch_size']}"
        curves.append(SeqLenCurve(strategy=label, trial=number, recommended=is_rec,
                                  longest_seq_len=longest,
                                  peak_memory_gib=round(at[0], 3) if at else None,
                                  tokens_per_s=round(at[1], 1) if at else None,
                                  capped_at=max_len if longest and longest >= max_len // GRANULARITY * GRANULARITY
                                  else None,
                                  points=sorted(points)))
    return curves


def confirm_boundary(curve: SeqLenCurve, config: TrainingConfig, probe: Probe, cache: TraceCache,
                     max_len: int) -> SeqLenCurve:
    """Run the real probe at the traced boundary and, if it fits there, one GRANULARITY step above (when the
    model allows); if it does not fit, step down until it does (at most MAX_CONFIRM_PROBES runs in all). The
    boundary moves to what was measured: the trace is an estimate, the real run is not. The peak and tokens/s
    then shown are the real probe's."""
    if curve.longest_seq_len is None:
        return curve
    real = getattr(probe, "real", probe)  # a screened probe: run the real one, the boundary is what is asked
    top = max(GRANULARITY, max_len // GRANULARITY * GRANULARITY)
    results: dict[int, ProbeResult] = {}

    def measure(seq_len: int) -> bool:
        result = real.run(cache.model, config.replace(seq_len=seq_len), cache.context)
        results[seq_len] = result
        curve.measured.append((seq_len, _rounded(result.peak_memory_gib, 3), result.state))
        return result.state == Outcome.OK

    traced = curve.longest_seq_len
    longest: int | None = traced
    if measure(traced):
        if traced + GRANULARITY <= top and measure(traced + GRANULARITY):
            longest = traced + GRANULARITY  # fits beyond the estimate: at least this long (not searched further)
    else:
        longest = None
        candidate = traced - GRANULARITY
        while candidate >= GRANULARITY and len(curve.measured) < MAX_CONFIRM_PROBES:
            if measure(candidate):
                longest = candidate
                break
            candidate -= GRANULARITY
        if longest is None and candidate >= GRANULARITY:
            longest = candidate  # probes spent: the trace's estimate below what failed (stays estimated there)
    curve.trace_longest_seq_len = traced
    curve.longest_seq_len = longest
    curve.confirmed = "measured" if longest == traced else "moved"
    at = None if longest is None else results.get(longest)
    if at is not None and at.state == Outcome.OK:
        curve.peak_memory_gib = _rounded(at.peak_memory_gib, 3)
        curve.tokens_per_s = round(at.tokens_per_s, 1) if at.tokens_per_s else None
    elif longest is not None:  # not measured there: the trace's figures
        traced_at = cache.run(config.replace(seq_len=longest))
        traced_peak, traced_tokens_per_s = traced_at.figures()
        curve.peak_memory_gib = round(traced_peak, 3)
        curve.tokens_per_s = round(traced_tokens_per_s, 1)
    else:
        curve.peak_memory_gib = curve.tokens_per_s = None
    curve.capped_at = max_len if longest and longest >= top else None
    return curve
