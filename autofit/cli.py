"""The `autofit` command line. Parsing and printing only; autofit's modules do the work."""

from __future__ import annotations

import gc
import sys
from typing import NoReturn

import typer

from . import cache
from .errors import AutofitError
from .validation import one_line

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Find the fastest way to fine-tune an LLM on the GPU memory you have.")

GPU_MEM_HELP = ("GPU memory per card, e.g. 24GB, 24GiB, 24G, 80gb, 16384MiB, 24576MB. GB and G mean GiB "
                "(24GB = 24 x 2^30 bytes), as cards are sold and as nvidia-smi counts.")
SET_HELP = "Pin a knob, e.g. --set seq_len=4096 --set quantization=nf4 (repeatable; any valid value)."


@app.command()
def search(
    model: str | None = typer.Option(None, help="Preset name (see `autofit models`), path to a config.json or its "
                                                   "folder, or a hub id in the local Hugging Face cache (required "
                                                   "unless --from names one)."),
    gpu_mem: str = typer.Option(..., "--gpu-mem", help=GPU_MEM_HELP),
    trials: int = typer.Option(40, help="Evaluated configurations the study should hold (rerunning continues)."),
    timeout: float | None = typer.Option(None, help="Wall-clock budget for the whole search, seconds."),
    seed: int | None = typer.Option(0, help="Sampler seed."),
    space: str | None = typer.Option(None, help="Search space YAML (default: search_spaces/default.yaml)."),
    sets: list[str] | None = typer.Option(None, "--set", help=SET_HELP),
    global_batch: int | None = typer.Option(None, "--global-batch",
                                               help="Keep batch x gradient accumulation x gpus equal to this."),
    gpus: int = typer.Option(1, help="Data-parallel GPUs (ZeRO partitions over them)."),
    gpu: str | None = typer.Option(None, help="Target card for throughput estimates: a10, l4, rtx3090, rtx4090, "
                                                 "a100-40gb, a100-80gb, l40s, h100, h200 (default: the GPU present, "
                                                 "else a card for the budget)."),
    probe: str = typer.Option("auto", help="auto|trace|cuda|cpu, or package.module:Class for a Probe of your own "
                                           "(auto: cuda with a CUDA GPU, else trace)."),
    out: str | None = typer.Option(None, help="Output folder (default reports/<model>-<gpu-mem>/)."),
    storage: str | None = typer.Option(None, help="Optuna storage: sqlite:///, postgresql://, mysql:// or "
                                                     "journal:///path/file.log (default sqlite:///<out>/study.db)."),
    study_name: str | None = typer.Option(None, "--study-name", help="Study name (default <model>-<gpu-mem>)."),
    headroom: float | None = typer.Option(None, help="Share of --gpu-mem kept free (default 0.05)."),
    probe_timeout: float | None = typer.Option(None, "--probe-timeout",
                                                  help="Seconds a real probe may run before it is killed "
                                                       "(default: sized from the model)."),
    screen_margin: float = typer.Option(0.10, "--screen-margin",
                                        help="Real probes: skip configurations the trace predicts above "
                                             "budget x (1 + margin), recorded oom-predicted."),
    no_screen: bool = typer.Option(False, "--no-screen", help="Real probes: run every configuration, no trace screen."),
    workers: int = typer.Option(1, help="Probes at a time on this machine (one GPU each); other machines join by "
                                        "running the same command against one PostgreSQL --storage."),
    seq_len: int | None = typer.Option(None, "--seq-len", help="Required tokens per sequence (default: the "
                                                                  "space's, 2048; never shortened to raise tokens/s)."),
    lora_rank: int | None = typer.Option(None, "--lora-rank", help="Required LoRA rank; 0 = full fine-tuning "
                                                                      "(default 16)."),
    quantization: str | None = typer.Option(None, "--quantization",
                                               help="Required base-weight quantization: none|int8|nf4 (default none; "
                                                    "a default none is conceded to nf4, stated, when nothing in "
                                                    "bf16 fits)."),
    data: str | None = typer.Option(None, "--data", help="Training set (JSON/JSONL, Parquet, CSV, alpaca or "
                                                            "sharegpt layout, a datasets folder): seq_len = its "
                                                            "longest sample in tokens."),
    truncate_share: float | None = typer.Option(None, "--truncate-share",
                                                   help="With --data: share of samples allowed to be truncated "
                                                        "(seq_len = that percentile), e.g. 0.01."),
    from_file: str | None = typer.Option(None, "--from", help="A LLaMA-Factory, axolotl or HF TrainingArguments "
                                                                 "file: its settings are the requirements; the "
                                                                 "recommendation is written back in its format."),
):
    """Search fine-tuning configurations; write the Pareto front, the recommended config and a report."""
    from .commands._requirements import requirement_inputs
    from .commands.search import search_command
    from .lifecycle import exit_status, sigterm_raises

    sigterm_raises()  # SIGTERM stops a search as Ctrl-C does: probe stopped, trial interrupted, outputs written
    try:
        inputs = requirement_inputs(model, seq_len, lora_rank, quantization, data, truncate_share, from_file,
                                    global_batch, gpus)
        search_command(inputs.model, gpu_mem, trials, timeout, seed, space, sets, inputs.global_batch, gpus, gpu, probe,
                       out, storage, study_name, headroom, workers, probe_timeout, None if no_screen else screen_margin,
                       given=inputs.given, notes=inputs.notes, global_batch_source=inputs.global_batch_source,
                       from_file=inputs.trainer)
    except KeyboardInterrupt as exc:  # before the search loop (its own handler writes the outputs)
        sys.exit(exit_status(exc))


