"""report.html: one self-contained page to review a search and pick a configuration.

Built from the stored study alone (study and trial user attributes, trial timestamps), so `autofit report OUT`
rebuilds the same page a search wrote. Plotly's JS is inlined once; the page loads nothing from the network and
opens from file://. Top to bottom:

1. header: model, budget, card, probe, dates, trials by state, library versions
2. the recommended configuration: knobs, peak memory against the budget, tokens/s, its files with copy buttons
3. the Pareto front (tokens/s against peak memory) with the budget line and the infeasible trials greyed
4. memory breakdown of the Pareto configurations
5. knob effects: parallel coordinates, Optuna's importances per objective, memory against batch and seq_len
6. history: hypervolume and best tokens/s over trials, a timeline of probes by state
7. every trial in a sortable, filterable table
8. when real probes ran: predicted against measured peak memory

A figure that cannot be drawn for this study (too few trials, no real probes, ...) is replaced by a note saying
why; nothing here may stop a search from writing its outputs.
"""

from __future__ import annotations

import html
import json
import math
import warnings
from dataclasses import dataclass, field
from typing import Any
from collections.abc import Callable

import optuna
import pandas as pd
import plotly.graph_objects as go
from plotly.offline import get_plotlyjs

from . import exports
from .documents import export_context, library_versions, render_best_config
from .knobs import KNOBS
from .report_advice import requirements_section, seq_len_section
from .results import Recommendation, pareto_frame, recommend, trials_frame

CATEGORIES = ("weights", "gradients", "optimizer", "activations", "logits", "other")
CATEGORY_COLORS = {"weights": "#4c78a8", "gradients": "#f58518", "optimizer": "#54a24b", "activations": "#e45756",
                   "logits": "#b279a2", "other": "#9d9da0"}
STATE_COLORS = {"ok": "#2f7ed8", "oom": "#8c8c8c", "oom-predicted": "#b5b5b5", "oom-inferred": "#d0d0d0",
                "invalid": "#9467bd", "failed": "#d62728", "timeout": "#a0522d", "lost": "#bcbd22",
                "interrupted": "#e5a50a", "running": "#17becf"}
QUANT_COLORS = {"none": "#4c78a8", "int8": "#f58518", "nf4": "#54a24b"}
OOM_STATES = ("oom", "oom-predicted", "oom-inferred")
SHORT = {"per_device_train_batch_size": "batch", "gradient_accumulation_steps": "accum", "seq_len": "seq_len",
         "lora_rank": "lora_rank", "quantization": "quant", "gradient_checkpointing": "ckpt",
         "zero_stage": "zero", "offload": "offload", "optimizer": "optimizer", "attn_implementation": "attn",
         "allocator": "allocator"}
EST_TITLE = ("from the trace probe: the real model's training step on fake tensors, with a performance model of "
             "the card for tokens/s. Not a measurement")
PLOTLY_CONFIG = {"displaylogo": False, "responsive": True,
                 "toImageButtonOptions": {"format": "png", "scale": 2}}
PARALLEL_MAX_LINES = 200
FONT = "system-ui, -apple-system, Segoe UI, Roboto, sans-serif"

_CSS = """
:root{--fg:#1d2329;--muted:#5f6b76;--line:#e3e7eb;--bg:#f7f8fa;--accent:#2f7ed8;--est:#a15c00;--estbg:#fff3df}
*{box-sizing:border-box}
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:0;color:var(--fg);background:#fff;
 line-height:1.45}
main{max-width:1280px;margin:0 auto;padding:1.5rem 2rem 4rem}
h1{font-size:1.6rem;margin:.2rem 0 .3rem}h2{font-size:1.25rem;margin:2.4rem 0 .6rem;padding-top:.4rem;
 border-top:1px solid var(--line)}h3{font-size:1rem;margin:1.2rem 0 .4rem}
p{margin:.4rem 0}.muted{color:var(--muted)}.small{font-size:.85rem}
nav{display:flex;flex-wrap:wrap;gap:.3rem 1rem;font-size:.9rem;margin:.6rem 0 1rem}
nav a{color:var(--accent);text-decoration:none}nav a:hover{text-decoration:underline}
.badge{display:inline-block;border-radius:999px;padding:0 .55rem;font-size:.78rem;font-weight:600;
 vertical-align:middle;line-height:1.5;white-space:nowrap}
.est{background:var(--estbg);color:var(--est);border:1px solid #f0c987}
.meas{background:#e5f5e8;color:#1e6b30;border:1px solid #a9d9b4}
.state{color:#fff}
.facts{display:grid;grid-template-columns:repeat(auto-fill,minmax(280px,1fr));gap:.6rem;margin:.8rem 0}
.fact{background:var(--bg);border:1px solid var(--line);border-radius:8px;padding:.55rem .8rem}
.fact .k{font-size:.75rem;text-transform:uppercase;letter-spacing:.04em;color:var(--muted)}
.fact .v{font-size:.95rem;overflow-wrap:anywhere}
.kpis{display:flex;flex-wrap:wrap;gap:.8rem;margin:.6rem 0 1rem}
.kpi{border:1px solid var(--line);border-radius:10px;padding:.6rem 1rem;min-width:200px}
.kpi .n{font-size:1.7rem;font-weight:650}.kpi .k{font-size:.8rem;color:var(--muted)}
.gauge{position:relative;height:22px;background:#eef1f4;border-radius:6px;margin:.3rem 0 .2rem;overflow:hidden;
 max-width:720px}
.gauge .used{position:absolute;left:0;top:0;bottom:0;background:var(--accent)}
.gauge .reserve{position:absolute;top:0;bottom:0;right:0;background:repeating-linear-gradient(45deg,#d5d9de 0,
 #d5d9de 4px,#e6e9ec 4px,#e6e9ec 8px)}
.gauge .limit{position:absolute;top:-2px;bottom:-2px;width:2px;background:#d62728}
.knobs{display:grid;grid-template-columns:repeat(auto-fill,minmax(230px,1fr));gap:.25rem 1rem;margin:.5rem 0 1rem;
 font-size:.9rem}
.knobs div{border-bottom:1px dotted var(--line);display:flex;justify-content:space-between;gap:.5rem}
.knobs b{font-weight:600}
.tabs{display:flex;gap:.2rem;border-bottom:1px solid var(--line);margin-top:.6rem;flex-wrap:wrap}
.tabs button{border:1px solid var(--line);border-bottom:none;background:var(--bg);padding:.35rem .8rem;
 border-radius:6px 6px 0 0;cursor:pointer;font:inherit;font-size:.88rem}
.tabs button.on{background:#fff;font-weight:600;position:relative;top:1px}
.panel{display:none;border:1px solid var(--line);border-top:none;border-radius:0 0 6px 6px;padding:.5rem}
.panel.on{display:block}
.panel .bar{display:flex;justify-content:space-between;align-items:center;font-size:.85rem;color:var(--muted);
 margin-bottom:.3rem}
pre{background:#f6f8fa;border:1px solid var(--line);border-radius:6px;padding:.7rem;overflow:auto;max-height:420px;
 margin:0;font-size:.8rem;line-height:1.35}
button.copy{font:inherit;font-size:.82rem;padding:.25rem .8rem;border:1px solid var(--accent);color:var(--accent);
 background:#fff;border-radius:6px;cursor:pointer}button.copy:hover{background:#eaf2fc}
.grid2{display:grid;grid-template-columns:minmax(0,1fr) minmax(0,1fr);gap:1rem}
@media (max-width:900px){.grid2{grid-template-columns:minmax(0,1fr)}}
.figure{min-height:120px}
.note{background:var(--bg);border-left:3px solid #c3cad1;padding:.5rem .8rem;font-size:.88rem;color:var(--muted);
 margin:.5rem 0}
.note.error{border-left-color:#d62728;color:#8b1a1a}
table{border-collapse:collapse;font-size:.82rem}
td,th{border-bottom:1px solid var(--line);padding:.25rem .45rem;text-align:right;white-space:nowrap}
th{background:var(--bg);position:sticky;top:0;z-index:1}
td.t,th.t{text-align:left}
.tablewrap{max-height:75vh;overflow:auto;border:1px solid var(--line);border-radius:6px}
#trials thead th.sort{cursor:pointer;user-select:none}#trials thead th.sort:hover{background:#eceff2}
#trials thead th[data-dir=asc]::after{content:' \\25B2';font-size:.7em}
#trials thead th[data-dir=desc]::after{content:' \\25BC';font-size:.7em}
#trials thead tr.filters th{background:#fff;top:1.75rem;padding:.15rem .2rem}
#trials thead tr.filters input{width:100%;min-width:2.5rem;font:inherit;font-size:.78rem;padding:.1rem .25rem;
 border:1px solid var(--line);border-radius:4px}
#trials tbody tr:hover{background:#f3f7fc}#trials tr.rec{background:#fff8e6}#trials tr.front td.mark{color:#f58518}
td.e{color:var(--est);font-style:italic}td.err{max-width:28rem;overflow:hidden;text-overflow:ellipsis;
 text-align:left;color:var(--muted)}
.controls{display:flex;flex-wrap:wrap;gap:.4rem .8rem;align-items:center;margin:.4rem 0 .6rem;font-size:.88rem}
.controls label{display:inline-flex;gap:.25rem;align-items:center;cursor:pointer}
.controls input[type=search]{font:inherit;font-size:.85rem;padding:.2rem .5rem;min-width:16rem;
 border:1px solid var(--line);border-radius:6px}
footer{margin-top:3rem;color:var(--muted);font-size:.8rem}
"""

