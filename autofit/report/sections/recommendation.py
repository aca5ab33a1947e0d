"""2. The recommended configuration: knobs, peak memory against the budget, tokens/s, its files."""

from __future__ import annotations

from ... import exports
from ...documents import export_context, render_best_config
from ...results import Recommendation
from ...trials import StudyAttr
from ..data import ReportData, truthy
from ..markup import note_text
from ..render import fragment, render


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
        smallest = ""
        if len(closest):
            row = closest.iloc[0]
            smallest = (f" The smallest configuration probed, trial {int(row['number'])}, needs "
                        f"{row['plot_memory_gib']:.2f} GiB{' (estimated)' if truthy(row['estimated']) else ''} "
                        f"against {data.budget:.2f} GiB usable.")
        return render("recommendation.html.j2", rec=None, closest=smallest)
    card = float(a.get(StudyAttr.GPU_MEM_GIB) or data.budget or rec.peak_memory_gib)
    scale = max(card, rec.peak_memory_gib, 1e-9)
    files_error = ""
    try:
        files = trainer_files(data, rec)
    except Exception as exc:  # an exporter bug must not cost the report
        files = []
        files_error = note_text(f"The trainer files could not be rendered: {type(exc).__name__}: {exc}", error=True)
    why = ("The fastest configuration whose peak memory fits the usable budget (ties: the smaller peak). "
           "Other trade-offs are on the Pareto front below.")
    if rec.reason:  # a study with requirements: the simplest of the fastest that meets them (autofit/results.py)
        why = f"{rec.reason[0].upper()}{rec.reason[1:]}. Other trade-offs are on the Pareto front below."
    return render("recommendation.html.j2", rec=rec, a=a, why=why, mark=" (estimated)" if rec.estimated else "",
                  gpus=int(a.get(StudyAttr.GPUS) or 1), budget=data.budget, card=card,
                  share=rec.peak_memory_gib / data.budget if data.budget else float("nan"),
                  used=min(100.0, 100.0 * rec.peak_memory_gib / scale), limit=min(100.0, 100.0 * data.budget / scale),
                  files=files, file_hint=file_hint, files_error=fragment(files_error))


def file_hint(label: str) -> str:
    return {"autofit": "autofit's record of the recommendation (what best-config.yaml holds)",
            "LLaMA-Factory": "llamafactory-cli train llamafactory.yaml (set your dataset)",
            "HF Trainer": "TrainingArguments(**yaml.safe_load(...)); model loading as comments",
            "DeepSpeed": "ds_config.json, referenced by the trainer files"}.get(label, "")
