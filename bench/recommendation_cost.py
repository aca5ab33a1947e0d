"""What issue 13's additions cost on top of a search: `autofit check` of a file that does not fit (its three
fewest-change suggestions), and the concessions plus the sequence-length bisection for a recommendation.

    python bench/recommendation_cost.py [--model glm4-9b] [--runs 3] [--json]

Each run starts with the trace cache cleared (imports and bitsandbytes' one-time set-up done by a warm-up run).
Prints the median and every run, with the number of traces each needed. Every memory figure involved is an
estimate; these are wall-clock times of this machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

from autofit.concessions import find_concessions
from autofit import cache as disk_cache
from autofit.budget import make_budget
from autofit.commands.check import check
from autofit.concessions import TraceCache
from autofit.gpus import get_gpu
from autofit.knobs import requirement_knobs
from autofit.models import resolve_model
from autofit.probes import ProbeContext
from autofit.probes._trace import _trace_cached
from autofit.requirements import resolve_requirements
from autofit.seq_len_curve import longest_fitting
from autofit.space import SearchSpace

FILE = """model_name_or_path: {model}
stage: sft
finetuning_type: lora
lora_rank: 16
dataset: mine
template: glm4
cutoff_len: 4096
per_device_train_batch_size: 8
gradient_accumulation_steps: 2
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="glm4-9b")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    os.environ[disk_cache.SWITCH_ENV] = "off"  # what is timed is tracing: never read a trace from disk
    model = resolve_model(args.model)
    budget = make_budget("24GB")
    context = ProbeContext(usable_budget_bytes=budget.usable_bytes, gpu=get_gpu("rtx4090"))
    space = SearchSpace.load()
    req = resolve_requirements(space, {}, {}, None)
    req.conceded = {"quantization": "nf4"}
    recommended = space.pinned({**req.pins(), "per_device_train_batch_size": 2,
                                "gradient_accumulation_steps": 1}).default_config()
    values = {k: space.values[k] for k in requirement_knobs()}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp, "lf.yaml")
        path.write_text(FILE.format(model=args.model))

        def run_check():
            answer, extra = check(str(path), "24GB", None, "rtx4090", 1, None)
            return extra["traces"]

        def run_advice():
            cache = TraceCache(model, context)
            own = cache.run(recommended)
            find_concessions(cache, recommended, req, values, (own.peak_memory_gib, own.tokens_per_s))
            longest_fitting(cache, recommended, model.max_positions)
            return len(cache)

        results = {}
        for name, job in (("check (a file that does not fit)", run_check),
                          ("concessions + seq-len bisection of one recommendation", run_advice)):
            job()  # warm-up: imports, bitsandbytes set-up
            times, traces = [], 0
            for _ in range(args.runs):
                _trace_cached.cache_clear()
                start = time.perf_counter()
                traces = job()
                times.append(time.perf_counter() - start)
            results[name] = {"median_s": statistics.median(times), "runs_s": times, "traces": traces}
    machine = f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}"
    if args.json:
        print(json.dumps({"model": args.model, "machine": machine, "results": results}, indent=2))
        return
    print(f"{args.model} on 24GB, {machine}")
    for name, r in results.items():
        print(f"  {name}: median {r['median_s']:.1f} s over {len(r['runs_s'])} runs "
              f"({', '.join(f'{t:.1f}' for t in r['runs_s'])}), {r['traces']} traces")


if __name__ == "__main__":
    main()
