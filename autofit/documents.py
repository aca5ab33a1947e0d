"""The documents derived from a study's recommendation, shared by the search's outputs (outputs.py) and the
report (autofit/report/): library versions, the exporters' context, best-config.yaml, and the user's own trainer
file written back (search --from FILE). Depends on advice, never on outputs or report, so neither needs the other.
advice and trainer_files are imported where used: they pull in the probes, which `autofit export` does not need."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import optuna
import yaml

from . import exports
from .results import Recommendation
from .trials import StudyAttr

VERSIONED = ("autofit", "torch", "transformers", "peft", "bitsandbytes", "deepspeed", "optuna")


def library_versions() -> dict[str, str]:
    found = {}
    for name in VERSIONED:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "not installed"
    return found



def export_context(study: optuna.Study, rec: Recommendation) -> exports.ExportContext:
    attrs = study.user_attrs
    return exports.ExportContext(
        model_ref=attrs[StudyAttr.MODEL_REF], model_name=attrs[StudyAttr.MODEL], template=attrs.get(StudyAttr.TEMPLATE),
        config=rec.config, peak_memory_gib=rec.peak_memory_gib, tokens_per_s=rec.tokens_per_s, probe=rec.probe,
        estimated=rec.estimated, gpu_mem=attrs[StudyAttr.GPU_MEM], usable_budget_gib=attrs[StudyAttr.USABLE_BUDGET_GIB],
        gpus=attrs.get(StudyAttr.GPUS, 1), model_config=attrs.get(StudyAttr.MODEL_CONFIG))


def best_config_document(study: optuna.Study, rec: Recommendation) -> dict[str, Any]:
    from .advice import advice_document

    attrs = study.user_attrs
    return {  # best-config.yaml's keys (README): its format, spelled here; the values read from the study record
        "model": attrs[StudyAttr.MODEL],
        "model_ref": attrs[StudyAttr.MODEL_REF],
        "gpu_mem": attrs[StudyAttr.GPU_MEM],
        "usable_budget_gib": round(attrs[StudyAttr.USABLE_BUDGET_GIB], 3),
        "probe": rec.probe,
        "estimated": rec.estimated,
        "gpu": attrs[StudyAttr.GPU],
        "gpus": attrs.get(StudyAttr.GPUS, 1),
        "trial": rec.trial.number,
        "config": rec.config,
        "metrics": {"peak_memory_gib": round(rec.peak_memory_gib, 3), "tokens_per_s": round(rec.tokens_per_s, 1)},
        "breakdown_gib": {k: round(v, 3) for k, v in rec.breakdown_gib.items()},
        **advice_document(study, rec),  # requirements, why, concessions, longest seq_len (autofit/advice.py)
        "versions": library_versions(),
    }


def render_best_config(study: optuna.Study, rec: Recommendation) -> str:
    label = "estimated by the trace probe (fake tensors, performance-model throughput)" if rec.estimated else "measured"
    what = ("the simplest of the fastest configurations that meet the requirements and fit"
            if StudyAttr.REQUIREMENTS in study.user_attrs else "the fastest configuration that fits")
    header = (f"# autofit recommendation: {what} {study.user_attrs[StudyAttr.GPU_MEM]}\n"
              f"# peak memory and tokens/s are {label}\n")
    return header + yaml.safe_dump(best_config_document(study, rec), sort_keys=False)



def write_back_outputs(study: optuna.Study, rec: Recommendation, out: Path) -> dict[str, str]:
    """For `search --from FILE`: the user's file with the recommendation `rec` written back (file name of the
    export of its format), and ds_config.json when it uses ZeRO. Empty without --from."""
    from .trainer_files import apply_changes, changed_keys, from_attrs, output_name

    stored = study.user_attrs.get(StudyAttr.FROM_FILE)
    if not stored:
        return {}
    trainer = from_attrs(stored)
    files: dict[str, str] = {}
    ds_path = None
    if rec.config["zero_stage"]:
        files.update(exports.render("deepspeed", export_context(study, rec)))
        ds_path = str((Path(out) / exports.DS_FILENAME).resolve())
    keys = changed_keys(trainer, rec.config, ds_path)
    why = f"autofit {'estimate' if rec.estimated else 'measurement'} for {study.user_attrs[StudyAttr.GPU_MEM]}"
    files[output_name(trainer)] = apply_changes(trainer, keys, why)
    return files
