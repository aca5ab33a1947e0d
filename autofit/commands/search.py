"""`autofit search`: the Pareto-optimal fine-tuning configurations for a GPU memory budget."""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from ..advice import compute_advice, enqueue_from_file, plan_with_requirements, summary_lines
from ..budget import probe_budget
from ..knobs import requirement_knobs
from ..requirements import resolve_requirements
from ..errors import AutofitError
from ..models import resolve_model
from ..outputs import ensure_writable_dir, write_outputs
from ..probes import get_probe
from ..results import pareto_frame, recommend
from ..search import SearchPlan, check_budget_reachable, evaluated_count, open_study, run_search
from ..lifecycle import exit_status
from ..trials import EVALUATED, Outcome, StudyAttr, TrialAttr, outcome_of
from ..validation import check_pins_for_model, check_search_options, sqlite_url
from ..workers import run_workers
from ..units import size_label
from ._common import SHORT, check_search_target, choose_gpu, fmt_config, load_space, parse_pins, positive

DEFAULT_TRIALS = 40  # about 1.5 s a trace of a 9B model on 2 cores: a default search stays within 5 minutes


class Progress:
    """Live view of a search: trial n/N, the configuration, its outcome, and the best so far."""

    def __init__(self, console: Console, plan: SearchPlan, already: int):
        self.console, self.plan = console, plan
        self.keys = plan.candidates.searched
        self.rows: list[tuple] = []
        self.current = ""
        self.best: tuple[float, float, int] | None = None
        self.done = already
        self.mark = " (est.)" if plan.probe.estimated else ""
        self.live = Live(self.render(), console=console, refresh_per_second=4, transient=False) \
            if console.is_terminal else None

    def render(self):
        table = Table(title=f"autofit search: {self.plan.model.name} on {self.plan.budget.gpu_mem_text} "
                            f"(usable {self.plan.budget.usable_gib:.2f} GiB, probe {self.plan.probe.name})")
        for column in ("trial", "configuration", "state", f"peak GiB{self.mark}", f"tokens/s{self.mark}"):
            table.add_column(column, justify="right" if column != "configuration" else "left")
        for row in self.rows[-12:]:
            table.add_row(*row)
        best = "none fits yet" if self.best is None else \
            f"best so far: trial {self.best[2]}, {self.best[0]:,.0f} tokens/s at {self.best[1]:.2f} GiB{self.mark}"
        return Group(table, Text(f"{self.done}/{self.plan.trials} evaluated. {self.current}"), Text(best))

    def start(self, number, config):
        self.current = f"probing trial {number}: {fmt_config(config.to_dict(), self.keys)}"
        self._refresh()

    def finish(self, trial):
        attrs = trial.user_attrs
        outcome = outcome_of(trial)
        state = "?" if outcome is None else outcome.value
        peak, tps = attrs.get(TrialAttr.PEAK_MEMORY_GIB), attrs.get(TrialAttr.TOKENS_PER_S)
        if outcome in EVALUATED:
            self.done += 1
        if outcome == Outcome.OK and (self.best is None or (tps, -peak) > (self.best[0], -self.best[1])):
            self.best = (tps, peak, trial.number)
        style = {Outcome.OK: "green", Outcome.OOM: "red", Outcome.INVALID: "yellow"}.get(outcome, "magenta")
        row = (f"{trial.number}", fmt_config(attrs.get(TrialAttr.CONFIG, {}), self.keys), f"[{style}]{state}[/]",
               "" if peak is None else f"{peak:.2f}", "" if tps is None else f"{tps:,.0f}")
        self.rows.append(row)
        self.current = ""
        if self.live is None:
            mark = " (predicted)" if outcome == Outcome.OOM_PREDICTED else self.mark
            self.console.print(f"trial {row[0]} {row[2]} {row[1]} peak {row[3]} GiB, {row[4]} tokens/s{mark}",
                               highlight=False)
        self._refresh()

    def _refresh(self):
        if self.live is not None:
            self.live.update(self.render())


