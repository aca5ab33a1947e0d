"""1. The header: model, budget, card, probe, dates, trials by state, library versions."""

from __future__ import annotations

from typing import Any

import optuna
import pandas as pd

from ..data import ReportData, study_timing, versions_of
from ..markup import badge, esc, fmt_count, fmt_duration, state_chip


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
    chips = " ".join(f"{state_chip(str(s))} {int(n)}" for s, n in counts.items()) or "none yet"
    running = sum(1 for t in data.trials if t.state == optuna.trial.TrialState.RUNNING)
    if running:
        chips += f" {state_chip('running')} {running}"
    versions, versions_source = versions_of(a)
    est = data.all_estimated
    gpus = int(a.get("gpus") or 1)
    date = "no trials yet"
    if timing["first"] is not None:
        date = f"{timing['first']:%Y-%m-%d %H:%M}"
        if timing["last"] is not None and timing["last"].date() != timing["first"].date():
            date += f" to {timing['last']:%Y-%m-%d %H:%M}"
        elif timing["last"] is not None:
            date += f"–{timing['last']:%H:%M}"
        date += " <span class='muted small'>(worker's local time)</span>"
    reserve = a.get("reserve_gib")
    budget_text = (f"<b>{esc(a.get('gpu_mem', '?'))}</b> per GPU"
                   + (f" = {float(a['gpu_mem_gib']):.2f} GiB" if a.get("gpu_mem_gib") is not None else "")
                   + (f" × {gpus} GPUs" if gpus > 1 else "")
                   + f"<br>usable <b>{data.budget:.2f} GiB</b>"
                   + (f" <span class='muted small'>(minus {float(reserve):.2f} GiB CUDA reserve, "
                      f"{esc(a.get('reserve_source', ''))}; {float(a.get('headroom') or 0):.0%} headroom)</span>"
                      if reserve is not None else ""))
    probe = a.get("probe", "?")
    probe_text = (f"<b>{esc(probe)}</b> {badge(est)}<br><span class='muted small'>"
                  + ("trace of the real training step on fake tensors; throughput from a performance model"
                     if est else "short real training runs; peak memory as torch measures it") + "</span>")
    space = a.get("space", "?")
    pins = a.get("pins") or {}
    space_name = str(space).replace("\\", "/").rsplit("/", 1)[-1]
    space_text = (f"<span title='{esc(space)}'>{esc(space_name)}</span><br><span class='muted small'>"
                  f"{int(a.get('candidates') or 0):,} valid configurations"
                  f"; searched: {esc(', '.join(a.get('searched_knobs') or data.varying) or 'none')}"
                  + (f"; pinned: {esc(', '.join(f'{k}={v}' for k, v in pins.items()))}" if pins else "")
                  + (f"; global batch {a['global_batch']}" if a.get("global_batch") else "") + "</span>")
    duration = fmt_duration(timing["span_s"]) if timing["span_s"] is not None else "?"
    facts = [
        ("Model", f"<b>{esc(a.get('model', '?'))}</b> · {fmt_count(a.get('model_params'))} parameters"
                  f"<br><span class='muted small'>{esc(architecture(a.get('model_config') or {}))}"
                  f"<br>loads as {esc(a.get('model_ref', '?'))}</span>"),
        ("Memory budget", budget_text),
        ("Throughput for", f"<b>{esc(a.get('gpu_name', a.get('gpu', '?')))}</b> "
                           f"<span class='muted small'>({esc(a.get('gpu_source', ''))})</span>"),
        ("Probe", probe_text),
        ("Search space", space_text),
        ("Date and duration", f"{date}<br>{duration} wall clock <span class='muted small'>("
                              f"{fmt_duration(timing['probe_s'])} in probes)</span>"),
        ("Trials by state", chips),
        ("Library versions", f"{esc(', '.join(f'{k} {v}' for k, v in versions.items()))}"
                             f"<br><span class='muted small'>{versions_source}</span>"),
    ]
    cards = "".join(f'<div class="fact"><div class="k">{k}</div><div class="v">{v}</div></div>' for k, v in facts)
    title = f"autofit: {esc(a.get('model', '?'))} on {esc(a.get('gpu_mem', '?'))}"
    return f"<header><h1>{title}</h1><div class='facts'>{cards}</div></header>"
