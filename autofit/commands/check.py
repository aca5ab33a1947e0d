"""`autofit check FILE --gpu-mem 24GB [--json]`: does the user's own trainer file fit? Exit 0 when it fits, 1 when
it does not, 2 for bad input (raised as AutofitError)."""

from __future__ import annotations

import json

from rich.console import Console

from ..budget import make_budget
from ..concessions import TraceCache
from ..fixes import fewest_changes
from ..knobs import TrainingConfig
from ..probes import ProbeContext
from ..trials import Outcome
from ..rules import check_valid
from ..trainer_files import read_trainer_file
from ._common import breakdown_table, choose_gpu, positive


def check(file: str, gpu_mem: str, model: str | None, gpu: str | None, gpus: int,
          headroom: float | None) -> tuple[dict, dict]:
    """(the JSON answer, extra facts for the text output)."""
    positive(gpus, "--gpus")
    trainer = read_trainer_file(file)
    spec = trainer.model(model)
    budget = make_budget(gpu_mem, headroom)
    config = TrainingConfig.from_dict(trainer.knobs)
    check_valid(config, spec.facts)
    card, source = choose_gpu(gpu, budget.gpu_mem_bytes)
    cache = TraceCache(spec, ProbeContext(usable_budget_bytes=budget.usable_bytes, gpu=card, gpus=gpus))
    result = cache.run(config)
    fits = result.state == Outcome.OK
    fixes = [] if fits else fewest_changes(cache, config)
    answer = {"fits": fits, "peak_memory_gib": round(result.figures()[0], 3),
              "usable_budget_gib": round(budget.usable_gib, 3), "config": config.to_dict(),
              "suggestions": [f.to_dict() for f in fixes]}
    extra = {"model": spec.name, "format": trainer.format, "tokens_per_s": result.tokens_per_s,
             "breakdown_gib": result.breakdown_gib, "notes": trainer.notes, "gpu": card.key, "gpu_source": source,
             "stated": trainer.stated, "traces": len(cache)}
    return answer, extra


def check_command(file, gpu_mem, model, gpu, gpus, headroom, as_json) -> int:
    answer, extra = check(file, gpu_mem, model, gpu, gpus, headroom)
    if as_json:
        print(json.dumps(answer, indent=2))
        return 0 if answer["fits"] else 1
    console = Console()
    verdict = "[green]fits[/]" if answer["fits"] else "[red]does not fit[/]"
    console.print(f"{file} ({extra['format']} file), model {extra['model']}, --gpu-mem {gpu_mem}: "
                  f"usable {answer['usable_budget_gib']:.2f} GiB. Trace probe: figures are [yellow]estimated[/].")
    defaulted = [k for k in answer["config"] if k not in extra["stated"] and k != "allocator"]
    console.print("config: " + ", ".join(f"{k}={v}" for k, v in answer["config"].items()), highlight=False)
    if defaulted:
        console.print(f"  (not in the file, the trainer's default: {', '.join(defaulted)})", highlight=False)
    for note in extra["notes"]:
        console.print(f"  note: {note}", highlight=False)
    console.print(breakdown_table(extra["breakdown_gib"], answer["peak_memory_gib"]))
    console.print(f"peak {answer['peak_memory_gib']:.2f} GiB of {answer['usable_budget_gib']:.2f} GiB usable: "
                  f"{verdict}; {extra['tokens_per_s']:,.0f} tokens/s estimated for {extra['gpu']}", highlight=False)
    if not answer["fits"]:
        if not answer["suggestions"]:
            console.print("[red]No change autofit tries (checkpointing, batch, 8-bit optimizer, ZeRO offload, "
                          "quantization, seq_len, rank) makes it fit.[/]")
        else:
            console.print("Fewest changes that fit (quality-neutral first; estimated):")
            for i, fix in enumerate(answer["suggestions"], 1):
                changes = ", ".join(f"{k}={v}" for k, v in fix["changes"].items())
                console.print(f"  {i}. {changes}: peak {fix['peak_memory_gib']:.2f} GiB, "
                              f"{fix['tokens_per_s']:,.0f} tokens/s", highlight=False)
    return 0 if answer["fits"] else 1
