"""Probes for tests, loaded with --probe probes_for_tests:Class (tests/ is put on PYTHONPATH).

They wrap the real trace probe and add what the tests need: time (to be killed mid-trial), a crash, a
process that dies."""

import os
import time
from pathlib import Path

from autofit.probes import Probe, TraceProbe


class SlowTraceProbe(TraceProbe):
    """The trace probe, then a pause, so a test can catch a trial while it runs.

    With AUTOFIT_TEST_HOLD_AFTER=N, the probes after the first N of this process write a line to
    AUTOFIT_TEST_MARKER and then hold for 10 minutes: a test waits for that line, not for a guessed delay, and
    knows its signal lands inside the pause (not inside the trace's C++ code)."""

    calls = 0

    def run(self, model, config, context):
        result = TraceProbe.run(self, model, config, context)
        SlowTraceProbe.calls += 1
        hold_after = os.environ.get("AUTOFIT_TEST_HOLD_AFTER")
        if hold_after is not None and SlowTraceProbe.calls > int(hold_after):
            with open(os.environ["AUTOFIT_TEST_MARKER"], "a") as marker:
                marker.write(f"{os.getpid()} holding\n")
            time.sleep(600)
        else:
            time.sleep(float(os.environ.get("AUTOFIT_TEST_PROBE_SLEEP", "1.0")))
        return result


class DieOnceProbe(TraceProbe):
    """Kills its own process in the middle of the first trial it runs anywhere (marker file), like a
    worker lost to kill -9 or a reboot; later trials run normally."""

    def run(self, model, config, context):
        marker = Path(os.environ["AUTOFIT_TEST_MARKER"])
        try:
            fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return TraceProbe.run(self, model, config, context)
        os.write(fd, config.key().encode())
        os.close(fd)
        os._exit(9)


from autofit.probes import CPU_CAPABILITIES, ChildProcessProbe  # noqa: E402


class HangingProbe(ChildProcessProbe):
    """A child that never finishes: must be killed at its timeout."""

    name = "cpu"
    capabilities = CPU_CAPABILITIES

    def __init__(self):
        super().__init__(timeout_s=float(os.environ.get("AUTOFIT_TEST_TIMEOUT", "3")))

    def command(self, request_path, result_path, gpus):
        import sys

        marker = os.environ.get("AUTOFIT_TEST_MARKER", "/dev/null")
        code = f"import os, time; open({marker!r}, 'a').write(str(os.getpid()) + '\\n'); time.sleep(600)"
        return [sys.executable, "-c", code]


class CrashingChildProbe(ChildProcessProbe):
    """A child that dies like a CUDA/NCCL crash: writes to stderr and exits non-zero."""

    name = "cpu"
    capabilities = CPU_CAPABILITIES

    def command(self, request_path, result_path, gpus):
        import sys

        code = ("import sys; sys.stderr.write('loading model\\nRuntimeError: NCCL error: unhandled cuda error\\n'); "
                "sys.exit(134)")
        return [sys.executable, "-c", code]


class ParentWatchingChildProbe(ChildProcessProbe):
    """A child that sets up the real probe child's tie to its parent (autofit.probes._child._die_with_parent),
    writes "PID TEMP-FOLDER" to the marker file and then runs for long: killing the search must end it and
    remove the folder."""

    name = "cpu"
    capabilities = CPU_CAPABILITIES

    def __init__(self):
        super().__init__(timeout_s=600)

    def command(self, request_path, result_path, gpus):
        import sys

        marker = os.environ["AUTOFIT_TEST_MARKER"]
        code = ("import os, sys, time\nfrom pathlib import Path\nfrom autofit.probes._child import _die_with_parent\n"
                "folder = Path(sys.argv[1]).parent\n_die_with_parent(folder)\n"
                f"open({marker!r}, 'a').write(f'{{os.getpid()}} {{folder}}\\n')\ntime.sleep(600)\n")
        return [sys.executable, "-c", code, str(request_path)]


from autofit.probes import CUDA_CAPABILITIES, ProbeCapabilities  # noqa: E402


class CudaDeclaringProbe(TraceProbe):
    """A GPU probe of one's own, as a third party writes it (here it traces, so it runs anywhere): it
    declares CUDA capabilities, so it gets the allocator searched and the runtime reserve measured."""

    name = "my-gpu"
    capabilities = CUDA_CAPABILITIES