@app.command()
def check(
    file: str = typer.Argument(..., help="A LLaMA-Factory YAML, an axolotl YAML or an HF TrainingArguments "
                                         "YAML/JSON (with the DeepSpeed JSON it names)."),
    gpu_mem: str = typer.Option(..., "--gpu-mem", help=GPU_MEM_HELP),
    model: str | None = typer.Option(None, help="The model, when the file names none (or to override it)."),
    gpu: str | None = typer.Option(None, help="Target card for the throughput estimates."),
    gpus: int = typer.Option(1, help="Data-parallel GPUs."),
    headroom: float | None = typer.Option(None, help="Share of --gpu-mem kept free (default 0.05)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
):
    """Does your trainer file fit? Peak memory against the budget, the breakdown, and when it does not fit the
    three configurations that fit with the fewest changes. Exit 0: fits, 1: does not fit, 2: bad input."""
    from .commands.check import check_command

    sys.exit(check_command(file, gpu_mem, model, gpu, gpus, headroom, as_json))


@app.command()
def estimate(
    model: str = typer.Option(..., help="Preset, config.json path or cached hub id."),
    gpu_mem: str = typer.Option(..., "--gpu-mem", help=GPU_MEM_HELP),
    sets: list[str] | None = typer.Option(None, "--set", help=SET_HELP + " Unset knobs take the space's defaults."),
    space: str | None = typer.Option(None, help="Space whose defaults fill unset knobs."),
    gpu: str | None = typer.Option(None, help="Target card for the throughput estimate."),
    gpus: int = typer.Option(1, help="Data-parallel GPUs."),
    headroom: float | None = typer.Option(None, help="Share of --gpu-mem kept free (default 0.05)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
):
    """Peak memory (with a breakdown) and tokens/s of one configuration, from a trace of a training step."""
    from .commands.estimate import estimate_command

    estimate_command(model, gpu_mem, sets, space, gpu, gpus, headroom, as_json)


@app.command()
def models(as_json: bool = typer.Option(False, "--json", help="Print JSON.")):
    """List the model presets with their parameter counts."""
    from .commands.models import models_command

    models_command(as_json)


@app.command()
def report(
    out: str = typer.Argument(..., help="A search's output folder."),
    storage: str | None = typer.Option(None, help="Storage URL if not OUT/study.db."),
    study_name: str | None = typer.Option(None, "--study-name"),
):
    """Rebuild OUT/report.html from the stored study."""
    from .commands.report import report_command

    report_command(out, storage, study_name)


@app.command()
def export(
    out: str = typer.Argument(..., help="A search's output folder."),
    fmt: str = typer.Option(..., "--format", help="llamafactory|hf|deepspeed|axolotl"),
    storage: str | None = typer.Option(None, help="Storage URL if not OUT/study.db."),
    study_name: str | None = typer.Option(None, "--study-name"),
):
    """Write the recommended configuration for LLaMA-Factory, HF Trainer, DeepSpeed or axolotl into OUT."""
    from .commands.export import export_command

    export_command(out, fmt, storage, study_name)


def _fail(message: str, code: int = 2) -> NoReturn:
    """One line on stderr and the exit status; a bad-input exit (2) also takes back what this run added to the
    on-disk cache, so bad input changes nothing on disk."""
    print(f"autofit: error: {message}", file=sys.stderr)
    if code == 2:
        cache.forget_this_run()
    sys.exit(code)


def main() -> None:
    cache.begin_run()
    try:
        app(standalone_mode=True)
    except AutofitError as exc:
        _fail(one_line(str(exc)), exc.exit_code)
    except (OSError, MemoryError) as exc:  # a full disk, a read-only or vanished folder mid-run
        _fail(one_line(str(exc) or type(exc).__name__))
    except Exception as exc:
        if type(exc).__module__.startswith("sqlalchemy"):  # the storage failed mid-run (disk full, server gone)
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            _fail(f"storage: {one_line(first)}")
        raise


def run() -> None:
    """The program's entry point (the `autofit` script and `python -m autofit`): `main`, then hand every object to
    the permanent generation, so that the garbage collections of the interpreter's shutdown skip them. With
    torch, transformers and peft loaded they walk about half a million objects, several times: about 1 s of a
    5.5 s cold `autofit estimate` on 2 cores, for nothing, as the process ends anyway. Exit handlers still run,
    and objects freed by reference counting (open files among them) are still closed. Tests call `main`
    in-process instead, where freezing would keep every later test's garbage."""
    try:
        main()
    finally:
        gc.freeze()