_JS = r"""
(function(){
  function flash(btn, text){var old=btn.dataset.label||btn.textContent;btn.dataset.label=old;btn.textContent=text;
    setTimeout(function(){btn.textContent=old;},1500);}
  function fallbackCopy(text){var ta=document.createElement('textarea');ta.value=text;ta.setAttribute('readonly','');
    ta.style.position='fixed';ta.style.opacity='0';document.body.appendChild(ta);ta.select();var ok=false;
    try{ok=document.execCommand('copy');}catch(e){ok=false;}document.body.removeChild(ta);return ok;}
  document.querySelectorAll('button.copy').forEach(function(btn){
    btn.addEventListener('click',function(){
      var text=document.getElementById(btn.dataset.target).textContent;
      function done(){flash(btn,'Copied');} function fail(){flash(btn,fallbackCopy(text)?'Copied':'Select and copy');}
      if(navigator.clipboard&&window.isSecureContext){navigator.clipboard.writeText(text).then(done,fail);}else{fail();}
    });});
  document.querySelectorAll('.tabs').forEach(function(tabs){
    tabs.querySelectorAll('button').forEach(function(b){b.addEventListener('click',function(){
      tabs.querySelectorAll('button').forEach(function(x){x.classList.toggle('on',x===b);});
      var group=tabs.dataset.group;
      document.querySelectorAll('.panel[data-group="'+group+'"]').forEach(function(p){
        p.classList.toggle('on',p.id===b.dataset.panel);});});});});

  var table=document.getElementById('trials'); if(!table) return;
  var tbody=table.tBodies[0], rows=Array.prototype.slice.call(tbody.rows);
  var heads=Array.prototype.slice.call(table.querySelectorAll('thead tr.names th'));
  var inputs=Array.prototype.slice.call(table.querySelectorAll('thead tr.filters input'));
  var boxes=Array.prototype.slice.call(document.querySelectorAll('#state-filter input'));
  var search=document.getElementById('trial-search'), shown=document.getElementById('trials-shown');
  function cellValue(row,i){var c=row.cells[i];var v=c.getAttribute('data-v');
    if(v===null)return {num:NaN,text:c.textContent.trim().toLowerCase()};
    return {num:v===''?NaN:parseFloat(v),text:c.textContent.trim().toLowerCase()};}
  function test(expr,val){expr=expr.trim(); if(!expr)return true; var neg=false;
    if(expr[0]==='!'&&expr[1]!=='='){neg=true;expr=expr.slice(1).trim();}
    var m=/^(<=|>=|!=|<|>|=)\s*(-?\d*\.?\d+(e-?\d+)?)$/i.exec(expr), r;
    if(m){var x=parseFloat(m[2]),v=val.num; if(isNaN(v))r=false; else r={'<':v<x,'<=':v<=x,'>':v>x,'>=':v>=x,
      '=':Math.abs(v-x)<=1e-9*Math.max(1,Math.abs(x)),'!=':Math.abs(v-x)>1e-9*Math.max(1,Math.abs(x))}[m[1]];}
    else if(/^-?\d*\.?\d+$/.test(expr)&&!isNaN(val.num)){
      r=Math.abs(val.num-parseFloat(expr))<=1e-9*Math.max(1,Math.abs(val.num));}
    else r=val.text.indexOf(expr.toLowerCase())>=0;
    return neg?!r:r;}
  function apply(){var states={};boxes.forEach(function(b){states[b.value]=b.checked;});
    var q=(search&&search.value||'').trim().toLowerCase(), n=0;
    rows.forEach(function(row){var ok=states[row.dataset.state]!==false;
      if(ok&&q)ok=row.textContent.toLowerCase().indexOf(q)>=0;
      for(var i=0;ok&&i<inputs.length;i++){
        if(inputs[i].value)ok=test(inputs[i].value,cellValue(row,+inputs[i].dataset.col));}
      row.style.display=ok?'':'none'; if(ok)n++;});
    if(shown)shown.textContent=n+' of '+rows.length+' trials shown';}
  heads.forEach(function(th,i){if(!th.classList.contains('sort'))return;th.addEventListener('click',function(){
    var dir=th.dataset.dir==='asc'?'desc':'asc'; heads.forEach(function(h){delete h.dataset.dir;}); th.dataset.dir=dir;
    var s=dir==='asc'?1:-1;
    rows.sort(function(a,b){var x=cellValue(a,i),y=cellValue(b,i);
      if(!isNaN(x.num)||!isNaN(y.num)){if(isNaN(x.num))return 1;if(isNaN(y.num))return -1;return s*(x.num-y.num);}
      return s*x.text.localeCompare(y.text);});
    rows.forEach(function(r){tbody.appendChild(r);});});});
  inputs.forEach(function(x){x.addEventListener('input',apply);});
  boxes.forEach(function(x){x.addEventListener('change',apply);});
  if(search)search.addEventListener('input',apply);
  apply();
})();
"""


_DRAW_JS = """
(function(){
  var config = __PLOTLY_CONFIG__;
  document.querySelectorAll('script.figure-spec').forEach(function(spec){
    var fig = JSON.parse(spec.textContent), div = document.getElementById(spec.dataset.for);
    Plotly.newPlot(div, fig.data, fig.layout, config);
  });
})();
""".replace("__PLOTLY_CONFIG__", json.dumps(PLOTLY_CONFIG))


# ----------------------------------------------------------------------------------------------------------
# the data every section reads


@dataclass
class _Data:
    study: optuna.Study
    attrs: dict[str, Any]
    trials: list[optuna.trial.FrozenTrial]
    frame: pd.DataFrame  # results.trials_frame, plus columns: plot_memory_gib, plot_tokens_per_s, config_text
    front: pd.DataFrame
    rec: Recommendation | None
    budget: float
    varying: list[str]  # knobs with more than one value among the trials
    constant: dict[str, Any]  # knobs with one value in every trial
    by_number: dict[int, optuna.trial.FrozenTrial] = field(default_factory=dict)

    @property
    def all_estimated(self) -> bool:
        values = [v for v in self.frame["estimated"] if v is not None and not _isnan(v)]
        return all(map(bool, values)) if values else self.study_estimated

    @property
    def study_estimated(self) -> bool:
        return bool(self.attrs.get("estimated"))

    def estimated_rows(self, rows: pd.DataFrame) -> str:
        """'' when no row is estimated, ' (estimated)' when all are, ' (partly estimated)' otherwise."""
        est = rows["estimated"].map(_truthy) if len(rows) else pd.Series([], dtype=bool)
        if not len(est):
            return " (estimated)" if self.study_estimated else ""
        if est.all():
            return " (estimated)"
        return " (partly estimated)" if est.any() else ""


def _load(study: optuna.Study) -> _Data:
    attrs = dict(study.user_attrs)
    trials = study.get_trials(deepcopy=False)
    by_number = {t.number: t for t in trials}
    frame = trials_frame(study)
    budget = float(attrs.get("usable_budget_gib") or 0.0)

    def memory(row) -> float | None:
        for key in ("peak_memory_gib", "predicted_peak_gib", "peak_allocated_gib"):
            value = row.get(key)
            if value is not None and not _isnan(value):
                return float(value)
        return None

    def tokens(row) -> float | None:
        value = row.get("tokens_per_s")
        if value is not None and not _isnan(value):
            return float(value)
        details = by_number[row["number"]].user_attrs.get("details") or {}
        value = details.get("predicted_tokens_per_s")
        return float(value) if value is not None else None

    if len(frame):
        frame["plot_memory_gib"] = [memory(r) for _, r in frame.iterrows()]
        frame["plot_tokens_per_s"] = [tokens(r) for _, r in frame.iterrows()]
    else:
        frame["plot_memory_gib"] = pd.Series(dtype=float)
        frame["plot_tokens_per_s"] = pd.Series(dtype=float)
    varying, constant = [], {}
    for knob in KNOBS:
        values = frame[knob].dropna().map(str).unique() if len(frame) else []
        if len(values) > 1:
            varying.append(knob)
        elif len(values) == 1:
            constant[knob] = frame[knob].dropna().iloc[0]
    frame["config_text"] = [_config_text(r) for _, r in frame.iterrows()] if len(frame) else []
    numbers = list(pareto_frame(study)["number"])  # in its order: by peak memory
    front = frame.set_index("number", drop=False).loc[numbers].reset_index(drop=True) if numbers else frame.iloc[0:0]
    return _Data(study=study, attrs=attrs, trials=trials, frame=frame, front=front,
                 rec=recommend(study), budget=budget, varying=varying, constant=constant, by_number=by_number)


