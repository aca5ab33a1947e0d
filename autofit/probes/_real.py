"""Real probes: each trial a short real training run in a fresh child process, under a hard timeout.

The parent writes a request, starts `python -m autofit.probes._child` in a new session, waits at most the
probe timeout, and reads the child's result file. A child that runs out of memory reports `oom`; one that
outlives its timeout is killed (its whole process group) and recorded `timeout`; one that dies any other way
(a signal, a CUDA or NCCL error, a Python exception) is recorded `failed` with the last lines of its stderr.
The search goes on after every one of them.

`ScreenedProbe` puts the trace probe in front of a real one: a configuration the trace predicts above the
budget x (1 + margin) is recorded `oom-predicted` without running, and every probed trial keeps both the
predicted and the measured peak.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ..knobs import TrainingConfig
from ..lifecycle import probe_dir_prefix, sweep_stale_probe_dirs
from ..models import ModelSpec
from ..units import GIB
from ..trials import DetailKey, Outcome
from ._base import DEVICE_ONLY_KNOBS, Probe, ProbeCapabilities, ProbeContext, ProbeResult
from ._trace import TraceProbe
from ._training import deepspeed_missing

STDERR_TAIL_LINES = 20
PARENT_PID_ENV = "AUTOFIT_PROBE_PARENT_PID"


def default_timeout_s(model: ModelSpec, device: str) -> float:
    """A per-trial timeout sized from the model: building, warm-up and measured steps with room to spare."""
    billions = model.params / 1e9
    if device == "cpu":
        return 120.0 + 6000.0 * billions  # a 20M model: about 4 minutes
    return 90.0 + 20.0 * billions  # glm4-9b: about 4.5 minutes


# real training steps on a CUDA GPU: the runtime reserve is measured there, and the allocator is searched
CUDA_CAPABILITIES = ProbeCapabilities(device="cuda", runtime_reserve=True, measures_reserve=True,
                                      device_knobs=DEVICE_ONLY_KNOBS)
# real training steps on the CPU: host and device memory are one (no runtime reserve, and neither ZeRO
# partitioning nor offload can be measured); a step of a model beyond 2B parameters takes minutes to hours
CPU_CAPABILITIES = ProbeCapabilities(device="cpu", runtime_reserve=False,
                                     fixed_knobs={"zero_stage": 0, "offload": "none"}, max_params=2e9)


class ChildProcessProbe(Probe):
    """A real probe on `device`, run in a child process."""

    estimated = False
    capabilities = CUDA_CAPABILITIES

    def __init__(self, timeout_s: float | None = None, warmup_steps: int = 1, measured_steps: int = 2,
                 threads: int | None = None):
        self.timeout_s = timeout_s
        self.warmup_steps = warmup_steps
        self.measured_steps = measured_steps
        self.threads = threads

    def command(self, request_path: Path, result_path: Path, gpus: int) -> list[str]:
        return [sys.executable, "-m", "autofit.probes._child", str(request_path), str(result_path)]

    def run(self, model: ModelSpec, config: TrainingConfig, context: ProbeContext) -> ProbeResult:
        started = time.perf_counter()
        missing = deepspeed_missing(config)
        if missing:  # DeepSpeed is an extra: the trial fails with how to install it, no child started
            return ProbeResult(state=Outcome.FAILED, probe=self.name, estimated=False,
                               duration_s=time.perf_counter() - started, error=missing)
        timeout = self.timeout_s or default_timeout_s(model, self.capabilities.device)
        sweep_stale_probe_dirs()  # folders left by a search that was killed with SIGKILL
        with tempfile.TemporaryDirectory(prefix=probe_dir_prefix()) as tmp:
            request_path, result_path = Path(tmp, "request.json"), Path(tmp, "result.json")
            stderr_path = Path(tmp, "stderr")
            request = {"model": {"name": model.name, "config": model.config}, "config": config.to_dict(),
                       "device": self.capabilities.device, "budget_bytes": context.usable_budget_bytes,
                       "gpus": context.gpus,
                       "warmup": self.warmup_steps, "steps": self.measured_steps,
                       "threads": self.threads or os.cpu_count() or 1}
            request_path.write_text(json.dumps(request))
            env = dict(os.environ)
            env[PARENT_PID_ENV] = str(os.getpid())  # the child dies (and cleans this folder) when we do
            if config.allocator == "expandable":
                env["PYTORCH_CUDA_ALLOC_CONF"] = "expandable_segments:True"
            with open(stderr_path, "w") as stderr:
                child = subprocess.Popen(self.command(request_path, result_path, context.gpus), env=env,
                                         stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True)
                try:
                    child.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    _kill(child)
                    return ProbeResult(state=Outcome.TIMEOUT, probe=self.name, estimated=False,
                                       duration_s=time.perf_counter() - started,
                                       error=f"probe killed after its {timeout:.0f} s timeout")
                except BaseException:  # Ctrl-C: stop the running probe with us
                    _kill(child)
                    raise
            if not result_path.is_file():
                tail = stderr_path.read_text(errors="replace").strip().splitlines()[-STDERR_TAIL_LINES:]
                code = child.returncode
                how = f"signal {-code}" if code < 0 else f"exit status {code}"
                return ProbeResult(state=Outcome.FAILED, probe=self.name, estimated=False,
                                   duration_s=time.perf_counter() - started,
                                   error=f"probe process died ({how}):\n" + "\n".join(tail))
            data = json.loads(result_path.read_text())
        return self._result(data, time.perf_counter() - started)

    def _result(self, data: dict, duration: float) -> ProbeResult:
        allocated = data.get("peak_allocated_bytes")
        reserved = data.get("peak_reserved_bytes")
        details = {k: v for k, v in data.items() if k not in ("state", "error", "tokens_per_s", "step_time_s")}
        return ProbeResult(
            state=Outcome(data["state"]), probe=self.name, estimated=False,
            peak_memory_gib=None if reserved is None else reserved / GIB,
            peak_allocated_gib=None if allocated is None else allocated / GIB,
            peak_reserved_gib=None if reserved is None else reserved / GIB,
            tokens_per_s=data.get("tokens_per_s"), step_time_s=data.get("step_time_s"), duration_s=duration,
            error=data.get("error"), details=details)


def _kill(child: subprocess.Popen) -> None:
    try:
        os.killpg(child.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    child.wait()


class CpuProbe(ChildProcessProbe):
    """Real training steps on the CPU, for small models (CI, laptops, tests). The budget is live tensor
    bytes: the child raises torch.OutOfMemoryError when they pass it. tokens/s is measured."""

    name = "cpu"
    capabilities = CPU_CAPABILITIES

    def __init__(self, timeout_s: float | None = None, warmup_steps: int = 1, measured_steps: int = 1,
                 threads: int | None = None):
        # CPU steps of even a small model take seconds: one warm-up and one measured step
        super().__init__(timeout_s, warmup_steps, measured_steps, threads)

    def run(self, model: ModelSpec, config: TrainingConfig, context: ProbeContext) -> ProbeResult:
        if config.zero_stage > 0:
            return ProbeResult(state=Outcome.FAILED, probe=self.name, estimated=False,
                               error="the cpu probe cannot measure DeepSpeed ZeRO or offload: on the CPU host and "
                                     "device memory are the same; use --probe cuda or trace")
        return super().run(model, config, context)


class CudaProbe(ChildProcessProbe):
    """Real training steps on the GPU; peak memory from torch.cuda.max_memory_allocated/reserved, the
    allocator capped at the usable budget when the card is larger than --gpu-mem."""

    name = "cuda"
    capabilities = CUDA_CAPABILITIES

    def command(self, request_path: Path, result_path: Path, gpus: int) -> list[str]:
        if gpus > 1:  # a DeepSpeed world: one process per GPU
            return [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={gpus}", "-m",
                    "autofit.probes._child", str(request_path), str(result_path)]
        return super().command(request_path, result_path, gpus)


class ScreenedProbe(Probe):
    """A real probe with the trace probe in front (two fidelities). With `margin` None nothing is skipped,
    but every trial still keeps the trace's prediction beside the measurement."""

    estimated = False

    def __init__(self, real: Probe, margin: float | None = 0.10):
        self.real, self.margin, self.tracer = real, margin, TraceProbe()
        self.name = real.name
        self.capabilities = real.capabilities

    def run(self, model: ModelSpec, config: TrainingConfig, context: ProbeContext) -> ProbeResult:
        predicted = self.tracer.run(model, config, context)
        peak, _ = predicted.figures()
        factor = None if self.margin is None else 1 + self.margin
        limit = None if factor is None else context.usable_budget_bytes * factor / GIB
        if factor is not None and limit is not None and peak > limit:
            return ProbeResult(
                state=Outcome.OOM_PREDICTED, probe=self.name, estimated=True,
                peak_memory_gib=peak,
                tokens_per_s=predicted.tokens_per_s, breakdown_gib=predicted.breakdown_gib,
                predicted_peak_gib=peak, duration_s=predicted.duration_s,
                error=f"trace predicts {peak:.2f} GiB, above the budget x {factor:.2f} "
                      f"= {limit:.2f} GiB: not run")
        result = self.real.run(model, config, context)
        result.predicted_peak_gib = predicted.peak_memory_gib
        result.details[DetailKey.PREDICTED_TOKENS_PER_S] = predicted.tokens_per_s
        result.details[DetailKey.PREDICTED_BREAKDOWN_GIB] = predicted.breakdown_gib
        return result
