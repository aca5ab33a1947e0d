"""The probe's child process: `python -m autofit.probes._child REQUEST.json RESULT.json`.

Builds the model, runs the steps (autofit/probes/_training.py), measures, and writes RESULT.json. An
out-of-memory error becomes state "oom"; any other error is left to crash the process, which the parent
records as "failed" with the end of stderr. Nothing here survives the process: no CUDA state is shared
between trials.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path


def _measure_cuda(result: dict) -> None:
    import torch

    result["peak_allocated_bytes"] = torch.cuda.max_memory_allocated()
    result["peak_reserved_bytes"] = torch.cuda.max_memory_reserved()
    free, total = torch.cuda.mem_get_info()
    try:
        used = torch.cuda.device_memory_used()  # NVML: the whole device, context included
    except Exception:
        used = total - free
    result["device_used_bytes"] = used
    # memory the CUDA runtime holds outside PyTorch's allocator (context, cuBLAS/NCCL workspaces)
    result["runtime_reserve_bytes"] = max(0, used - torch.cuda.memory_reserved())


def probe(request: dict) -> dict:
    import torch

    from ..knobs import TrainingConfig
    from ..models import ModelSpec
    from ._memtrack import RooflineSpec, StepTracker
    from ._training import build_model, is_oom, run_steps, summary

    model = ModelSpec(name=request["model"]["name"], config=request["model"]["config"], hf_ref=request["model"]["name"])
    config = TrainingConfig.from_dict(request["config"])
    device, budget = request["device"], int(request["budget_bytes"])
    cuda = device.startswith("cuda")
    result: dict = {"state": "ok", "device": device}
    tracker = None
    if cuda:
        torch.cuda.set_device(0)
        result["gpu_name"] = torch.cuda.get_device_name(0)
    else:
        torch.set_num_threads(max(1, int(request.get("threads", os.cpu_count() or 1))))
        # the budget on the CPU: live tensor bytes, counted as they are allocated (no allocator rounding)
        tracker = StepTracker(RooflineSpec(1.0, 1.0, 0.0), vocab_size=model.vocab_size, round_bytes=1,
                              limit_bytes=budget)
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
        result["state"] = "oom"
        result["error"] = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
    finally:
        if tracker is not None:
            tracker.__exit__(None, None, None)
    if cuda:
        _measure_cuda(result)
    else:
        train = tracker.phases.get("train")
        peak = train.peak_bytes if train else max(r.peak_bytes for r in tracker.phases.values())
        result["peak_allocated_bytes"] = result["peak_reserved_bytes"] = peak
    result["wall_s"] = time.perf_counter() - started
    return result


def main(argv: list[str]) -> int:
    request_path, result_path = Path(argv[0]), Path(argv[1])
    request = json.loads(request_path.read_text())
    result = probe(request)
    tmp = result_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(result))
    os.replace(tmp, result_path)
    return 0


if __name__ == "__main__":
    import warnings

    warnings.simplefilter("ignore")
    sys.exit(main(sys.argv[1:]))