def _isnan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)


def _truthy(value: Any) -> bool:
    """bool() that reads a missing value (None, NaN) as False."""
    return value is not None and not _isnan(value) and bool(value)


def _num(value: Any) -> float | None:
    """The value as a float (numbers and numeric text), or None when missing, NaN or not a number."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number


def _config_text(row: pd.Series) -> str:
    """Hover text: the trial, its outcome and its full configuration (escaped: plotly renders hover as HTML)."""
    lines = [f"<b>trial {int(row['number'])}</b>: {html.escape(str(row['state']))}"]
    mem, tps = _num(row.get("plot_memory_gib")), _num(row.get("plot_tokens_per_s"))
    est = " (estimated)" if _truthy(row.get("estimated")) else ""
    if mem is not None:
        lines.append(f"peak {mem:.3f} GiB{est}")
    if tps is not None:
        lines.append(f"{tps:,.0f} tokens/s{est}")
    for knob in KNOBS:
        if knob in row and row[knob] is not None and not _isnan(row[knob]):
            lines.append(f"{html.escape(knob)} = {html.escape(str(row[knob]))}")
    if isinstance(row.get("error"), str) and row["error"]:
        text = row["error"]
        lines.append("<i>" + html.escape(text[:120] + ("..." if len(text) > 120 else "")) + "</i>")
    return "<br>".join(lines)


# ----------------------------------------------------------------------------------------------------------
# small HTML helpers


def _esc(value: Any) -> str:
    return html.escape(str(value))


def _badge(estimated: bool) -> str:
    if estimated:
        return f'<span class="badge est" title="{_esc(EST_TITLE)}">estimated</span>'
    return '<span class="badge meas" title="measured by a real training run">measured</span>'


def _state_chip(state: str) -> str:
    color = STATE_COLORS.get(state, "#666")
    text_color = "#333" if state in ("oom-predicted", "oom-inferred", "lost") else "#fff"
    return f'<span class="badge state" style="background:{color};color:{text_color}">{_esc(state)}</span>'


def _note(text: str, error: bool = False) -> str:
    return f'<div class="note{" error" if error else ""}">{text}</div>'


def _fmt_count(n: float | None) -> str:
    if n is None:
        return "?"
    for size, unit in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K")):
        if abs(n) >= size:
            return f"{n / size:.2f} {unit}"
    return f"{n:.0f}"


def _fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    if minutes:
        return f"{minutes} min {secs:02d} s"
    return f"{secs} s"


def _si(value: float) -> str:
    """1590 -> 1.59k, 2235449 -> 2.24M."""
    for size, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= size:
            return f"{value / size:.3g}{unit}"
    return f"{value:.3g}"


class _Figures:
    """Collects figures as HTML divs. A figure builder that raises leaves a visible note instead of the figure."""

    def __init__(self):
        self.count = 0

    def html(self, build: Callable[[], go.Figure | str], name: str) -> str:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fig = build()
        except Exception as exc:  # a report must never take the search's outputs down with it
            return _note(f"The {_esc(name)} figure could not be drawn: {_esc(type(exc).__name__)}: {_esc(exc)}",
                         error=True)
        if isinstance(fig, str):  # a note explaining why this study has no such figure
            return fig
        self.count += 1
        fig.update_layout(template="plotly_white", font={"family": FONT, "size": 12},
                          margin={"l": 60, "r": 30, "t": 60, "b": 55}, hoverlabel={"align": "left"})
        # The figure's JSON waits in the page and is drawn once plotly has loaded at the end of the page, so the
        # header and the recommendation show before plotly's start-up. "</" is escaped to keep the script closed.
        ident = f"fig-{self.count}-{name.replace(' ', '-')}"
        spec = fig.to_json(validate=False).replace("</", "<\\/")
        height = int(fig.layout.height or 450)
        return (f'<div class="figure"><div id="{ident}" class="plot" style="height:{height}px"></div>'
                f'<script type="application/json" class="figure-spec" data-for="{ident}">{spec}</script></div>')


def _budget_line(fig: go.Figure, budget: float, axis: str = "x", log: bool = False, **kwargs) -> None:
    if budget <= 0:
        return
    add = fig.add_vline if axis == "x" else fig.add_hline
    text = f"usable budget {budget:.2f} GiB"
    if not log:
        add(budget, line_dash="dash", line_color="#d62728", line_width=1.5, annotation_text=text,
            annotation_font_color="#d62728", **kwargs)
        return
    # on a log axis a shape takes the value but an annotation takes its log10
    add(budget, line_dash="dash", line_color="#d62728", line_width=1.5)
    fig.add_annotation(text=text, font_color="#d62728", showarrow=False, xref="paper", x=0, xanchor="left",
                       y=math.log10(budget), yref=axis, yanchor="bottom")


# ----------------------------------------------------------------------------------------------------------
# 1. header


def _architecture(config: dict[str, Any]) -> str:
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


def _timing(data: _Data) -> dict[str, Any]:
    starts = [t.datetime_start for t in data.trials if t.datetime_start is not None]
    ends = [t.datetime_complete for t in data.trials if t.datetime_complete is not None]
    probe_s = sum(float(t.user_attrs.get("duration_s") or 0.0) for t in data.trials)
    first = min(starts) if starts else None
    last = max(ends) if ends else None
    return {"first": first, "last": last, "span_s": (last - first).total_seconds() if first and last else None,
            "probe_s": probe_s}


def _versions(attrs: dict[str, Any]) -> tuple[dict[str, str], str]:
    stored = attrs.get("versions")
    if isinstance(stored, dict) and stored:
        return {str(k): str(v) for k, v in stored.items()}, "recorded by the search"
    return library_versions(), "installed where this report was built"


def _header(data: _Data) -> str:
    a = data.attrs
    timing = _timing(data)
    counts = data.frame["state"].value_counts() if len(data.frame) else pd.Series(dtype=int)
    chips = " ".join(f"{_state_chip(str(s))} {int(n)}" for s, n in counts.items()) or "none yet"
    running = sum(1 for t in data.trials if t.state == optuna.trial.TrialState.RUNNING)
    if running:
        chips += f" {_state_chip('running')} {running}"
    versions, versions_source = _versions(a)
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
    budget_text = (f"<b>{_esc(a.get('gpu_mem', '?'))}</b> per GPU"
                   + (f" = {float(a['gpu_mem_gib']):.2f} GiB" if a.get("gpu_mem_gib") is not None else "")
                   + (f" × {gpus} GPUs" if gpus > 1 else "")
                   + f"<br>usable <b>{data.budget:.2f} GiB</b>"
                   + (f" <span class='muted small'>(minus {float(reserve):.2f} GiB CUDA reserve, "
                      f"{_esc(a.get('reserve_source', ''))}; {float(a.get('headroom') or 0):.0%} headroom)</span>"
                      if reserve is not None else ""))
    probe = a.get("probe", "?")
    probe_text = (f"<b>{_esc(probe)}</b> {_badge(est)}<br><span class='muted small'>"
                  + ("trace of the real training step on fake tensors; throughput from a performance model"
                     if est else "short real training runs; peak memory as torch measures it") + "</span>")
    space = a.get("space", "?")
    pins = a.get("pins") or {}
    space_name = str(space).replace("\\", "/").rsplit("/", 1)[-1]
    space_text = (f"<span title='{_esc(space)}'>{_esc(space_name)}</span><br><span class='muted small'>"
                  f"{int(a.get('candidates') or 0):,} valid configurations"
                  f"; searched: {_esc(', '.join(a.get('searched_knobs') or data.varying) or 'none')}"
                  + (f"; pinned: {_esc(', '.join(f'{k}={v}' for k, v in pins.items()))}" if pins else "")
                  + (f"; global batch {a['global_batch']}" if a.get("global_batch") else "") + "</span>")
    duration = _fmt_duration(timing["span_s"]) if timing["span_s"] is not None else "?"
    facts = [
        ("Model", f"<b>{_esc(a.get('model', '?'))}</b> · {_fmt_count(a.get('model_params'))} parameters"
                  f"<br><span class='muted small'>{_esc(_architecture(a.get('model_config') or {}))}"
                  f"<br>loads as {_esc(a.get('model_ref', '?'))}</span>"),
        ("Memory budget", budget_text),
        ("Throughput for", f"<b>{_esc(a.get('gpu_name', a.get('gpu', '?')))}</b> "
                           f"<span class='muted small'>({_esc(a.get('gpu_source', ''))})</span>"),
        ("Probe", probe_text),
        ("Search space", space_text),
        ("Date and duration", f"{date}<br>{duration} wall clock <span class='muted small'>("
                              f"{_fmt_duration(timing['probe_s'])} in probes)</span>"),
        ("Trials by state", chips),
        ("Library versions", f"{_esc(', '.join(f'{k} {v}' for k, v in versions.items()))}"
                             f"<br><span class='muted small'>{versions_source}</span>"),
    ]
    cards = "".join(f'<div class="fact"><div class="k">{k}</div><div class="v">{v}</div></div>' for k, v in facts)
    title = f"autofit: {_esc(a.get('model', '?'))} on {_esc(a.get('gpu_mem', '?'))}"
    return f"<header><h1>{title}</h1><div class='facts'>{cards}</div></header>"


# ----------------------------------------------------------------------------------------------------------
# 2. recommendation


def _trainer_files(data: _Data) -> list[tuple[str, str, str]]:
    """(label, filename, text) for the recommendation: autofit, LLaMA-Factory, HF Trainer, and DeepSpeed when
    the recommendation uses ZeRO."""
    files = [("autofit", "best-config.yaml", render_best_config(data.study, data.rec))]
    context = export_context(data.study, data.rec)
    deepspeed = None
    for fmt, label in (("llamafactory", "LLaMA-Factory"), ("hf", "HF Trainer")):
        for name, text in exports.render(fmt, context).items():
            if name == exports.DS_FILENAME:
                deepspeed = (name, text)
            else:
                files.append((label, name, text))
    if deepspeed is not None:
        files.append(("DeepSpeed", *deepspeed))
    return files


def _recommendation(data: _Data) -> str:
    rec, a = data.rec, data.attrs
    if rec is None:
        closest = data.frame.dropna(subset=["plot_memory_gib"]).sort_values("plot_memory_gib").head(1)
        extra = ""
        if len(closest):
            row = closest.iloc[0]
            extra = (f" The smallest configuration probed, trial {int(row['number'])}, needs "
                     f"{row['plot_memory_gib']:.2f} GiB{' (estimated)' if _truthy(row['estimated']) else ''} against "
                     f"{data.budget:.2f} GiB usable.")
        return ("<section id='recommended'><h2>Recommended configuration</h2>"
                + _note(f"<b>No configuration fits the budget.</b>{_esc(extra)} Give more memory (--gpu-mem), "
                        "or widen the space towards smaller configurations (4-bit quantization, "
                        "gradient checkpointing, shorter sequences, ZeRO offload).") + "</section>")
    est = rec.estimated
    mark = " (estimated)" if est else ""
    card = float(a.get("gpu_mem_gib") or data.budget or rec.peak_memory_gib)
    scale = max(card, rec.peak_memory_gib, 1e-9)
    used = min(100.0, 100.0 * rec.peak_memory_gib / scale)
    limit = min(100.0, 100.0 * data.budget / scale)
    share = rec.peak_memory_gib / data.budget if data.budget else float("nan")
    gauge = (f'<div class="gauge" title="peak {rec.peak_memory_gib:.3f} GiB; usable budget {data.budget:.2f} GiB; '
             f'card {card:.2f} GiB"><div class="reserve" style="left:{limit:.2f}%"></div>'
             f'<div class="used" style="width:{used:.2f}%"></div><div class="limit" style="left:{limit:.2f}%">'
             f'</div></div><div class="small muted">blue: peak memory{mark}; red line: usable budget; hatched: CUDA '
             f'reserve and headroom, up to the card\'s {card:.2f} GiB</div>')
    gpus = int(a.get("gpus") or 1)
    kpis = (f'<div class="kpis"><div class="kpi"><div class="n">{rec.tokens_per_s:,.0f}</div>'
            f'<div class="k">tokens/s{mark} on {_esc(a.get("gpu_name", "?"))}{f" × {gpus}" if gpus > 1 else ""}'
            f'</div></div><div class="kpi"><div class="n">{rec.peak_memory_gib:.2f} GiB</div>'
            f'<div class="k">peak GPU memory{mark}: {share:.0%} of {data.budget:.2f} GiB usable</div></div>'
            f'<div class="kpi"><div class="n">#{rec.trial.number}</div><div class="k">trial · probe '
            f'{_esc(rec.probe)} {_badge(est)}</div></div></div>')
    knobs = "".join(f"<div><span>{_esc(k)}</span><b>{_esc(v)}</b></div>" for k, v in rec.config.items())
    files_error = ""
    try:
        files = _trainer_files(data)
    except Exception as exc:  # an exporter bug must not cost the report
        files = []
        files_error = _note(f"The trainer files could not be rendered: {_esc(type(exc).__name__)}: {_esc(exc)}",
                            error=True)
    tabs, panels = [], []
    for i, (label, name, text) in enumerate(files):
        pid = f"file-{i}"
        on = " on" if i == 0 else ""
        tabs.append(f'<button type="button" class="{on.strip()}" data-panel="{pid}">{_esc(label)}'
                    f'<span class="muted small"> {_esc(name)}</span></button>')
        panels.append(f'<div class="panel{on}" id="{pid}" data-group="files"><div class="bar"><span>{_esc(name)}: '
                      f'{_esc(_file_hint(label))}</span><button type="button" class="copy" '
                      f'data-target="{pid}-text">Copy</button></div><pre id="{pid}-text">{_esc(text)}</pre></div>')
    files_html = (f'<h3>Files for your trainer</h3><div class="tabs" data-group="files">{"".join(tabs)}</div>'
                  f'{"".join(panels)}') if files else ""
    why = ("The fastest configuration whose peak memory fits the usable budget (ties: the smaller peak). "
           "Other trade-offs are on the Pareto front below.")
    if rec.reason:  # a study with requirements: the simplest of the fastest that meets them (report_advice.py)
        why = f"{rec.reason[0].upper()}{rec.reason[1:]}. Other trade-offs are on the Pareto front below."
    return (f"<section id='recommended'><h2>Recommended configuration</h2><p class='muted'>{why}</p>{kpis}{gauge}"
            f"<h3>Knobs</h3><div class='knobs'>{knobs}</div>{files_html}{files_error}</section>")


def _file_hint(label: str) -> str:
    return {"autofit": "autofit's record of the recommendation (what best-config.yaml holds)",
            "LLaMA-Factory": "llamafactory-cli train llamafactory.yaml (set your dataset)",
            "HF Trainer": "TrainingArguments(**yaml.safe_load(...)); model loading as comments",
            "DeepSpeed": "ds_config.json, referenced by the trainer files"}.get(label, "")


# ----------------------------------------------------------------------------------------------------------
# 3. Pareto front


def _pareto_figure(data: _Data) -> go.Figure | str:
    frame = data.frame
    plotted = frame.dropna(subset=["plot_memory_gib", "plot_tokens_per_s"])
    if plotted.empty:
        return _note("No trial has a peak memory and a throughput yet: nothing to plot.")
    ok = plotted[plotted["state"] == "ok"]
    front_numbers = set(data.front["number"])
    rest = ok[~ok["number"].isin(front_numbers)]
    front = ok[ok["number"].isin(front_numbers)].sort_values("plot_memory_gib")
    bad = plotted[plotted["state"] != "ok"]
    mark = data.estimated_rows(plotted)
    fig = go.Figure()
    for state, group in bad.groupby("state", sort=False):
        fig.add_trace(go.Scatter(
            x=group["plot_memory_gib"], y=group["plot_tokens_per_s"], mode="markers",
            name=f"{state} (does not fit)" if state in OOM_STATES else str(state),
            marker={"color": STATE_COLORS.get(str(state), "#999"), "symbol": "x", "size": 8, "opacity": 0.8},
            text=group["config_text"], hoverinfo="text"))
    fig.add_trace(go.Scatter(x=rest["plot_memory_gib"], y=rest["plot_tokens_per_s"], mode="markers", name="fits",
                             marker={"color": "#9ecae1", "size": 8, "line": {"width": 0.5, "color": "#2f7ed8"}},
                             text=rest["config_text"], hoverinfo="text"))
    fig.add_trace(go.Scatter(x=front["plot_memory_gib"], y=front["plot_tokens_per_s"], mode="lines+markers",
                             name="Pareto front", line={"shape": "hv", "color": "#f58518", "width": 2},
                             marker={"size": 9, "color": "#f58518"}, text=front["config_text"], hoverinfo="text"))
    if data.rec is not None:
        row = frame[frame["number"] == data.rec.trial.number]
        fig.add_trace(go.Scatter(x=[data.rec.peak_memory_gib], y=[data.rec.tokens_per_s], mode="markers+text",
                                 name="recommended", text=["recommended"], textposition="top left",
                                 hovertext=list(row["config_text"]), hoverinfo="text",
                                 marker={"symbol": "star", "size": 18, "color": "#e45756",
                                         "line": {"width": 1, "color": "#7a1f1f"}}))
    _budget_line(fig, data.budget, annotation_position="top right")
    ok_max = float(ok["plot_memory_gib"].max()) if len(ok) else 0.0
    x_max = max(data.budget * 1.6, ok_max * 1.1)
    beyond = int((bad["plot_memory_gib"] > x_max).sum())
    subtitle = ""
    if beyond and len(ok) and x_max > 0:  # zoom on the budget; without a fitting trial show everything
        fig.update_xaxes(range=[0, x_max])
        visible = plotted[plotted["plot_memory_gib"] <= x_max]["plot_tokens_per_s"]
        if len(visible):
            fig.update_yaxes(range=[0, float(visible.max()) * 1.12])
        subtitle = (f"<br><sup>{beyond} infeasible trial(s) lie right of {x_max:.2f} GiB: "
                    f"double-click the plot to show them</sup>")
    fig.update_layout(title=f"Throughput against peak GPU memory{mark}{subtitle}", height=500,
                      xaxis_title=f"peak GPU memory (GiB){mark}", yaxis_title=f"tokens/s{mark}",
                      legend={"orientation": "h", "y": -0.18})
    fig.update_yaxes(rangemode="tozero")
    return fig


def _pareto_section(data: _Data, figures: _Figures) -> str:
    unplotted = data.frame[data.frame["plot_memory_gib"].isna() | data.frame["plot_tokens_per_s"].isna()]
    notes = ""
    if len(unplotted):
        counts = ", ".join(f"{n} {s}" for s, n in unplotted["state"].value_counts().items())
        notes = _note(f"Not plotted (no peak memory or tokens/s to place them at): {_esc(counts)}; they are in "
                      "the trial table.")
    table = ""
    if len(data.front):
        rec_number = data.rec.trial.number if data.rec else None
        rows = []
        for _, r in data.front.iterrows():
            star = "★" if r["number"] == rec_number else ""
            knobs = "".join(f"<td>{_esc(r[k])}</td>" for k in data.varying)
            rows.append(f"<tr><td>{star} {int(r['number'])}</td>{knobs}<td{_ecls(r)}>{r['peak_memory_gib']:.3f}</td>"
                        f"<td{_ecls(r)}>{r['tokens_per_s']:,.0f}</td></tr>")
        mark = data.estimated_rows(data.front)
        heads = "".join(f"<th title='{_esc(k)}'>{_esc(SHORT.get(k, k))}</th>" for k in data.varying)
        table = (f"<h3>The front: each configuration is the fastest found at its memory</h3><div class='tablewrap' "
                 f"style='max-height:none'><table><thead><tr><th>trial</th>{heads}<th>peak GiB{mark}</th>"
                 f"<th>tokens/s{mark}</th></tr></thead><tbody>{''.join(rows)}</tbody></table></div>")
    return (f"<section id='pareto'><h2>Pareto front</h2><p class='muted'>Every probed configuration: the front joins "
            f"those no other fitting configuration beats on both speed and memory. Configurations that do not fit are "
            f"grey crosses at their measured or predicted peak. Hover a point for its configuration.</p>"
            f"{figures.html(lambda: _pareto_figure(data), 'pareto')}{notes}{table}</section>")


def _ecls(row: pd.Series) -> str:
    return ' class="e" title="estimated"' if _truthy(row.get("estimated")) else ""


# ----------------------------------------------------------------------------------------------------------
# 4. memory breakdown


def _breakdown_figure(data: _Data) -> go.Figure | str:
    if data.front.empty:
        return _note("No configuration fits the budget, so there is no front to break down.")
    labels, breakdowns, texts, any_est = [], [], [], []
    rec_number = data.rec.trial.number if data.rec else None
    for _, row in data.front.iterrows():
        trial = data.by_number[int(row["number"])]
        breakdown = trial.user_attrs.get("breakdown_gib") or {}
        estimated = bool(trial.user_attrs.get("estimated"))
        if not breakdown:
            breakdown = (trial.user_attrs.get("details") or {}).get("predicted_breakdown_gib") or {}
            estimated = True
        if not breakdown:
            continue
        labels.append(f"#{int(row['number'])}{' ★' if row['number'] == rec_number else ''}")
        breakdowns.append(breakdown)
        texts.append(row["config_text"])
        any_est.append(estimated)
    if not labels:
        return _note("The probes of the front configurations recorded no memory breakdown.")
    mark = " (estimated)" if all(any_est) else (" (partly estimated)" if any(any_est) else "")
    categories = [c for c in CATEGORIES if any(b.get(c) for b in breakdowns)]
    categories += sorted({k for b in breakdowns for k in b} - set(CATEGORIES))
    fig = go.Figure()
    for cat in categories:
        fig.add_trace(go.Bar(name=cat, x=labels, y=[b.get(cat, 0.0) for b in breakdowns],
                             marker_color=CATEGORY_COLORS.get(cat, "#bbb"),
                             hovertemplate=f"{cat}: %{{y:.3f}} GiB<br>%{{customdata}}<extra></extra>",
                             customdata=texts))
    _budget_line(fig, data.budget, axis="y", annotation_position="top left")
    fig.update_layout(barmode="stack", height=460, title=f"Peak memory by kind, Pareto configurations{mark}",
                      xaxis_title="Pareto configuration (trial; ★ recommended), by increasing peak memory",
                      yaxis_title=f"GiB at the peak{mark}", legend={"orientation": "h", "y": -0.22},
                      xaxis={"type": "category"})
    return fig


def _breakdown_section(data: _Data, figures: _Figures) -> str:
    return ("<section id='breakdown'><h2>Memory breakdown</h2><p class='muted'>What fills memory at the peak of a "
            "training step: weights, gradients, optimizer state, saved activations, logits and loss, and other "
            "temporaries. It shows why a configuration fits and what would make it smaller.</p>"
            f"{figures.html(lambda: _breakdown_figure(data), 'breakdown')}</section>")


# ----------------------------------------------------------------------------------------------------------
# 4b. where the time goes (trace probe's performance model)

TIME_COLORS = {"matmul": "#4c78a8", "dequantization": "#e45756", "attention": "#f58518", "elementwise": "#72b7b2",
               "optimizer": "#54a24b", "recompute": "#b279a2", "offload_communication": "#eeca3b",
               "overhead": "#9d9da0"}


def _time_figure(data: _Data) -> go.Figure | str:
    """Estimated milliseconds per 1,000 tokens, by part, for each Pareto configuration."""
    if data.front.empty:
        return _note("No configuration fits the budget, so there is no front to break down.")
    labels, per_k, texts = [], [], []
    rec_number = data.rec.trial.number if data.rec else None
    for _, row in data.front.iterrows():
        trial = data.by_number[int(row["number"])]
        parts = (trial.user_attrs.get("details") or {}).get("time_breakdown_s") or {}
        tokens = (_num(row.get("per_device_train_batch_size")) or 0) * (_num(row.get("seq_len")) or 0) * \
                 (_num(row.get("gradient_accumulation_steps")) or 0)
        if not parts or not tokens:
            continue
        labels.append(f"#{int(row['number'])}{' ★' if row['number'] == rec_number else ''}")
        per_k.append({k: 1000.0 * 1000.0 * v / tokens for k, v in parts.items()})
        texts.append(row["config_text"])
    if not labels:
        return _note("The probes of the front configurations recorded no time breakdown (only the trace probe "
                     "estimates one).")
    fig = go.Figure()
    for part in [p for p in TIME_COLORS if any(b.get(p) for b in per_k)]:
        fig.add_trace(go.Bar(name=part.replace("_", "/"), x=labels, y=[b.get(part, 0.0) for b in per_k],
                             marker_color=TIME_COLORS[part], customdata=texts,
                             hovertemplate=f"{part}: %{{y:.2f}} ms per 1k tokens<br>%{{customdata}}<extra></extra>"))
    fig.update_layout(barmode="stack", height=440, title="Where the step time goes, Pareto configurations (estimated)",
                      xaxis_title="Pareto configuration (trial; ★ recommended), by increasing peak memory",
                      yaxis_title="ms per 1,000 tokens per GPU (estimated)", legend={"orientation": "h", "y": -0.22},
                      xaxis={"type": "category"})
    return fig


def _time_section(data: _Data, figures: _Figures) -> str:
    return ("<section id='time'><h2>Time breakdown</h2><p class='muted'>What the trace probe's performance model "
            "says a GPU spends each configuration's step on: GEMMs, 4/8-bit weight dequantization, attention, "
            "elementwise kernels, the optimizer, checkpointing's recompute, ZeRO/offload transfers, and host "
            "overhead when kernels are too small to keep the GPU busy. Lower is faster; it shows why one "
            f"configuration is estimated faster than another.</p>{figures.html(lambda: _time_figure(data), 'time')}"
            "</section>")


# ----------------------------------------------------------------------------------------------------------
# 5. knob effects


def _complete(data: _Data) -> list[optuna.trial.FrozenTrial]:
    return [t for t in data.trials if t.state == optuna.trial.TrialState.COMPLETE and t.values]


def _searched_params(data: _Data, trials: list[optuna.trial.FrozenTrial]) -> list[str]:
    """Parameters that take at least two values among `trials`."""
    values: dict[str, set] = {}
    for t in trials:
        for k, v in t.params.items():
            values.setdefault(k, set()).add(json.dumps(v))
    return [k for k in KNOBS if len(values.get(k, ())) > 1]


def _parallel_figure(data: _Data) -> go.Figure | str:
    trials = _complete(data)
    params = _searched_params(data, trials)
    if len(trials) < 2 or not params:
        return _note("Parallel coordinates need at least two configurations that fit, differing in a knob.")
    mark = " (estimated)" if all(t.user_attrs.get("estimated") for t in trials) else ""
    study, shown = data.study, f"the {len(trials)} configurations that fit"
    if len(trials) > PARALLEL_MAX_LINES:  # one SVG line per trial: keep the page quick, show the fast end
        fastest = sorted(trials, key=lambda t: -t.values[0])[:PARALLEL_MAX_LINES]
        verbosity = optuna.logging.get_verbosity()
        optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "A new study created in memory" line
        try:
            study = optuna.create_study(directions=data.study.directions)
        finally:
            optuna.logging.set_verbosity(verbosity)
        study.add_trials(fastest)
        shown = f"the {PARALLEL_MAX_LINES} fastest of the {len(trials)} configurations that fit"
    fig = optuna.visualization.plot_parallel_coordinate(
        study, params=params, target=lambda t: t.values[0], target_name=f"tokens/s{mark}")
    _merge_lines(fig)
    # Optuna truncates long knob names and prints the objective's ticks as 1.59e+03: use short names, 1.59k
    def knob_of(label: str) -> str:
        stem = label[:-3] if label.endswith("...") else None
        for knob in params:
            if knob == label or (stem and knob.startswith(stem)):
                return SHORT.get(knob, knob)
        return label

    fig.update_xaxes(ticktext=[knob_of(str(label)) for label in (fig.layout.xaxis.ticktext or ())])
    for note in fig.layout.annotations:
        if note.x == 0 and _num(note.text) is not None:
            note.text = _si(float(note.text))
    fig.update_layout(title=f"Knobs of {shown}, coloured by tokens/s{mark}",
                      height=460, margin={"l": 80, "r": 60, "t": 90, "b": 40})
    return fig


def _merge_lines(fig: go.Figure, step: int = 12) -> None:
    """Optuna draws one line trace per trial; plotly's cost grows with traces, not points. Join the lines whose
    colours agree within `step` (of 255) into one trace each, separated by gaps, hover text kept per point."""
    groups: dict[tuple, list] = {}
    kept = []
    for trace in fig.data:
        color = str(getattr(trace.line, "color", "") or "") if trace.type == "scatter" else ""
        if trace.mode != "lines" or trace.showlegend is not False or not color.startswith("rgb(") or \
                trace.customdata is None:
            kept.append(trace)
            continue
        rgb = tuple(min(255, round(float(c) / step) * step) for c in color[4:-1].split(","))
        groups.setdefault((rgb, trace.line.dash, trace.line.width, trace.opacity, trace.hovertemplate),
                          []).append(trace)
    if not groups:
        return
    merged = []
    for (rgb, dash, width, opacity, template), traces in groups.items():
        x, y, custom = [], [], []
        for trace in traces:
            x += [*trace.x, None]
            y += [*trace.y, None]
            custom += [*map(list, trace.customdata), [None, None]]
        merged.append(go.Scatter(x=x, y=y, customdata=custom, mode="lines", showlegend=False, opacity=opacity,
                                 hovertemplate=template, connectgaps=False,
                                 line={"color": f"rgb{rgb}", "dash": dash, "width": width}))
    fig.data = ()
    for trace in [*merged, *kept]:
        fig.add_trace(trace)


def _importance_figure(data: _Data, objective: int) -> go.Figure | str:
    trials = _complete(data)
    params = _searched_params(data, trials)
    what = "tokens/s" if objective == 0 else "peak memory"
    if len(trials) < 3 or not params:
        return _note(f"Importances for {what} need at least three configurations that fit, differing in a knob "
                     f"(this study has {len(trials)}).")
    est = all(t.user_attrs.get("estimated") for t in trials)
    mark = " (estimated)" if est else ""
    name = "tokens/s" if objective == 0 else "peak memory (GiB)"
    fig = optuna.visualization.plot_param_importances(data.study, params=params,
                                                      target=lambda t: t.values[objective],
                                                      target_name=f"{name}{mark}")
    fig.update_layout(title=f"Importance for {what}{mark}", height=380,
                      xaxis_title=f"importance for {name} (fraction, sums to 1)",
                      yaxis_title="knob", showlegend=False)
    return fig


def _knob_positions(values: list[Any]) -> list[Any]:
    try:
        return sorted(set(values), key=float)
    except (TypeError, ValueError):
        return sorted(set(values), key=str)


def _memory_against(data: _Data, knob: str, title: str, axis_title: str) -> go.Figure | str:
    frame = data.frame.dropna(subset=["plot_memory_gib"])
    frame = frame[frame[knob].notna()]
    if frame.empty:
        return _note("No trial has a peak memory yet.")
    positions = _knob_positions(list(frame[knob]))
    index = {str(v): i for i, v in enumerate(positions)}
    quants = [q for q in ("none", "int8", "nf4") if q in set(frame["quantization"])] + \
        sorted(set(frame["quantization"].dropna().map(str)) - {"none", "int8", "nf4"})
    mark = data.estimated_rows(frame)
    fig = go.Figure()
    width = 0.6
    for qi, quant in enumerate(quants):
        group = frame[frame["quantization"].map(str) == quant]
        offset = (qi - (len(quants) - 1) / 2) * (width / max(1, len(quants)))
        for fits in (True, False):
            part = group[(group["state"] == "ok") == fits]
            jitter = [((int(n) * 7919) % 17 / 16 - 0.5) * width / max(1, len(quants)) * 0.6 for n in part["number"]]
            fig.add_trace(go.Scatter(
                x=[index[str(v)] + offset + j for v, j in zip(part[knob], jitter, strict=False)],
                y=part["plot_memory_gib"],
                mode="markers", name=f"quantization={quant}", legendgroup=quant,
                showlegend=fits or not (group["state"] == "ok").any(),
                marker={"color": QUANT_COLORS.get(quant, "#888"), "size": 8, "symbol": "circle" if fits else "x",
                        "opacity": 0.9 if fits else 0.45},
                text=part["config_text"], hoverinfo="text"))
    if (frame["state"] != "ok").any():
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", name="× does not fit",
                                 marker={"color": "#999", "symbol": "x", "size": 8}, hoverinfo="skip"))
    values = frame["plot_memory_gib"].astype(float)
    log = bool(values.min() > 0 and values.max() / values.min() > 20)
    if log:
        _budget_line(fig, data.budget, axis="y", log=True)
    else:
        _budget_line(fig, data.budget, axis="y", annotation_position="top left")
    fig.update_xaxes(tickvals=list(range(len(positions))), ticktext=[str(v) for v in positions],
                     range=[-0.6, len(positions) - 0.4])
    if log:
        decades = math.log10(values.max()) - math.log10(values.min())
        fig.update_yaxes(type="log", dtick=1 if decades >= 1 else "D2")
    fig.update_layout(title=f"Peak memory by {title}{mark}",
                      xaxis_title=axis_title, yaxis_title=f"peak memory, GiB{' (log)' if log else ''}{mark}",
                      height=420, legend={"orientation": "h", "y": -0.25})
    return fig


def _knobs_section(data: _Data, figures: _Figures) -> str:
    def by_batch():
        return _memory_against(data, "per_device_train_batch_size", "batch size", "per-device batch size (sequences)")

    def by_seq():
        return _memory_against(data, "seq_len", "sequence length", "sequence length (tokens)")

    return ("<section id='knobs'><h2>Knob effects</h2><p class='muted'>Which knobs buy speed and which cost memory. "
            "Hover a line of the parallel coordinates for its trial.</p>"
            f"{figures.html(lambda: _parallel_figure(data), 'parallel coordinates')}"
            f"<div class='grid2'>{figures.html(lambda: _importance_figure(data, 0), 'importance tokens')}"
            f"{figures.html(lambda: _importance_figure(data, 1), 'importance memory')}</div>"
            "<p class='muted small'>The parallel coordinates and importances are Optuna's (importances: PED-ANOVA) "
            "over the configurations that fit, the trials Optuna counts as COMPLETE; out-of-memory trials are "
            "PRUNED in Optuna and appear below as crosses. Pinned knobs, and knobs with one value among those "
            "trials, are left out.</p>"
            f"<div class='grid2'>{figures.html(by_batch, 'memory batch')}{figures.html(by_seq, 'memory seq_len')}"
            f"</div></section>")


# ----------------------------------------------------------------------------------------------------------
# 6. history


def _hypervolume_figure(data: _Data) -> go.Figure | str:
    trials = _complete(data)
    if not trials or data.budget <= 0:
        return _note("The hypervolume needs at least one configuration that fits.")
    mark = " (estimated)" if all(t.user_attrs.get("estimated") for t in trials) else ""
    fig = optuna.visualization.plot_hypervolume_history(data.study, reference_point=[0.0, data.budget])
    fig.update_layout(title=f"Hypervolume of the front{mark}", height=380, xaxis_title="trial",
                      yaxis_title=f"tokens/s × GiB{mark}", showlegend=False)
    return fig


def _history_figure(data: _Data) -> go.Figure | str:
    trials = sorted(_complete(data), key=lambda t: t.number)
    if not trials:
        return _note("No configuration fits yet: no best throughput to follow.")
    mark = " (estimated)" if all(t.user_attrs.get("estimated") for t in trials) else ""
    fig = optuna.visualization.plot_optimization_history(data.study, target=lambda t: t.values[0],
                                                         target_name=f"tokens/s{mark}")
    # Optuna draws the best-so-far line only without a target; add it
    best, numbers, values = -math.inf, [], []
    for t in trials:
        best = max(best, t.values[0])
        numbers.append(t.number)
        values.append(best)
    fig.add_trace(go.Scatter(x=numbers, y=values, mode="lines", name="best so far", line={"shape": "hv",
                                                                                          "color": "#e45756"}))
    for trace in fig.data:
        if trace.name == "Objective Value":
            trace.name = "configuration that fits"
    fig.update_layout(title=f"Best throughput over trials{mark}", height=380, xaxis_title="trial",
                      yaxis_title=f"tokens/s{mark}", legend={"orientation": "h", "y": -0.25})
    return fig


def _timeline_figure(data: _Data) -> go.Figure | str:
    finished = [t for t in data.trials if t.datetime_start is not None]
    if not finished:
        return _note("No trial has started yet.")
    base = optuna.visualization.plot_timeline(data.study)
    # Optuna groups the bars by its own trial state; regroup them by autofit's (ok, oom, oom-inferred, ...)
    bars: dict[int, tuple[Any, Any]] = {}
    for trace in base.data:
        for x, start, number in zip(trace.x or (), trace.base or (), trace.y or (), strict=False):
            bars[int(number)] = (x, start)
    states: dict[str, list[int]] = {}
    for t in finished:
        if t.number not in bars:
            continue
        state = t.user_attrs.get("autofit_state") or t.state.name.lower()
        states.setdefault(str(state), []).append(t.number)
    text = {int(r["number"]): r["config_text"] for _, r in data.frame.iterrows()}
    fig = go.Figure(layout=base.layout)
    for state, numbers in states.items():
        fig.add_trace(go.Bar(
            x=[bars[n][0] for n in numbers], base=[bars[n][1] for n in numbers], y=numbers, orientation="h",
            name=state, marker_color=STATE_COLORS.get(state, "#999"), width=0.8,
            hovertext=[text.get(n, f"trial {n}: {state}") + f"<br>{float(bars[n][0]) / 1000:.2f} s" for n in numbers],
            hoverinfo="text"))
    fig.update_layout(title="Timeline of the probes, by outcome", height=max(320, min(640, 140 + 4 * len(finished))),
                      xaxis_title="time (worker's local clock)", yaxis_title="trial", barmode="overlay",
                      legend={"orientation": "h", "y": -0.18}, showlegend=True)
    fig.update_yaxes(autorange="reversed")
    return fig


def _history_section(data: _Data, figures: _Figures) -> str:
    return ("<section id='history'><h2>History</h2><p class='muted'>How the search got there: the area the front "
            "dominates (0 tokens/s to the usable budget) and the best throughput over trials, then when each probe "
            "ran and how it ended.</p>"
            f"<div class='grid2'>{figures.html(lambda: _hypervolume_figure(data), 'hypervolume')}"
            f"{figures.html(lambda: _history_figure(data), 'history')}</div>"
            f"{figures.html(lambda: _timeline_figure(data), 'timeline')}</section>")


# ----------------------------------------------------------------------------------------------------------
# 7. the trial table


def _table_section(data: _Data) -> str:
    frame = data.frame.sort_values("number")
    measured = [c for c in ("predicted_peak_gib", "peak_allocated_gib", "peak_reserved_gib", "prediction_error_pct",
                            "runtime_reserve_gib") if c in frame and frame[c].notna().any()]
    mark_all = data.all_estimated
    hdr_mark = " (estimated)" if mark_all else ""
    columns: list[tuple[str, str, str]] = [("number", "#", ""), ("state", "state", "t"), ("mark", "front", "t")]
    columns += [("peak_memory_gib", f"peak GiB{hdr_mark}", ""), ("tokens_per_s", f"tokens/s{hdr_mark}", "")]
    labels = {"predicted_peak_gib": "predicted GiB (estimated)", "peak_allocated_gib": "measured alloc GiB",
              "peak_reserved_gib": "measured reserved GiB", "prediction_error_pct": "prediction error %",
              "runtime_reserve_gib": "runtime reserve GiB (measured: context, workspaces)"}
    columns += [(c, labels[c], "") for c in measured]
    columns += [(k, SHORT.get(k, k), "t" if k in ("quantization", "offload", "optimizer", "attn_implementation",
                                                  "allocator", "gradient_checkpointing") else "")
                for k in data.varying]
    est_values = {bool(v) for v in frame["estimated"] if v is not None and not _isnan(v)}
    if len(est_values) > 1 or set(frame["probe"].dropna()) - {"trace"}:
        columns += [("numbers", "numbers", "t")]  # mixed trace and real figures: say which is which per row
    columns += [("duration_s", "probe s", ""), ("error", "note", "t")]
    front = set(data.front["number"])
    rec_number = data.rec.trial.number if data.rec else None
    body = []
    for _, r in frame.iterrows():
        number = int(r["number"])
        est = bool(r["estimated"]) if r["estimated"] is not None and not _isnan(r["estimated"]) else None
        cells = []
        for key, _, cls in columns:
            if key == "number":
                cells.append(f'<td data-v="{number}">{number}</td>')
            elif key == "state":
                cells.append(f'<td class="t">{_state_chip(str(r["state"]))}</td>')
            elif key == "mark":
                mark = "★ recommended" if number == rec_number else ("◆ front" if number in front else "")
                cells.append(f'<td class="t mark">{mark}</td>')
            elif key in ("peak_memory_gib", "tokens_per_s"):
                value = _num(r[key])
                ecls = ' class="e" title="estimated"' if est else ""
                text = "" if value is None else (f"{value:.3f}" if key == "peak_memory_gib" else f"{value:,.0f}")
                cells.append(f'<td data-v="{"" if value is None else value!r}"{ecls}>{text}</td>')
            elif key in measured or key == "duration_s":
                value = _num(r[key])
                ecls = ' class="e" title="estimated"' if key == "predicted_peak_gib" and value is not None else ""
                digits = 1 if key in ("prediction_error_pct",) else (2 if key == "duration_s" else 3)
                text = "" if value is None else f"{value:.{digits}f}"
                cells.append(f'<td data-v="{"" if value is None else value!r}"{ecls}>{text}</td>')
            elif key == "numbers":
                probe = r["probe"] if isinstance(r["probe"], str) else ""
                cells.append(f'<td class="t">{_esc(probe)} {_badge(est) if est is not None else "not probed"}</td>')
            elif key == "error":
                text = "" if r["error"] is None or _isnan(r["error"]) else str(r["error"])
                cells.append(f'<td class="err" title="{_esc(text)}">{_esc(text[:140])}</td>')
            else:
                value = r[key]
                numeric = _num(value) if not isinstance(value, (bool, str)) else None
                attr = f' data-v="{numeric!r}"' if numeric is not None else ""
                cells.append(f'<td{attr}{" class=t" if cls else ""}>{_esc(value)}</td>')
        classes = "rec" if number == rec_number else ("front" if number in front else "")
        body.append(f'<tr data-state="{_esc(r["state"])}" class="{classes}">{"".join(cells)}</tr>')
    heads = "".join(f'<th class="sort {cls}" title="{_esc(key)}: click to sort">{_esc(label)}</th>'
                    for key, label, cls in columns)
    filters = "".join(f'<th><input data-col="{i}" placeholder="filter" aria-label="filter {_esc(label)}"></th>'
                      for i, (_, label, _) in enumerate(columns))
    counts = frame["state"].value_counts()
    boxes = "".join(f'<label><input type="checkbox" value="{_esc(s)}" checked>{_state_chip(str(s))} {int(n)}</label>'
                    for s, n in counts.items())
    constant = ", ".join(f"{k}={v}" for k, v in data.constant.items() if k not in data.varying)
    mark_text = (f" All numbers here are {_badge(True)}: trace-probe figures." if mark_all else
                 f" Numbers marked {_badge(True)} come from the trace probe; {_badge(False)} ones from real runs.")
    return (f"<section id='trials-section'><h2>Every trial</h2><p class='muted'>{len(frame)} trials. Click a "
            f"column to sort; type in the filter row: text, or a comparison such as <code>&gt;0.5</code>, "
            f"<code>&lt;=8</code>, <code>!oom</code>.{mark_text}"
            + (f" Same in every trial: <code>{_esc(constant)}</code>." if constant else "") + "</p>"
            f"<div class='controls'><span id='state-filter'>{boxes}</span><input type='search' id='trial-search' "
            f"placeholder='search every column'><span id='trials-shown' class='muted'></span></div>"
            f"<div class='tablewrap'><table id='trials'><thead><tr class='names'>{heads}</tr>"
            f"<tr class='filters'>{filters}</tr></thead><tbody>{''.join(body)}</tbody></table></div></section>")


# ----------------------------------------------------------------------------------------------------------
# 8. predicted against measured


def _validation_rows(data: _Data) -> pd.DataFrame:
    frame = data.frame
    if "predicted_peak_gib" not in frame or "peak_allocated_gib" not in frame:
        return frame.iloc[0:0]
    return frame.dropna(subset=["predicted_peak_gib", "peak_allocated_gib"])


def _validation_figure(data: _Data) -> go.Figure:
    rows = _validation_rows(data)
    fig = go.Figure()
    top = float(max(rows["predicted_peak_gib"].max(), rows["peak_allocated_gib"].max())) * 1.08
    fig.add_trace(go.Scatter(x=[0, top], y=[0, top], mode="lines", name="predicted = measured",
                             line={"color": "#888", "dash": "dot"}, hoverinfo="skip"))
    fig.add_trace(go.Scatter(x=[0, top], y=[0, top / 1.1], mode="lines", name="±10%",
                             line={"color": "#ccc", "width": 1}, hoverinfo="skip"))
    fig.add_trace(go.Scatter(x=[0, top / 1.1], y=[0, top], mode="lines", showlegend=False,
                             line={"color": "#ccc", "width": 1}, hoverinfo="skip"))
    for state, group in rows.groupby("state", sort=False):
        fig.add_trace(go.Scatter(x=group["predicted_peak_gib"], y=group["peak_allocated_gib"], mode="markers",
                                 name=str(state), marker={"color": STATE_COLORS.get(str(state), "#999"), "size": 9},
                                 text=group["config_text"], hoverinfo="text"))
    _budget_line(fig, data.budget, axis="y", annotation_position="top left")
    fig.update_layout(title="Peak memory: the trace's prediction against the real run", height=440,
                      xaxis_title="predicted peak (GiB, estimated by the trace probe)",
                      yaxis_title="measured peak allocated (GiB)", legend={"orientation": "h", "y": -0.2})
    fig.update_xaxes(range=[0, top])
    fig.update_yaxes(range=[0, top])
    return fig


def _error_figure(data: _Data) -> go.Figure:
    rows = _validation_rows(data).copy()
    errors = [(_num(e) if _num(e) is not None else 100.0 * (p - m) / m if m else None)
              for e, p, m in zip(rows.get("prediction_error_pct", [None] * len(rows)), rows["predicted_peak_gib"],
                                 rows["peak_allocated_gib"], strict=False)]
    rows["err"] = errors
    rows = rows.dropna(subset=["err"])
    fig = go.Figure(go.Bar(x=[f"#{int(n)}" for n in rows["number"]], y=rows["err"],
                           marker_color=[STATE_COLORS.get(str(s), "#999") for s in rows["state"]],
                           text=[f"{e:+.1f}%" for e in rows["err"]], textposition="outside",
                           hovertext=rows["config_text"], hoverinfo="text"))
    fig.add_hline(0, line_color="#444", line_width=1)
    fig.update_layout(title="Prediction error per trial: (predicted − measured) / measured", height=440,
                      xaxis_title="trial", yaxis_title="prediction error (%)", xaxis={"type": "category"})
    return fig


def _validation_section(data: _Data, figures: _Figures) -> str:
    rows = _validation_rows(data)
    if rows.empty:
        if data.all_estimated:
            return ("<section id='validation'><h2>Predicted against measured</h2>" + _note(
                "No real probe ran in this search: every number above is an estimate of the trace probe. Run with "
                "<code>--probe cuda</code> (or <code>cpu</code>) to measure, with the trace's prediction kept "
                "beside each measurement.") + "</section>")
        return ("<section id='validation'><h2>Predicted against measured</h2>"
                + _note("The real probes recorded no trace prediction to compare with.") + "</section>")
    errors = rows["prediction_error_pct"].dropna().astype(float) if "prediction_error_pct" in rows else []
    summary = ""
    if len(errors):
        summary = (f"<p>{len(rows)} measured trials; prediction error median {errors.median():+.1f}%, "
                   f"worst {errors.abs().max():.1f}% (negative: the trace predicted less than the run used).</p>")
    return ("<section id='validation'><h2>Predicted against measured</h2><p class='muted'>Each real probe kept the "
            "trace probe's prediction for its configuration: how far the estimate was from "
            "torch.cuda.max_memory_allocated.</p>" + summary
            + f"<div class='grid2'>{figures.html(lambda: _validation_figure(data), 'validation')}"
            f"{figures.html(lambda: _error_figure(data), 'prediction error')}</div></section>")


# ----------------------------------------------------------------------------------------------------------


def render_report(study: optuna.Study) -> str:
    """The whole page, as one self-contained HTML string."""
    data = _load(study)
    figures = _Figures()
    a = data.attrs
    sections = [
        _header(data),
        _recommendation(data),
        requirements_section(data),
        seq_len_section(data, figures),
        _pareto_section(data, figures),
        _breakdown_section(data, figures),
        _time_section(data, figures),
        _knobs_section(data, figures),
        _history_section(data, figures),
        _table_section(data),
        _validation_section(data, figures),
    ]
    advice_nav = ("<a href='#requirements'>Requirements</a><a href='#seq-len'>Sequence length</a>"
                  if sections[2] else "")  # studies searched with requirements (report_advice.py)
    nav = ("<nav><a href='#recommended'>Recommended</a>" + advice_nav + "<a href='#pareto'>Pareto front</a>"
           "<a href='#breakdown'>Memory breakdown</a><a href='#time'>Time breakdown</a>"
           "<a href='#knobs'>Knob effects</a><a href='#history'>History</a>"
           "<a href='#trials-section'>Every trial</a><a href='#validation'>Predicted vs measured</a></nav>")
    estimated_banner = ""
    if data.all_estimated:
        estimated_banner = _note(f"{_badge(True)} Every memory and throughput figure in this report comes from the "
                                 "<b>trace probe</b>: the real model's training step on fake tensors, with a "
                                 "performance model of the card for tokens/s. They are estimates, not measurements.")
    title = f"autofit: {a.get('model', '?')} on {a.get('gpu_mem', '?')}"
    return "".join([
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        "<meta name='viewport' content='width=device-width, initial-scale=1'>",
        f"<title>{_esc(title)}</title><style>{_CSS}</style>",
        "</head><body><main>",
        sections[0], estimated_banner, nav, *sections[1:],
        f"<footer>autofit report, built from study {_esc(study.study_name)}: {len(data.frame)} trials, "
        f"{figures.count} figures. Plotly is inlined: this page needs no network.</footer>",
        f"</main><script>{_JS}</script><script type='text/javascript'>{get_plotlyjs()}</script>",
        f"<script>{_DRAW_JS}</script></body></html>",
    ])
