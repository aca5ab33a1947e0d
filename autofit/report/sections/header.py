"""1. The header: model, budget, card, probe, dates, trials by state, library versions."""

from __future__ import annotations

from typing import Any

import optuna

from ...documents import library_versions
from ...trials import StudyAttr
from ..data import ReportData, study_timing
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
    dates = ""
    if timing["first"] is not None:
        dates = f"{timing['first']:%Y-%m-%d %H:%M}"
        if timing["last"] is not None and timing["last"].date() != timing["first"].date():
            dates += f" to {timing['last']:%Y-%m-%d %H:%M}"
        elif timing["last"] is not None:
            dates += f"–{timing['last']:%H:%M}"
    reserve, pins, space = a.get(StudyAttr.RESERVE_GIB), a.get(StudyAttr.PINS) or {}, a.get(StudyAttr.SPACE, "?")
    return render(
        "header.html.j2", a=a, params=fmt_count(a.get(StudyAttr.MODEL_PARAMS)),
        architecture=architecture(a.get(StudyAttr.MODEL_CONFIG) or {}),
        gpu_mem_gib=None if a.get(StudyAttr.GPU_MEM_GIB) is None else float(a[StudyAttr.GPU_MEM_GIB]),
        gpus=int(a.get(StudyAttr.GPUS) or 1),
        budget=data.budget, reserve=None if reserve is None else float(reserve),
        headroom=float(a.get(StudyAttr.HEADROOM) or 0), estimated=data.all_estimated,
        space=space, space_name=str(space).replace("\\", "/").rsplit("/", 1)[-1],
        candidates=int(a.get(StudyAttr.CANDIDATES) or 0),
        searched=", ".join(a.get(StudyAttr.SEARCHED_KNOBS) or data.varying) or "none",
        pins=", ".join(f"{k}={v}" for k, v in pins.items()), dates=dates,
        duration=fmt_duration(timing["span_s"]) if timing["span_s"] is not None else "?",
        probe_time=fmt_duration(timing["probe_s"]), counts=data.state_counts,
        running=sum(1 for t in data.trials if t.state == optuna.trial.TrialState.RUNNING),
        # the search records no versions: these are the ones installed here, and the page says so
        versions=", ".join(f"{k} {v}" for k, v in library_versions().items()),
        versions_source="installed where this report was built")
