"""`autofit estimate`: one configuration's peak memory (with a breakdown) and tokens/s, from a trace."""

from __future__ import annotations

import json

from rich.console import Console
from rich.table import Table

from ..budget import make_budget
from ..candidates import drop_unsupported_attention
from ..models import resolve_model
from ..probes import ProbeContext, TraceProbe
from ..rules import check_valid
from ..trials import DetailKey, Outcome
from ..validation import check_pins_for_model
from ._common import breakdown_table, choose_gpu, load_space, parse_pins, positive


def estimate(model: str, gpu_mem: str, sets: list[str] | None, space: str | None, gpu: str | None, gpus: int,
             headroom: float | None) -> dict:
    """The estimate as a JSON-ready dict (raises AutofitError on bad input or an invalid combination)."""
    positive(gpus, "--gpus")
    spec = resolve_model(model)
    budget = make_budget(gpu_mem, headroom)
    pins = parse_pins(sets)
    chosen = load_space(space, pins)
    check_pins_for_model(pins, spec.config, {"lora_rank": (chosen.defaults["lora_rank"],)})
    search_space, left_out = drop_unsupported_attention(chosen, pins, spec)
    config = search_space.default_config()
    check_valid(config, spec.facts)
    card, source = choose_gpu(gpu, budget.gpu_mem_bytes)
    result = TraceProbe().run(spec, config, ProbeContext(usable_budget_bytes=budget.usable_bytes, gpu=card, gpus=gpus))
    peak, tokens_per_s = result.figures()
    return {
        "model": spec.name, "params": spec.params, "gpu_mem": gpu_mem, "usable_budget_gib": round(budget.usable_gib, 3),
        "fits": result.state == Outcome.OK, "probe": result.probe, "estimated": result.estimated,
        "peak_memory_gib": round(peak, 3), "tokens_per_s": round(tokens_per_s, 1),
        "step_time_s": None if result.step_time_s is None else round(result.step_time_s, 4),
        "gpu": card.key, "gpu_source": source, "gpus": gpus,
        "config": config.to_dict(), "breakdown_gib": {k: round(v, 3) for k, v in result.breakdown_gib.items()},
        "peak_phase": result.details.get("peak_phase"), "trainable_params": result.details.get("trainable_params"),
        "notes": [left_out] if left_out else [],
        "time_breakdown_s": {k: round(v, 4) for k, v in result.details.get(DetailKey.TIME_BREAKDOWN_S, {}).items()},
    }


def estimate_command(model, gpu_mem, sets, space, gpu, gpus, headroom, as_json) -> None:
    data = estimate(model, gpu_mem, sets, space, gpu, gpus, headroom)
    if as_json:
        print(json.dumps(data, indent=2))
        return
    console = Console()
    verdict = "[green]fits[/]" if data["fits"] else "[red]does not fit[/]"
    console.print(f"[bold]{data['model']}[/] ({data['params']:,} parameters) on {gpu_mem}: usable "
                  f"{data['usable_budget_gib']:.2f} GiB. Trace probe: numbers are [yellow]estimated[/].")
    for note in data["notes"]:
        console.print(note, highlight=False)
    console.print("config: " + ", ".join(f"{k}={v}" for k, v in data["config"].items()))
    console.print(breakdown_table(data["breakdown_gib"], data["peak_memory_gib"]))
    times = Table(title=f"time per optimizer step on {data['gpu']} (s, estimated)")
    times.add_column("part")
    times.add_column("s", justify="right")
    for part, value in data["time_breakdown_s"].items():
        times.add_row(part.replace("_", "/"), f"{value:.3f}")
    times.add_row("[bold]step[/]", f"[bold]{data['step_time_s']:.3f}[/]")
    console.print(times)
    console.print(f"peak {data['peak_memory_gib']:.2f} GiB: {verdict}; throughput {data['tokens_per_s']:,.0f} "
                  f"tokens/s estimated for {data['gpu']} ({data['gpu_source']})")
