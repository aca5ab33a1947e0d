"""`autofit models`: the model presets with their parameter counts."""

from __future__ import annotations

import json

from rich.console import Console
from rich.table import Table

from ..models import load_preset, preset_names


def models_command(as_json: bool = False) -> None:
    presets = [load_preset(name) for name in preset_names()]
    if as_json:
        print(json.dumps([{"name": p.name, "params": p.params, "hf_ref": p.hf_ref, "model_type": p.model_type}
                          for p in presets], indent=2))
        return
    table = Table(title="autofit model presets (use with --model; a config.json path or cached hub id also works)")
    for column in ("preset", "parameters", "architecture", "layers", "max positions", "loads as"):
        table.add_column(column, justify="right" if column in ("parameters", "layers", "max positions") else "left")
    for p in presets:
        table.add_row(p.name, f"{p.params:,}", p.model_type, str(p.num_layers), f"{p.max_positions:,}", p.hf_ref)
    Console().print(table)
