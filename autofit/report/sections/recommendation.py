"""2. The recommended configuration: knobs, peak memory against the budget, tokens/s, its files."""

from __future__ import annotations

from ... import exports
from ...documents import export_context, render_best_config
from ...results import Recommendation
from ..data import ReportData, truthy
from ..markup import badge, esc, note


def trainer_files(data: ReportData, rec: Recommendation) -> list[tuple[str, str, str]]:
    """(label, filename, text) for the recommendation: autofit, LLaMA-Factory, HF Trainer, and DeepSpeed when
    the recommendation uses ZeRO."""
    files = [("autofit", "best-config.yaml", render_best_config(data.study, rec))]
    context = export_context(data.study, rec)
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


def recommendation_section(data: ReportData) -> str:
    rec, a = data.rec, data.attrs
    if rec is None:
        closest = data.frame.dropna(subset=["plot_memory_gib"]).sort_values("plot_memory_gib").head(1)
        extra = ""
        if len(closest):
            row = closest.iloc[0]
            extra = (f" The smallest configuration probed, trial {int(row['number'])}, needs "
                     f"{row['plot_memory_gib']:.2f} GiB{' (estimated)' if truthy(row['estimated']) else ''} against "
                     f"{data.budget:.2f} GiB usable.")
        return ("<section id='recommended'><h2>Recommended configuration</h2>"
                + note(f"<b>No configuration fits the budget.</b>{esc(extra)} Give more memory (--gpu-mem), "
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
            f'<div class="k">tokens/s{mark} on {esc(a.get("gpu_name", "?"))}{f" × {gpus}" if gpus > 1 else ""}'
            f'</div></div><div class="kpi"><div class="n">{rec.peak_memory_gib:.2f} GiB</div>'
            f'<div class="k">peak GPU memory{mark}: {share:.0%} of {data.budget:.2f} GiB usable</div></div>'
            f'<div class="kpi"><div class="n">#{rec.trial.number}</div><div class="k">trial · probe '
            f'{esc(rec.probe)} {badge(est)}</div></div></div>')
    knobs = "".join(f"<div><span>{esc(k)}</span><b>{esc(v)}</b></div>" for k, v in rec.config.items())
    files_error = ""
    try:
        files = trainer_files(data, rec)
    except Exception as exc:  # an exporter bug must not cost the report
        files = []
        files_error = note(f"The trainer files could not be rendered: {esc(type(exc).__name__)}: {esc(exc)}",
                            error=True)
    tabs, panels = [], []
    for i, (label, name, text) in enumerate(files):
        pid = f"file-{i}"
        on = " on" if i == 0 else ""
        tabs.append(f'<button type="button" class="{on.strip()}" data-panel="{pid}">{esc(label)}'
                    f'<span class="muted small"> {esc(name)}</span></button>')
        panels.append(f'<div class="panel{on}" id="{pid}" data-group="files"><div class="bar"><span>{esc(name)}: '
                      f'{esc(file_hint(label))}</span><button type="button" class="copy" '
                      f'data-target="{pid}-text">Copy</button></div><pre id="{pid}-text">{esc(text)}</pre></div>')
    files_html = (f'<h3>Files for your trainer</h3><div class="tabs" data-group="files">{"".join(tabs)}</div>'
                  f'{"".join(panels)}') if files else ""
    why = ("The fastest configuration whose peak memory fits the usable budget (ties: the smaller peak). "
           "Other trade-offs are on the Pareto front below.")
    if rec.reason:  # a study with requirements: the simplest of the fastest that meets them (report_advice.py)
        why = f"{rec.reason[0].upper()}{rec.reason[1:]}. Other trade-offs are on the Pareto front below."
    return (f"<section id='recommended'><h2>Recommended configuration</h2><p class='muted'>{why}</p>{kpis}{gauge}"
            f"<h3>Knobs</h3><div class='knobs'>{knobs}</div>{files_html}{files_error}</section>")


def file_hint(label: str) -> str:
    return {"autofit": "autofit's record of the recommendation (what best-config.yaml holds)",
            "LLaMA-Factory": "llamafactory-cli train llamafactory.yaml (set your dataset)",
            "HF Trainer": "TrainingArguments(**yaml.safe_load(...)); model loading as comments",
            "DeepSpeed": "ds_config.json, referenced by the trainer files"}.get(label, "")
