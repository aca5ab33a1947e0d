"""Wall time of the command line as a user meets it: `autofit --help` and `autofit estimate --model glm4-9b
--gpu-mem 24GB`, each run as a fresh subprocess (imports included), median of several runs.

    python bench/cli_speed.py [--runs 5] [--json]

`estimate` is timed twice: cold, with an empty on-disk cache (autofit/cache.py) for every run, so it imports
torch, transformers and peft and traces the step; and warm, a rerun of the same command once the cache holds
its trace, parameter count and attention flags (what a user's second estimate of a model meets, at any
--gpu-mem or --gpu). Prints a table (or JSON) with the median, every run, the machine and its load average
before and after: on a shared machine the figures are only comparable with the load stated beside them. Also
reports which heavy libraries each command imported (`python -X importtime`), as a check that `--help` imports
no torch, cold `estimate` only what the trace probe needs and warm `estimate` none of them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time

ESTIMATE = ["estimate", "--model", "glm4-9b", "--gpu-mem", "24GB"]
# label -> (arguments, cache): "cold" gives each run an empty cache folder, "warm" one the first run filled
COMMANDS = {
    "autofit --help": (["--help"], "cold"),
    "autofit estimate --model glm4-9b --gpu-mem 24GB (cold)": (ESTIMATE, "cold"),
    "autofit estimate --model glm4-9b --gpu-mem 24GB (warm)": (ESTIMATE, "warm"),
}
# libraries whose import costs seconds; which of them a command pulls in is part of its cost
HEAVY = ("torch", "transformers", "peft", "bitsandbytes", "deepspeed", "optuna", "pandas", "plotly", "sqlalchemy",
         "jinja2")


def _run(args: list[str], cache: str, extra: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "COLUMNS": "120", "AUTOFIT_CACHE_DIR": cache}
    env.pop("AUTOFIT_CACHE", None)
    return subprocess.run([sys.executable, *extra, "-m", "autofit", *args], env=env, capture_output=True,
                          text=True, timeout=600)


def time_command(args: list[str], cache: str) -> float:
    started = time.perf_counter()
    proc = _run(args, cache)
    seconds = time.perf_counter() - started
    if proc.returncode not in (0, 1):  # estimate exits 1 when the configuration does not fit: still a run
        raise SystemExit(f"autofit {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    return seconds


def heavy_imports(args: list[str], cache: str) -> list[str]:
    """The HEAVY libraries the command imports (top-level modules in -X importtime's report)."""
    stderr = _run(args, cache, ("-X", "importtime")).stderr
    found = {m.group(1) for m in re.finditer(r"^import time:\s+\d+ \|\s+\d+ \|\s*(\w+)$", stderr, re.M)}
    return [name for name in HEAVY if name in found]


def measure(runs: int) -> dict:
    load_before = os.getloadavg()
    results = []
    with tempfile.TemporaryDirectory(prefix="autofit-cli-speed-") as scratch:
        warm = os.path.join(scratch, "warm")
        time_command(ESTIMATE, warm)  # fills the warm cache; not counted
        for index, (label, (args, kind)) in enumerate(COMMANDS.items()):
            caches = [warm if kind == "warm" else os.path.join(scratch, f"cold-{index}-{run}")
                      for run in range(runs + 1)]
            times = [time_command(args, caches[run]) for run in range(runs)]
            imports = heavy_imports(args, caches[runs])
            results.append({"command": label, "median_s": round(statistics.median(times), 2),
                            "runs_s": [round(t, 2) for t in times], "heavy_imports": imports})
    return {"machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.system()}",
            "python": platform.python_version(), "runs": runs,
            "load_average_before": [round(x, 2) for x in load_before],
            "load_average_after": [round(x, 2) for x in os.getloadavg()], "commands": results}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    data = measure(args.runs)
    if args.json:
        print(json.dumps(data, indent=2))
        return
    print(f"{data['machine']}, Python {data['python']}; load average (1/5/15 min) before "
          f"{data['load_average_before']}, after {data['load_average_after']}")
    width = max(len(c["command"]) for c in data["commands"])
    print(f"{'command':<{width}}  median s  runs (s)  heavy imports")
    for c in data["commands"]:
        print(f"{c['command']:<{width}}  {c['median_s']:>8.2f}  {', '.join(f'{t:.2f}' for t in c['runs_s'])}  "
              f"{', '.join(c['heavy_imports']) or 'none'}")


if __name__ == "__main__":
    main()
