"""How long one trace probe of a model takes (the unit of work of a search without a GPU).

    python bench/trace_speed.py [--model glm4-9b] [--runs 5] [--json]

Each run traces the space's default configuration from scratch (trace cache cleared; imports and
bitsandbytes' one-time set-up already done by a warm-up run). Prints the median and every run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

from autofit import cache as disk_cache
from autofit.budget import make_budget
from autofit.gpus import get_gpu
from autofit.models import resolve_model
from autofit.probes import ProbeContext, TraceProbe
from autofit.probes._trace import _trace_cached
from autofit.space import SearchSpace

CONFIGS = {
    "lora (default space defaults)": {},
    "qlora nf4": {"quantization": "nf4"},
    "full fine-tuning": {"lora_rank": 0, "quantization": "none", "gradient_accumulation_steps": 1},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="glm4-9b")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    os.environ[disk_cache.SWITCH_ENV] = "off"  # what is timed is tracing: never read a trace from disk
    model = resolve_model(args.model)
    context = ProbeContext(usable_budget_bytes=make_budget("24GB").usable_bytes, gpu=get_gpu("rtx4090"))
    default = SearchSpace.load().default_config()
    probe = TraceProbe()
    probe.run(model, default.replace(quantization="nf4", optimizer="adamw_8bit"), context)  # warm-up
    results = {}
    for label, changes in CONFIGS.items():
        config = default.replace(**changes)
        times = []
        for _ in range(args.runs):
            _trace_cached.cache_clear()
            started = time.perf_counter()
            probe.run(model, config, context)
            times.append(time.perf_counter() - started)
        results[label] = {"median_s": statistics.median(times), "runs_s": [round(t, 3) for t in times]}
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    if args.json:
        print(json.dumps({"model": args.model, "machine": machine, "results": results}, indent=2))
        return
    print(f"trace probe of {args.model} on {machine}, {args.runs} runs each")
    for label, r in results.items():
        print(f"  {label:32s} median {r['median_s']:.2f} s   runs {r['runs_s']}")


if __name__ == "__main__":
    main()
