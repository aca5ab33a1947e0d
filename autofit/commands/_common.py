"""Option parsing shared by several subcommands."""

from __future__ import annotations

from pathlib import Path

import yaml

from ..errors import AutofitError
from ..gpus import GpuSpec, default_gpu_for_budget, detect_gpu, get_gpu
from ..knobs import parse_assignment, short_labels
from ..space import SearchSpace
from ..validation import check_storage_url, short, sqlite_url, study_names_in


def parse_pins(assignments: list[str] | None) -> dict:
    pins = {}
    for text in assignments or []:
        name, value = parse_assignment(text)
        pins[name] = value
    return pins


def load_space(path: str | None, pins: dict) -> SearchSpace:
    return SearchSpace.load(path).pinned(pins)


def choose_gpu(name: str | None, gpu_mem_bytes: int) -> tuple[GpuSpec, str]:
    """The card throughput is estimated for, and why: named, detected, or a default for the budget."""
    if name:
        return get_gpu(name), "named with --gpu"
    detected = detect_gpu()
    if detected is not None:
        return detected, "the GPU present"
    return default_gpu_for_budget(gpu_mem_bytes), "default for the budget; choose with --gpu"


# short knob names for tables and progress lines
SHORT = short_labels()  # knobs.yaml `short:`


def fmt_config(config: dict, keys: list[str] | None = None) -> str:
    return " ".join(f"{SHORT.get(k, k)}={config[k]}" for k in (keys or config))


def positive(value: int | None, flag: str) -> None:
    if value is not None and value < 1:
        raise AutofitError(f"{flag} must be at least 1")


def check_search_target(folder: Path, storage_url: str, default_storage: bool, study_name: str,
                        model_name: str) -> None:
    """Before a search creates anything: its storage must be usable (a folder that exists and is writable,
    a database that is Optuna's), and OUT must not hold another search, whose outputs this one would replace."""
    if not default_storage or folder.exists():
        check_storage_url(storage_url, reading=False)
    if not folder.is_dir():
        return
    others = [name for name in study_names_in(sqlite_url(folder / "study.db")) if name != study_name]
    if others:
        raise AutofitError(f"--out {folder} holds another search (study {others[0]!r}); its outputs would be "
                           f"replaced: use another --out")
    best = folder / "best-config.yaml"
    if best.is_file() and best.stat().st_size < 1 << 20:  # autofit's own file is a few KiB
        try:
            stored = yaml.safe_load(best.read_text(errors="replace"))
        except yaml.YAMLError:
            stored = None
        if isinstance(stored, dict) and stored.get("model") not in (None, model_name):
            raise AutofitError(f"--out {folder} holds the search of another model ({short(stored['model'])}); its "
                               f"outputs would be replaced: use another --out")


def breakdown_table(breakdown_gib: dict, peak_gib: float):
    """The peak-memory breakdown table shared by `estimate` and `check` (figures from the trace: estimated)."""
    from rich.table import Table

    table = Table(title="peak memory breakdown (GiB, estimated)")
    table.add_column("part")
    table.add_column("GiB", justify="right")
    for part, value in breakdown_gib.items():
        table.add_row(part, f"{value:.2f}")
    table.add_row("[bold]peak[/]", f"[bold]{peak_gib:.2f}[/]")
    return table
