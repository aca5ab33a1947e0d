"""What a trace records, as plain data (no torch): each phase's memory peak and op table, and the traced step.
They are kept apart from the tracer (_memtrack.py, _trace.py) so that a step read back from the on-disk cache
(autofit/cache.py) is priced without importing torch; `to_json` / `from_json` are that cache's form."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ._perf import OpKey


@dataclass
class PhaseRecord:
    peak_bytes: float = 0  # whole bytes when tracked; extrapolated records (_trace._extrapolate) may be fractional
    breakdown: dict[str, float] = field(default_factory=dict)
    flops: float = 0.0
    bytes_moved: float = 0.0
    ops: dict[OpKey, float] = field(default_factory=dict)  # op -> how many times it ran in the phase


@dataclass
class StepTrace:
    """A traced training step at one depth (or extrapolated to the model's depth)."""

    depth: int
    phases: dict[str, PhaseRecord]
    trainable_params: float
    total_params: float
    weight_bytes: float  # all weights as stored, after quantization
    micro_steps_traced: int
    wall_s: float = field(default=0.0, compare=False)  # how long tracing took: not part of what was traced
    depths_traced: tuple[int, ...] = field(default_factory=tuple)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict that from_json turns back into an equal StepTrace (floats round-trip exactly)."""
        return {
            "depth": self.depth, "trainable_params": self.trainable_params, "total_params": self.total_params,
            "weight_bytes": self.weight_bytes, "micro_steps_traced": self.micro_steps_traced, "wall_s": self.wall_s,
            "depths_traced": list(self.depths_traced),
            "phases": {name: {"peak_bytes": r.peak_bytes, "breakdown": r.breakdown, "flops": r.flops,
                              "bytes_moved": r.bytes_moved, "ops": [[list(op), n] for op, n in r.ops.items()]}
                       for name, r in self.phases.items()},
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> StepTrace:
        phases = {name: PhaseRecord(peak_bytes=r["peak_bytes"], breakdown=dict(r["breakdown"]), flops=r["flops"],
                                    bytes_moved=r["bytes_moved"], ops={OpKey(*op): n for op, n in r["ops"]})
                  for name, r in data["phases"].items()}
        return cls(depth=data["depth"], phases=phases, trainable_params=data["trainable_params"],
                   total_params=data["total_params"], weight_bytes=data["weight_bytes"],
                   micro_steps_traced=data["micro_steps_traced"], wall_s=data["wall_s"],
                   depths_traced=tuple(data["depths_traced"]))
