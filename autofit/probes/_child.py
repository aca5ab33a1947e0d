"""The probe's child process: `python -m autofit.probes._child REQUEST.json RESULT.json`.

Builds the model, runs the steps (autofit/probes/_training.py), measures, and writes RESULT.json. An
out-of-memory error becomes state "oom"; any other error is left to crash the process, which the parent
records as "failed" with the end of stderr. Nothing here survives the process: no CUDA state is shared
between trials.
"""

from __future__ import annotations

import gc
import json
import os
import sys
import time
from pathlib import Path

from ..trials import DetailKey, Outcome


def _device_memory_used() -> tuple[int, str]:
    """Device memory this process holds as NVML sees it (context included), with where the figure came from.
    Falls back to the whole device's use where NVML cannot attribute memory to processes (a container with its
    own pid namespace) or is missing; the search's own process holds no CUDA context, so on a card given to
    the search the two agree."""
    import torch

    try:
        import pynvml

        handle = torch.cuda._get_pynvml_handler()  # private, but it maps CUDA_VISIBLE_DEVICES to NVML's index
        for proc in pynvml.nvmlDeviceGetComputeRunningProcesses(handle):
            if proc.pid == os.getpid() and proc.usedGpuMemory:
                return int(proc.usedGpuMemory), "nvml process"
    except Exception:  # noqa: BLE001 - no pynvml, a driver without process accounting, another torch
        pass
    try:
        return int(torch.cuda.device_memory_used()), "nvml device"
    except Exception:  # noqa: BLE001
        free, total = torch.cuda.mem_get_info()
        return int(total - free), "mem_get_info device"


def _measure_cuda(result: dict) -> None:
    import torch

    result["peak_allocated_bytes"] = torch.cuda.max_memory_allocated()
    result["peak_reserved_bytes"] = torch.cuda.max_memory_reserved()
    used, source = _device_memory_used()
    result["device_used_bytes"], result["device_used_source"] = used, source
    # memory the CUDA runtime holds outside PyTorch's allocator (context, cuBLAS/NCCL workspaces)
    result[DetailKey.RUNTIME_RESERVE_BYTES] = max(0, used - torch.cuda.memory_reserved())


def probe(request: dict) -> dict:
    import torch

    from ..knobs import TrainingConfig
    from ..models import ModelSpec
    from ._memtrack import StepTracker
    from ._training import build_model, is_oom, run_steps, summary

    model = ModelSpec(name=request["model"]["name"], config=request["model"]["config"], hf_ref=request["model"]["name"])
    config = TrainingConfig.from_dict(request["config"])
    device, budget = request["device"], int(request["budget_bytes"])
    cuda = device.startswith("cuda")
    result: dict = {"state": Outcome.OK.value, "device": device}
    tracker = None
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))  # one GPU per rank under torchrun
        result["gpu_name"] = torch.cuda.get_device_name()
        result["allocator_conf"] = os.environ.get("PYTORCH_CUDA_ALLOC_CONF", "")  # the allocator knob, as applied
    else:
        torch.set_num_threads(max(1, int(request.get("threads", os.cpu_count() or 1))))
        result["threads"] = torch.get_num_threads()
        # the budget on the CPU: live tensor bytes, counted as they are allocated (no allocator rounding)
        tracker = StepTracker(vocab_size=model.vocab_size, round_bytes=1, limit_bytes=budget)
        tracker.__enter__()

    def built():
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
            total = torch.cuda.mem_get_info()[1]
            if total > budget:  # emulate the smaller card: the allocator may not reserve past the budget
                torch.cuda.set_per_process_memory_fraction(budget / total)
                result["emulated_budget_bytes"] = budget
        else:
            tracker.start_phase("train", "activations")

    started = time.perf_counter()
    try:
        net = build_model(model, config, device)
        result["build_s"] = time.perf_counter() - started
        times = run_steps(net, config, device, model.vocab_size, request["warmup"], request["steps"],
                          gpus=request.get("gpus", 1), on_built=built)
        result.update(summary(times, config, request.get("gpus", 1)))
    except Exception as exc:  # noqa: BLE001 - OOM is an outcome; the rest crash the child on purpose
        if not is_oom(exc):
            raise
        result["state"] = Outcome.OOM.value
        result["error"] = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
    finally:
        if tracker is not None:
            tracker.__exit__(None, None, None)
    if cuda:
        try:
            _measure_cuda(result)
        except Exception as exc:  # noqa: BLE001 - a CUDA error after an OOM must not turn the oom into a crash
            if result["state"] == Outcome.OK:
                raise
            result["measure_error"] = f"{type(exc).__name__}: {exc}"
    elif tracker is not None:  # the CPU: the tracker counted the live tensor bytes
        train = tracker.phases.get("train")
        peak = train.peak_bytes if train else max(r.peak_bytes for r in tracker.phases.values())
        result["peak_allocated_bytes"] = result["peak_reserved_bytes"] = peak
    result["wall_s"] = time.perf_counter() - started
    return result


def _die_with_parent(folder: Path) -> None:
    """End this probe, and remove its temp folder, as soon as the search that started it is gone (killed with
    SIGKILL, out of memory, ...): PR_SET_PDEATHSIG for a direct child, and a watchdog thread that also covers
    ranks started by torchrun and a main thread busy in a long kernel."""
    import signal
    import shutil
    import threading

    from ..lifecycle import die_with_parent

    parent = int(os.environ.get("AUTOFIT_PROBE_PARENT_PID", "0"))
    if not parent:
        return
    direct = "LOCAL_RANK" not in os.environ  # a direct child of the search, not a torchrun rank

    def parent_gone() -> bool:
        if direct:  # reparented the moment the search dies (a killed search is a zombie for a while)
            return os.getppid() != parent
        try:
            os.kill(parent, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            pass
        return False

    def end() -> None:
        shutil.rmtree(folder, ignore_errors=True)
        os._exit(143)

    def on_term(signum, frame):
        # PR_SET_PDEATHSIG fires when the thread that started us ends, which can be a moment before the rest
        # of a killed search (and so before we are reparented): give it that moment
        for _ in range(40):
            if parent_gone():
                end()
            time.sleep(0.05)
        os._exit(143)

    def watch() -> None:
        while True:
            time.sleep(0.5)
            if parent_gone():
                end()

    signal.signal(signal.SIGTERM, on_term)
    if direct:
        die_with_parent(signal.SIGTERM, parent)
    threading.Thread(target=watch, name="autofit-parent-watch", daemon=True).start()


def main(argv: list[str]) -> int:
    request_path, result_path = Path(argv[0]), Path(argv[1])
    _die_with_parent(request_path.parent)
    request = json.loads(request_path.read_text())
    result = probe(request)
    if os.environ.get("RANK", "0") != "0":  # in a DeepSpeed world rank 0 speaks for all
        return 0
    tmp = result_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(result))
    os.replace(tmp, result_path)
    return 0


if __name__ == "__main__":
    import warnings

    warnings.simplefilter("ignore")
    try:
        sys.exit(main(sys.argv[1:]))
    finally:
        # the result is written: skip the shutdown's garbage collections of what torch and transformers leave
        # (~1 s a probe; autofit.cli.run says more)
        gc.freeze()
