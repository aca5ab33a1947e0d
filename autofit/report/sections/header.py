"""1. The header: model, budget, card, probe, dates, trials by state, library versions."""

from __future__ import annotations

from typing import Any

import optuna
import pandas as pd

from ..data import ReportData, study_timing, versions_of
from ..markup import fmt_count, fmt_duration
from ..render import render


def architecture(config: dict[str, Any]) -> str:
    if not config:
        return "?"
    parts = [str(config.get("model_type", "?"))]
    if config.get("architectures"):
        parts[0] += f" ({', '.join(map(str, config['architectures']))})"
    fields = [("num_hidden_layers", "{} layers"), ("hidden_size", "hidden {}"), ("intermediate_size", "FFN {}")]
    for key, text in fields:
        if config.get(key):
            parts.append(text.format(config[key]))
    if config.get("num_attention_heads"):
        heads = f"{config['num_attention_heads']} heads"
        kv = config.get("num_key_value_heads")
        if kv and kv != config["num_attention_heads"]:
            heads += f" ({kv} KV)"
        parts.append(heads)
    for key in ("num_local_experts", "num_experts", "n_routed_experts"):
        if config.get(key):
            parts.append(f"{config[key]} experts")
            break
    if config.get("vocab_size"):
        parts.append(f"vocab {int(config['vocab_size']):,}")
    if config.get("max_position_embeddings"):
        parts.append(f"max {int(config['max_position_embeddings']):,} positions")
    return " · ".join(parts)


def header_section(data: ReportData) -> str:
    a = data.attrs
    timing = study_timing(data)
    counts = data.frame["state"].value_counts() if len(data.frame) else pd.Series(dtype=int)
    dates = ""
    if timing["first"] is not None:
        dates = f"{timing['first']:%Y-%m-%d %H:%M}"
        if timing["last"] is not None and timing["last"].date() != timing["first"].date():
            dates += f" to {timing['last']:%Y-%m-%d %H:%M}"
        elif timing["last"] is not None:
            dates += f"–{timing['last']:%H:%M}"
    versions, versions_source = versions_of(a)
    reserve, pins, space = a.get("reserve_gib"), a.get("pins") or {}, a.get("space", "?")
    return render(
        "header.html.j2", a=a, params=fmt_count(a.get("model_params")),
        architecture=architecture(a.get("model_config") or {}),
        gpu_mem_gib=None if a.get("gpu_mem_gib") is None else float(a["gpu_mem_gib"]), gpus=int(a.get("gpus") or 1),
        budget=data.budget, reserve=None if reserve is None else float(reserve),
        headroom=float(a.get("headroom") or 0), estimated=data.all_estimated,
        space=space, space_name=str(space).replace("\\", "/").rsplit("/", 1)[-1],
        candidates=int(a.get("candidates") or 0), searched=", ".join(a.get("searched_knobs") or data.varying) or "none",
        pins=", ".join(f"{k}={v}" for k, v in pins.items()), dates=dates,
        duration=fmt_duration(timing["span_s"]) if timing["span_s"] is not None else "?",
        probe_time=fmt_duration(timing["probe_s"]), counts=[(str(s), int(n)) for s, n in counts.items()],
        running=sum(1 for t in data.trials if t.state == optuna.trial.TrialState.RUNNING),
        versions=", ".join(f"{k} {v}" for k, v in versions.items()), versions_source=versions_source)