def search_command(model, gpu_mem, trials, timeout, seed, space, sets, global_batch, gpus, gpu, probe, out,
                   storage, study_name, headroom, workers=1, probe_timeout=None, screen_margin=0.10,
                   given=None, notes=None, global_batch_source="--global-batch", from_file=None) -> None:
    """`given`: requirement knob -> (value, source) from --seq-len/--lora-rank/--quantization/--data/--from;
    `notes`: lines saying how they were derived; `from_file`: a TrainerFile to write the recommendation back to."""
    console = Console()
    if not console.is_terminal:
        console = Console(width=max(console.width, 160))  # logs and CI: keep tables whole
    positive(trials, "--trials")
    positive(gpus, "--gpus")
    positive(workers, "--workers")
    check_search_options(trials, timeout, seed, global_batch, gpus, workers, probe_timeout, screen_margin)
    spec = resolve_model(model)
    if screen_margin is not None and screen_margin < 0:
        raise AutofitError("--screen-margin must be zero or positive")
    prober = get_probe(probe, timeout_s=probe_timeout, screen_margin=screen_margin,
                       cpu_threads=max(1, (os.cpu_count() or 1) // workers))
    budget = probe_budget(gpu_mem, headroom, prober.capabilities)
    pins = parse_pins(sets)
    search_space = load_space(space, pins)
    check_pins_for_model(pins, spec.config, search_space.values)
    req = resolve_requirements(search_space, pins, given or {}, global_batch, global_batch_source)
    req.notes += list(notes or [])
    unpinned = load_space(space, {})
    space_values = {k: unpinned.values[k] for k in requirement_knobs()}
    card, card_source = choose_gpu(gpu, budget.gpu_mem_bytes)
    label = f"{spec.name}-{size_label(gpu_mem)}"
    folder = Path(out) if out else Path("reports") / label
    existed = ensure_writable_dir(folder)
    storage_url = storage or sqlite_url(folder / "study.db")
    check_search_target(folder, storage_url, default_storage=storage is None, study_name=study_name or label,
                        model_name=spec.name)

    def make_plan(requirement_pins):
        # the search is pinned to the requirements: every trial is a configuration the user can take
        return SearchPlan(model=spec, space=search_space.pinned(requirement_pins), pins={**pins, **requirement_pins},
                          budget=budget, gpu=card, gpu_source=card_source, probe=prober, trials=trials,
                          storage=storage_url, study_name=study_name or label,
                          timeout_s=timeout, seed=seed, gpus=gpus, global_batch=global_batch)

    plan = make_plan(req.pins())
    console.print(f"[bold]{spec.name}[/] ({spec.params:,} parameters), --gpu-mem {gpu_mem}: usable "
                  f"{budget.usable_gib:.2f} GiB (CUDA reserve {budget.reserve_bytes / 2**30:.2f} GiB "
                  f"{budget.reserve_source}, headroom {budget.headroom:.0%}). Throughput for {card.name} "
                  f"({card_source}). Probe: {prober.name}"
                  + (" - memory and tokens/s are [yellow]estimated[/]" if prober.estimated else "") + ".")
    console.print("Requirements (the recommendation meets them; anything else is shown as a concession): "
                  + "; ".join(req.describe()), highlight=False)
    plan = plan_with_requirements(make_plan, req, check_budget_reachable, space_values)
    if req.conceded:
        console.print("[yellow]Conceded[/]: nothing with the default "
                      + ", ".join(f"{k} {req.values[k]}" for k in req.conceded)
                      + " fits on one GPU without DeepSpeed offload; searching "
                      + ", ".join(f"{k} {v}" for k, v in req.conceded.items())
                      + " instead (pass the requirement explicitly to refuse this).", highlight=False)
    for note in plan.notes:
        console.print(note, highlight=False)
    console.print(f"{len(plan.candidates):,} valid configurations; searching {', '.join(plan.candidates.searched)}.",
                  highlight=False)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        study = open_study(plan)
        if from_file is not None:
            console.print(enqueue_from_file(plan, study, from_file), highlight=False)
    except BaseException:
        if not existed:
            shutil.rmtree(folder, ignore_errors=True)
        raise
    progress = Progress(console, plan, evaluated_count(study))
    started = time.monotonic()
    interrupted: KeyboardInterrupt | None = None
    try:
        if progress.live is not None:
            progress.live.start()
        if workers > 1:
            reason = run_workers(plan, study, workers, on_trial=progress.finish)
        else:
            reason = run_search(plan, study, on_trial=progress.finish, on_start=progress.start)
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM (lifecycle.Terminated)
        interrupted, reason = exc, "interrupted"
    finally:
        if progress.live is not None:
            progress.live.stop()
    if from_file is not None:
        study.set_user_attr(StudyAttr.FROM_FILE, from_file.to_attrs())
    if not interrupted:
        compute_advice(plan, study, req, space_values)
    else:
        study.set_user_attr(StudyAttr.REQUIREMENTS, req.to_attrs())
    written = write_outputs(study, folder)
    _print_summary(console, study, plan, reason, time.monotonic() - started, written)
    if interrupted is not None:
        sys.exit(exit_status(interrupted))


def _print_summary(console, study, plan, reason, elapsed, written) -> None:
    mark = " (estimated)" if plan.probe.estimated else ""
    why = {"trials": f"{plan.trials} configurations evaluated", "exhausted": "no configuration left to probe",
           "timeout": "--timeout reached", "interrupted": "interrupted"}[reason]
    console.print(f"Search finished in {elapsed:.0f} s: {why}.")
    front = pareto_frame(study)
    if not front.empty:
        table = Table(title=f"Pareto front: tokens/s against peak GPU memory{mark}")
        keys = plan.candidates.searched
        for column in ("trial", *(SHORT.get(k, k) for k in keys), "peak GiB", "tokens/s"):
            table.add_column(column, justify="right")
        for _, row in front.iterrows():
            table.add_row(str(row["number"]), *(str(row[k]) for k in keys), f"{row['peak_memory_gib']:.2f}",
                          f"{row['tokens_per_s']:,.0f}")
        console.print(table)
    rec = recommend(study)
    if rec is None:
        console.print(f"[red]No configuration tried fits the usable budget of {plan.budget.usable_gib:.2f} GiB.[/]")
    else:
        console.print(f"[bold green]Recommended[/] (trial {rec.trial.number}): {fmt_config(rec.config)}")
        console.print(f"  peak {rec.peak_memory_gib:.2f} GiB of {plan.budget.usable_gib:.2f} GiB usable, "
                      f"{rec.tokens_per_s:,.0f} tokens/s{mark}", highlight=False)
    for line in summary_lines(study, rec):
        console.print(line, highlight=False)
    console.print("Wrote: " + ", ".join(str(p) for p in written), highlight=False)