class NamedCudaProbe(TraceProbe):
    """Named like the built-in GPU probe but declaring nothing: the name is a label, it gets no GPU behaviour."""

    name = "cuda"


class CpuDeclaringProbe(TraceProbe):
    """Declares what a CPU probe can do, in its own words."""

    name = "my-cpu"
    capabilities = ProbeCapabilities(device="cpu", runtime_reserve=False,
                                     fixed_knobs={"zero_stage": 0, "offload": "none"}, max_params=2e9)


from autofit.probes import ProbeResult  # noqa: E402
from autofit.trials import Outcome  # noqa: E402
from autofit.units import GIB  # noqa: E402

_WEIGHT_BYTES = {"none": 2.0, "int8": 1.0, "nf4": 0.55}  # bytes per base weight by quantization
_STATE_BYTES = {"adamw_torch": 12.0, "adamw_8bit": 6.0, "paged_adamw_8bit": 6.0}  # grad + optimizer states


class AnalyticProbe(Probe):
    """A closed-form memory and speed model instead of a trace, for tests of the search's own logic (sampler,
    storage, workers) that need hundreds of probes: each costs microseconds, not a traced step. Its peak grows
    with every knob along knobs.yaml's memory orders, so the sampler's OOM inference holds for it as for the
    trace; its figures are labelled estimates, and nothing outside tests uses it. The real landscape is the
    trace probe's, tested end to end in each module's slow or real-trace tests."""

    name = "analytic"
    estimated = True

    def run(self, model, config, context):
        c = model.config
        hidden, layers, vocab = c["hidden_size"], c["num_hidden_layers"], c["vocab_size"]
        base_params = layers * (4 * hidden * hidden + 3 * hidden * c["intermediate_size"]) + 2 * vocab * hidden
        trainable = base_params if config.lora_rank == 0 else config.lora_rank * layers * 8 * hidden
        weights = base_params * _WEIGHT_BYTES[config.quantization]
        states = trainable * (2 + _STATE_BYTES[config.optimizer])
        tokens = config.per_device_train_batch_size * config.seq_len
        per_layer = tokens * hidden * 128 + (tokens * c["num_attention_heads"] * config.seq_len * 2
                                            if config.attn_implementation == "eager" else 0)
        activations = per_layer * (1 if config.gradient_checkpointing else layers) + tokens * vocab * 4
        peak = weights + states + activations
        flops = 6 * base_params * tokens * (4 / 3 if config.gradient_checkpointing else 1)
        step_s = config.gradient_accumulation_steps * (flops / 1e13 + 1e-3 * (config.quantization != "none"))
        state = Outcome.OK if peak <= context.usable_budget_bytes else Outcome.OOM
        return ProbeResult(state=state, probe=self.name, estimated=True, peak_memory_gib=peak / GIB,
                           tokens_per_s=tokens * config.gradient_accumulation_steps / step_s, step_time_s=step_s,
                           breakdown_gib={"weights": weights / GIB, "optimizer": states / GIB,
                                          "activations": activations / GIB},
                           error=None if state == Outcome.OK else "estimated peak exceeds the usable budget")


class RaisingProbe(AnalyticProbe):
    """Raises on every third probe (a probe bug or a crash inside the probe), whatever the sampler picks; the
    others are AnalyticProbe's (above): the search's handling of the crash is tested, not a trace."""

    calls = 0

    def run(self, model, config, context):
        RaisingProbe.calls += 1
        if RaisingProbe.calls % 3 == 2:
            raise RuntimeError("probe crashed: CUDA error: an illegal memory access was encountered")
        return super().run(model, config, context)


class RendezvousAnalyticProbe(AnalyticProbe):
    """AnalyticProbe whose first probe in each process waits (up to 120 s) until AUTOFIT_TEST_WORKERS processes
    have written their pid to AUTOFIT_TEST_MARKER: its probes take microseconds, so without it the worker that
    finished importing first could run every trial before the other one starts."""

    started = False

    def run(self, model, config, context):
        if not RendezvousAnalyticProbe.started:
            RendezvousAnalyticProbe.started = True
            marker = Path(os.environ["AUTOFIT_TEST_MARKER"])
            with open(marker, "a") as out:
                out.write(f"{os.getpid()}\n")
            deadline = time.time() + 120
            while len(set(marker.read_text().split())) < int(os.environ["AUTOFIT_TEST_WORKERS"]) \
                    and time.time() < deadline:
                time.sleep(0.05)
        return AnalyticProbe.run(self, model, config, context)
